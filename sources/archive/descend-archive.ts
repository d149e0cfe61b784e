/**
 * For the `files()` walker (and any source of `FileEntry` values): if an entry is an
 * archive, yield its members in its place.
 *
 * `yield* descendArchive(ctx, entry, options)` looks at the entry's first bytes (through
 * one layer of compression). If they are a tar (plain, gzip, xz, zstd, bzip2) or a zip,
 * it yields one item per member, with ids and paths `<entry.path>!<member path>`
 * (`mirror/pool/x.tar.gz!usr/bin/x`), and returns `true`; the walk can then leave the
 * archive file itself out (or yield it too). Otherwise it yields nothing and returns
 * `false`, having read only those first bytes, and the caller yields the entry as usual.
 *
 * A zip on disk (an entry with a real `absolutePath`) is read in place; one inside
 * another container is copied to a temp file first. Members, errors and the content rule
 * are as for the `archive()` source: error items for members and for a corrupt archive,
 * never a throw for bad archive bytes.
 *
 * @example
 * ```ts
 * // in files(), where a file entry is yielded:
 * if (entry.type === 'file' && options.archives && (yield* descendArchive(ctx, entry, { nested: true }))) continue;
 * yield item(rel, entry, { bytes: entry.size });
 * ```
 */
import type { RunContext } from '../../runtime/context.ts';
import type { TaggedItem } from '../../runtime/pipeline.ts';
import { ByteReader } from '../decoders/byte-reader.ts';
import type { EntryType, FileEntry } from '../entry.ts';
import { archiveEntries, archiveFileEntries, probeArchive, type ArchiveEntriesOptions } from './archive-entries.ts';
import type { ArchiveEntry } from './archive-entry.ts';
import { archiveItems } from './archive.ts';

export interface DescendOptions extends Omit<ArchiveEntriesOptions, 'name' | 'signal' | 'absolutePath' | 'pathPrefix'> {
  /** which kinds of members are yielded (default `['file']`) */
  readonly types?: readonly EntryType[];
}

export async function* descendArchive(
  ctx: RunContext,
  entry: FileEntry,
  options: DescendOptions = {},
): AsyncGenerator<TaggedItem<ArchiveEntry>, boolean, undefined> {
  if (entry.type !== 'file') return false;
  let reader: ByteReader;
  try {
    reader = ByteReader.from(entry.content());
  } catch {
    return false; // cannot be opened (e.g. a symlink leading outside the allowed roots): the caller yields it as it is
  }
  let kind;
  try {
    kind = await probeArchive(reader, entry.path);
  } catch {
    // unreadable: not our business here; the caller yields the entry, whose content() fails the same way
    kind = undefined;
  }
  if (!kind) {
    await reader.cancel();
    return false;
  }

  const { types, ...rest } = options;
  const common = { ...rest, name: entry.path, signal: ctx.signal, absolutePath: entry.absolutePath, pathPrefix: `${entry.path}!` };
  // a zip on disk is read in place; anything else (and a zip inside another container) as the stream already open
  const onDisk = kind === 'zip' && (await ctx.fs.stat(entry.absolutePath).then((s) => s.isFile(), () => false));
  if (onDisk) await reader.cancel();
  const entries = onDisk ? archiveFileEntries(ctx, entry.absolutePath, common) : archiveEntries(reader, common);
  yield* archiveItems(ctx, entries, { id: (e) => e.path, archive: entry.path, absolutePath: entry.absolutePath, types });
  return true;
}
