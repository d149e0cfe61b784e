/**
 * Member names of archives, made safe.
 *
 * `normalizeEntryPath(raw)` turns the name stored in a tar or zip into the `path` of
 * the `FileEntry` (relative, `/`-separated, no `./`, never outside the archive's root):
 *
 * - `\` is a separator too (zip files made on Windows store `dir\file`; on any OS a
 *   writer that took `..\..\x` literally could be fooled on the next OS);
 * - leading `/`, drive letters (`C:/`) and the `//` of `//host/share` are dropped: an
 *   absolute name becomes relative to the root (`/abs/path` → `abs/path`), as GNU tar and
 *   unzip do;
 * - `.` and empty segments go; `..` takes the previous segment away and, at the root,
 *   is dropped: `a/b/../c` → `a/c`, `../evil` → `evil`, `a/../../b` → `b`. (GNU tar skips
 *   members whose name has `..`; unzip drops the `..` segments only, so its
 *   `safe/../../mid` is `safe/mid`. Resolving keeps every member, keeps the harmless
 *   `a/b/../c` where it meant to be, and can never leave the root.)
 * - a name that is nothing after this (`./`, `/`) is the root itself; readers skip it.
 *
 * `safeJoin(dest, entryPath)` is for anything that writes members to disk: it joins and
 * refuses (with a `PermanentError` naming the entry) any name that is absolute, has a
 * `..` segment, a NUL, or would land outside `dest`, whether or not it was normalised.
 * It checks the name only: a writer must also not write through a symlink that an
 * earlier member created (open with `O_NOFOLLOW`, or check the real path of the parent).
 *
 * @example
 * ```ts
 * import { normalizeEntryPath, safeJoin } from './entry-path.ts';
 *
 * normalizeEntryPath('./a\\..\\..\\evil'); // 'evil'
 * safeJoin('/srv/out', 'a/b.txt');         // '/srv/out/a/b.txt'
 * safeJoin('/srv/out', '../etc/passwd');   // throws PermanentError
 * ```
 */
import path from 'node:path';
import { PermanentError } from '../../runtime/errors.ts';

export function normalizeEntryPath(raw: string): string {
  const segments: string[] = [];
  for (const segment of stripRoot(raw.replace(/\\/g, '/')).split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  return segments.join('/');
}

/** Join `entryPath` under `dest`; throws a PermanentError for a name that could land outside it. */
export function safeJoin(dest: string, entryPath: string): string {
  const refuse = (why: string): never => {
    throw new PermanentError(`refusing to write archive member ${JSON.stringify(entryPath)} under ${dest}: ${why}`, {
      item: entryPath,
      hint: 'the archive holds a hostile or broken name (zip-slip); use the normalised entry.path, or skip this member',
    });
  };
  if (entryPath.includes('\0')) refuse('the name has a NUL byte');
  const slashed = entryPath.replace(/\\/g, '/');
  if (stripRoot(slashed) !== slashed) refuse('the name is absolute');
  const segments = slashed.split('/');
  if (segments.includes('..')) refuse('the name has a ".." segment');
  const kept = segments.filter((s) => s !== '' && s !== '.');
  if (kept.length === 0) refuse('the name is empty');
  const root = path.resolve(dest);
  const target = path.resolve(root, ...kept);
  const rel = path.relative(root, target);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) refuse('it resolves outside the destination');
  return target;
}

/** `name` without what makes it absolute: leading slashes, a drive letter, a UNC host. */
function stripRoot(name: string): string {
  let rest = name;
  for (;;) {
    const before = rest;
    rest = rest.replace(/^[A-Za-z]:(?=\/|$)/, '').replace(/^\/+/, '');
    if (rest === before) return rest;
  }
}
