/**
 * Source of `altrepo-repo`: the packages under a path, whatever holds them.
 *
 * - a directory laid out as an ALT snapshot (`<arch>/base/pkglist.<comp>.xz` …, see
 *   snapshot.ts): one `listed` item per package list entry; no package file is opened;
 * - any other directory: one `file` item per `*.rpm` under it (files.ts: sorted,
 *   symlinks not followed);
 * - a file: an archive (tar of any compression, zip; nested archives opened), one
 *   `file` item per `*.rpm` member (archive.ts; the member's `content()` must be called
 *   before the next item is pulled, which the loader does).
 *
 * `layout` forces the directory reading (`snapshot` or `flat`); `auto` looks for a
 * `<arch>/base/` with a package list or a release file.
 *
 * @example
 * ```ts
 * source: (ctx) => repoItems(ctx, { path: ctx.params.path, layout: 'auto' }),
 * ```
 */
import type { RunContext } from '../../runtime/context.ts';
import { FatalError } from '../../runtime/errors.ts';
import { item, type TaggedItem } from '../../runtime/pipeline.ts';
import { archive } from '../archive/index.ts';
import type { FileEntry } from '../entry.ts';
import { files } from '../files/files.ts';
import { isSnapshot, snapshotPackages, type ListedPackage } from './snapshot.ts';

export type RepoItem =
  | { readonly kind: 'listed'; readonly listed: ListedPackage }
  | { readonly kind: 'file'; readonly entry: FileEntry; readonly name: string; readonly inArchive: boolean };

export type RepoLayout = 'auto' | 'snapshot' | 'flat';

export async function* repoItems(ctx: RunContext, options: { path: string; layout: RepoLayout }): AsyncGenerator<TaggedItem<RepoItem>, void, undefined> {
  const root = options.path;
  let isDir: boolean;
  try {
    isDir = (await ctx.fs.stat(root)).isDirectory();
  } catch (err) {
    if ((err as { name?: string }).name === 'PermissionError') throw err;
    throw new FatalError(`cannot read ${root}: ${err instanceof Error ? err.message : String(err)}`, { item: root, hint: 'give a snapshot directory, a directory of RPMs or an archive of RPMs', cause: err });
  }
  if (!isDir) {
    if (options.layout === 'snapshot') throw new FatalError(`${root} is a file; a snapshot is a directory (an archive is read as a flat set of RPMs)`, { item: root });
    for await (const it of archive(ctx, { path: root, nested: true })) {
      if (!it.error && !it.data.path.endsWith('.rpm')) continue;
      yield retag(it, { kind: 'file', entry: it.data, name: it.data.absolutePath, inArchive: true });
    }
    return;
  }
  const snapshot = options.layout !== 'flat' && (await isSnapshot(ctx, root));
  if (options.layout === 'snapshot' && !snapshot) {
    throw new FatalError(`${root} is not an ALT snapshot: no <arch>/base/ with a package list or a release file`, { item: root, hint: 'give the snapshot root (the directory holding x86_64/, noarch/ …), or layout=flat' });
  }
  if (snapshot) {
    ctx.log.info(`${root}: reading it as an ALT snapshot (package lists in <arch>/base/)`);
    for await (const it of snapshotPackages(ctx, { root })) yield retag(it, { kind: 'listed', listed: it.data });
    return;
  }
  ctx.log.info(`${root}: reading it as a flat directory of RPMs`);
  for await (const it of files(ctx, { root, include: ['**/*.rpm'] })) {
    yield retag(it, { kind: 'file', entry: it.data, name: `${root.replace(/\/+$/, '')}/${it.data.path}`, inArchive: false });
  }
}

function retag<A, B>(it: TaggedItem<A>, data: B): TaggedItem<B> {
  return item(it.id, data, {
    ...(it.bytes !== undefined ? { bytes: it.bytes } : {}),
    ...(it.ack ? { ack: it.ack } : {}),
    ...(it.nack ? { nack: it.nack } : {}),
    ...(it.error !== undefined ? { error: it.error } : {}),
  });
}
