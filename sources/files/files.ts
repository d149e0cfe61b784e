/**
 * Walk a directory tree lazily and yield one item per entry.
 *
 * The walk is depth-first and pre-order; the entries of each directory are read with one
 * `readdir`, sorted by name (UTF-16 code unit order, independent of locale), and visited
 * one at a time, so the order is the same on every run and the memory held is one
 * directory's names per level of depth, never the whole tree. Nothing is opened until
 * `entry.content()` is called.
 *
 * Every access goes through `ctx.fs`, i.e. the run's `read` permission. What happens
 * when an entry cannot be read:
 *
 * - **A symlink is not followed by default.** It is reported as `type: 'symlink'` (when
 *   `types` includes `'symlink'`) with its `linkTarget`, and nothing behind it is read.
 *   Its `content()` reads through the link via `ctx.fs`, so for a link that leads
 *   outside the allowed roots `content()` throws the `PermissionError`.
 * - **With `followSymlinks: true`** the walker must look at the target. A link whose
 *   target is outside the allowed roots is yielded as an *error item*: an item with
 *   `error` set to the `PermissionError` (which names the path and the `--allow-read`
 *   flag) and `data` the symlink entry, whose `content()` throws that same error. The
 *   walk goes on. A dangling link stays a `symlink` entry; a link that leads back into one
 *   of its own ancestors is not descended again (logged at `warn`).
 * - **An unreadable directory or entry (`EACCES`, `EPERM`)** does not stop the walk: it
 *   is yielded (whatever `types` and `include` say for a directory, since what it holds
 *   is unknown) as one error item whose `error` is a `PermanentError` naming the relative
 *   path, so the run's error policy (`fail`, `skip`, `dead-letter`) decides and the run
 *   summary counts it; the walk goes on with the next entry. An unreadable *file* is listed normally (listing needs only the
 *   directory); reading it makes its `content()` stream error with `EACCES`.
 * - An entry that vanishes between `readdir` and `lstat` is skipped (logged at `debug`).
 * - Problems with `root` itself (missing, not a directory, not allowed) throw, because
 *   the walk cannot start.
 *
 * @example
 * ```ts
 * import { files } from '../sources/files/files.ts';
 *
 * for await (const { id, data } of files(ctx, { root: 'mirror', include: ['**\/*.rpm'] })) {
 *   console.log(id, data.size);
 * }
 * ```
 */
import type { Dirent, Stats } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import picomatch from 'picomatch';
import type { RunContext } from '../../runtime/context.ts';
import { FatalError, PermanentError, SluiceError } from '../../runtime/errors.ts';
import { item, type TaggedItem } from '../../runtime/pipeline.ts';
import type { EntryType, FileEntry } from '../entry.ts';

export interface FilesOptions {
  /** the directory to walk (relative to the working directory, or absolute); not itself yielded */
  readonly root: string;
  /** globs (picomatch, dotfiles included) on the relative path; an entry is yielded only if one matches */
  readonly include?: readonly string[];
  /** globs on the relative path; a matching entry is neither yielded nor (for a directory) entered */
  readonly exclude?: readonly string[];
  /** follow symlinks to files and directories (default false: report the link itself) */
  readonly followSymlinks?: boolean;
  /** deepest level yielded: 1 is the root's own entries only; default unlimited */
  readonly maxDepth?: number;
  /** which kinds of entries are yielded (default `['file']`); directories are walked either way */
  readonly types?: readonly EntryType[];
}

/**
 * Yield `item(relativePath, entry, { bytes })` for every entry under `options.root`.
 * See the module comment for the order and for what happens to unreadable entries.
 */
export async function* files(ctx: RunContext, options: FilesOptions): AsyncGenerator<TaggedItem<FileEntry>, void, undefined> {
  const root = path.resolve(options.root);
  const include = options.include?.length ? picomatch([...options.include], { dot: true }) : () => true;
  const exclude = options.exclude?.length ? picomatch([...options.exclude], { dot: true }) : () => false;
  const types = new Set<EntryType>(options.types ?? ['file']);
  const maxDepth = options.maxDepth ?? Number.POSITIVE_INFINITY;
  const follow = options.followSymlinks ?? false;
  const log = ctx.log.child({ source: 'files', root: options.root });

  let rootStat: Stats;
  let rootEntries: Dirent[];
  try {
    rootStat = await ctx.fs.stat(root);
    if (!rootStat.isDirectory()) {
      throw new FatalError(`${options.root} is not a directory`, { item: options.root, hint: 'give files() a directory as root' });
    }
    rootEntries = await ctx.fs.readdir(root);
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    throw new FatalError(`cannot walk ${options.root}: ${codeText(err)}`, { item: options.root, hint: 'check that the root exists and is readable', cause: err });
  }

  /** directories on the current path (device:inode), to stop a followed link from looping */
  const ancestors = new Set<string>([inodeKey(rootStat)]);

  const makeEntry = (rel: string, abs: string, stat: Stats, linkTarget: string | undefined): FileEntry => {
    const type = entryType(stat);
    return {
      path: rel,
      absolutePath: abs,
      type,
      size: stat.size,
      mode: stat.mode,
      mtime: stat.mtime,
      ...(linkTarget === undefined ? {} : { linkTarget }),
      content: () => {
        if (type === 'directory') throw new PermanentError(`${rel} is a directory and has no content`, { item: rel });
        // ctx.fs checks the real path (through any link) before opening, and opens that
        return Readable.toWeb(ctx.fs.createReadStream(abs)) as unknown as ReadableStream<Uint8Array>;
      },
    };
  };

  const errorItem = (rel: string, entry: FileEntry, error: unknown): TaggedItem<FileEntry> => {
    log.debug('entry cannot be read', { path: rel, error: error instanceof Error ? error.message : String(error) });
    const failing: FileEntry = { ...entry, content: () => { throw error; } };
    return item(rel, failing, { bytes: 0, error });
  };

  async function* walk(dir: string, dirRel: string, entries: Dirent[], depth: number): AsyncGenerator<TaggedItem<FileEntry>, void, undefined> {
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const dirent of entries) {
      ctx.signal.throwIfAborted();
      const rel = dirRel === '' ? dirent.name : `${dirRel}/${dirent.name}`;
      const abs = path.join(dir, dirent.name);
      // an excluded entry is neither yielded nor entered, so it is not even looked at
      if (exclude(rel)) continue;

      let stat: Stats;
      try {
        stat = await ctx.fs.lstat(abs);
      } catch (err) {
        if (isCode(err, 'ENOENT')) {
          log.debug('entry vanished during the walk', { path: rel });
          continue;
        }
        const guess = placeholderEntry(rel, abs, dirent);
        if (guess.type !== 'directory' && !(types.has(guess.type) && include(rel))) continue;
        yield errorItem(rel, guess, err instanceof SluiceError ? err : readError(rel, abs, 'cannot stat', err));
        continue;
      }

      let entry = makeEntry(rel, abs, stat, undefined);
      if (stat.isSymbolicLink()) {
        const linkTarget = await ctx.fs.readlink(abs).catch((err: unknown) => {
          log.debug('cannot read symlink', { path: rel, error: codeText(err) });
          return undefined;
        });
        entry = makeEntry(rel, abs, stat, linkTarget);
        if (follow) {
          try {
            const target = await ctx.fs.stat(abs);
            if (target.isDirectory() && ancestors.has(inodeKey(target))) {
              log.warn('symlink leads back into its own ancestor; not followed', { path: rel, linkTarget });
            } else {
              entry = makeEntry(rel, abs, target, linkTarget);
              stat = target;
            }
          } catch (err) {
            if (!isCode(err, 'ENOENT') && !isCode(err, 'ELOOP')) {
              yield errorItem(rel, entry, err instanceof SluiceError ? err : readError(rel, abs, 'cannot follow symlink', err));
              continue;
            }
            // a dangling link stays a symlink entry
          }
        }
      }
      const wanted = types.has(entry.type) && include(rel);
      if (entry.type !== 'directory' || depth >= maxDepth) {
        if (wanted) yield item(rel, entry, { bytes: entry.type === 'file' ? entry.size : 0 });
        continue;
      }

      // list a directory before yielding it, so one that cannot be listed is one error item
      let children: Dirent[];
      try {
        children = await ctx.fs.readdir(abs);
      } catch (err) {
        if (isCode(err, 'ENOENT')) {
          log.debug('directory vanished during the walk', { path: rel });
          continue;
        }
        yield errorItem(rel, entry, err instanceof SluiceError ? err : readError(rel, abs, 'cannot list directory', err));
        continue;
      }
      if (wanted) yield item(rel, entry, { bytes: 0 });
      const key = inodeKey(stat);
      ancestors.add(key);
      try {
        yield* walk(abs, rel, children, depth + 1);
      } finally {
        ancestors.delete(key);
      }
    }
  }

  yield* walk(root, '', rootEntries, 1);
}

function entryType(stat: Stats): EntryType {
  if (stat.isFile()) return 'file';
  if (stat.isDirectory()) return 'directory';
  if (stat.isSymbolicLink()) return 'symlink';
  return 'other';
}

/** What we know of an entry we could not stat: its type from the directory listing, nothing else. */
function placeholderEntry(rel: string, abs: string, dirent: Dirent): FileEntry {
  const type: EntryType = dirent.isFile() ? 'file' : dirent.isDirectory() ? 'directory' : dirent.isSymbolicLink() ? 'symlink' : 'other';
  return { path: rel, absolutePath: abs, type, size: 0, mode: 0, mtime: new Date(0), content: () => { throw new Error('unreachable'); } };
}

function readError(rel: string, abs: string, what: string, err: unknown): PermanentError {
  return new PermanentError(`${what} ${rel}: ${codeText(err)}`, {
    item: rel,
    hint: `fix the permissions of ${abs}, or leave it out with exclude: ['${rel}']`,
    cause: err,
  });
}

function inodeKey(stat: Stats): string {
  return `${stat.dev}:${stat.ino}`;
}

function isCode(err: unknown, code: string): boolean {
  return (err as { code?: unknown } | null)?.code === code;
}

function codeText(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const text = err instanceof Error ? err.message : String(err);
  if (code === 'EACCES' || code === 'EPERM') return `permission denied (${code})`;
  if (code === 'ENOENT') return 'no such file or directory (ENOENT)';
  return text;
}
