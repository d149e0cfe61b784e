/**
 * Source: the members of one archive file, one item each, like `files()` yields the
 * entries of a directory. The archive is opened through `ctx.fs`, so the run's `read`
 * permission applies. Its format is found from its bytes: tar (plain, gzip, xz, zstd,
 * bzip2) or zip; see archive-entries.ts for nesting, limits and the content rule.
 *
 * Items: id `<path>!<member path>` (`mirror/base.tar.xz!etc/os-release`), data the
 * `ArchiveEntry`, bytes its size.
 *
 * Content: **call `entry.content()` in the transform before anything async** (the
 * runner runs the transform of an item before it pulls the next one, so the archive is
 * not moved past it) and read it to its end. The next member is read when that is done,
 * or when the item is acknowledged or fails, whichever comes first.
 *
 * Errors:
 * - the archive cannot be opened (missing, not allowed): a `FatalError` (or the
 *   `PermissionError`) is thrown, since there is nothing to read;
 * - a member that cannot be read (a corrupt nested archive, an old-GNU sparse file, an
 *   encrypted zip member): an item with `error` set, whatever `types` says; the run's
 *   `onError` policy decides, and the other members go on;
 * - the archive is corrupt or truncated from some point on, or a bomb limit trips: the
 *   members before that are yielded, then one error item with the archive's path as id
 *   and the `PermanentError` (a `DecodeError` with the offset, an `ArchiveLimitError` …).
 *
 * @example
 * ```ts
 * export default definePipeline({
 *   name: 'tarball-hashes',
 *   description: 'sha256 of every file in a tarball',
 *   params: z.object({ tarball: z.string() }),
 *   permissions: ({ params }) => ({ read: [params.tarball] }),
 *   source: (ctx) => archive(ctx, { path: ctx.params.tarball, nested: true }),
 *   transform: () => pipe(mergeMap(async (e) => ({ path: e.path, ...(await hashStream(e.content(), ['sha256'])) }))),
 *   sinks: () => [stdout()],
 *   onError: 'skip',
 * });
 * ```
 */
import path from 'node:path';
import type { RunContext } from '../../runtime/context.ts';
import { FatalError, PermanentError, SluiceError } from '../../runtime/errors.ts';
import { item, type TaggedItem } from '../../runtime/pipeline.ts';
import type { EntryType } from '../entry.ts';
import { archiveFileEntries, type ArchiveEntriesOptions } from './archive-entries.ts';
import type { ArchiveEntry } from './archive-entry.ts';
import { releaseEntryContent } from './content-lease.ts';

export interface ArchiveOptions extends Omit<ArchiveEntriesOptions, 'name' | 'signal' | 'absolutePath'> {
  /** the archive file (relative to the working directory, or absolute) */
  readonly path: string;
  /** which kinds of members are yielded (default `['file']`); error items are yielded whatever their kind */
  readonly types?: readonly EntryType[];
}

export async function* archive(ctx: RunContext, options: ArchiveOptions): AsyncGenerator<TaggedItem<ArchiveEntry>, void, undefined> {
  const { path: file, types, ...rest } = options;
  const entries = archiveFileEntries(ctx, file, { ...rest, name: file, signal: ctx.signal });
  yield* archiveItems(ctx, entries, {
    id: (entry) => `${file}!${entry.path}`,
    archive: file,
    absolutePath: path.resolve(file),
    types,
    openError: (err) => {
      if (err instanceof SluiceError && err.name === 'PermissionError') return err;
      if (isOpenError(err)) {
        return new FatalError(`cannot open archive ${file}: ${describe(err)}`, { item: file, hint: 'check that the file exists and is readable', cause: err });
      }
      return undefined;
    },
  });
}

/** Items from archive entries: error items for bad members and for an archive that breaks off (shared with `descendArchive`). */
export async function* archiveItems(
  ctx: RunContext,
  entries: AsyncGenerator<ArchiveEntry, void, undefined>,
  how: {
    id: (entry: ArchiveEntry) => string;
    archive: string;
    absolutePath: string;
    types?: readonly EntryType[] | undefined;
    /** an error to throw (instead of an error item) when the archive fails before its first member */
    openError?: (err: unknown) => unknown;
  },
): AsyncGenerator<TaggedItem<ArchiveEntry>, void, undefined> {
  const types = new Set<EntryType>(how.types ?? ['file']);
  let started = false;
  try {
    for (;;) {
      const next = await entries.next();
      if (next.done) break;
      started = true;
      const entry = next.value;
      const release = () => releaseEntryContent(entry);
      if (entry.error) yield item(how.id(entry), entry, { bytes: 0, error: entry.error });
      else if (types.has(entry.type)) {
        yield item(how.id(entry), entry, { bytes: entry.type === 'file' ? entry.size : 0, ack: release, nack: release });
      }
    }
  } catch (err) {
    const instead = started ? undefined : how.openError?.(err);
    if (instead !== undefined) throw instead;
    // the archive cannot be read on from here: one error item; what came before stands
    if (ctx.signal.aborted || (err instanceof SluiceError && err.kind !== 'permanent')) throw err;
    yield archiveError(how.archive, err, how.absolutePath);
  } finally {
    await entries.return();
  }
}

function archiveError(archive: string, err: unknown, absolutePath = path.resolve(archive)): TaggedItem<ArchiveEntry> {
  const error = err instanceof PermanentError ? err : new PermanentError(`${archive}: ${describe(err)}`, { item: archive, cause: err });
  const entry: ArchiveEntry = {
    path: '',
    absolutePath,
    type: 'file',
    size: 0,
    mode: 0,
    mtime: new Date(0),
    archive,
    format: 'tar',
    rawPath: '',
    error,
    content: () => {
      throw error;
    },
  };
  return item(archive, entry, { bytes: 0, error });
}

function isOpenError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'EISDIR';
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
