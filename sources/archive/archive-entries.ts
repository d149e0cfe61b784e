/**
 * The members of an archive, as `ArchiveEntry` values (the `FileEntry` shape): tar,
 * plain or compressed with gzip, xz, zstd or bzip2, and zip. The format is found from the
 * bytes (magic numbers, the tar header checksum), never from a name.
 *
 * `archiveEntries(input, { name })` reads a stream. A zip must be read from its end (the
 * central directory), so a zip that arrives as a stream is first copied to a private
 * temporary file (`tempDir`, default the OS's, mode 0600, removed when its members are
 * done); `archive()` reads a zip on disk in place. `archiveFileEntries(ctx, path)` is the
 * form for a file on disk, through the run's permission-checked `ctx.fs`.
 *
 * **content() is valid until the next entry is pulled** (content-lease.ts): call it
 * before asking for the next entry, read it to its end or cancel it, and the generator
 * waits for that before it moves on. This is what lets a 50 GB tar.xz stream through in
 * constant memory.
 *
 * **Nested archives** (`nested: true`): a member whose bytes are a tar (plain or
 * compressed) or a zip is opened, and its members are yielded in its place, with paths
 * `<member>!<path inside it>` (`inner.zip!deep.tar!deep/deep.txt`; see archive-entry.ts),
 * down to `limits.maxDepth` levels. The archive member itself is not yielded. A member
 * that is compressed but holds no archive (`Packages.xz`) is yielded as it is, with its
 * compressed bytes. A nested archive that turns out to be corrupt is yielded as one
 * error entry (its `error` set, its members up to that point already yielded) and the
 * outer archive goes on.
 *
 * **Errors**: a corrupt or truncated archive makes the generator throw a
 * `PermanentError` naming the archive (a `DecodeError` with the compressed offset when
 * the compression is at fault); the entries before it have been yielded. A bomb limit
 * (limits.ts) throws an `ArchiveLimitError`. Members that cannot be read are error
 * entries and do not stop the archive.
 *
 * @example
 * ```ts
 * import { archiveEntries } from './archive-entries.ts';
 * import { hashStream } from '../files/hash-stream.ts';
 *
 * for await (const entry of archiveEntries(response.body!, { name: url, nested: true })) {
 *   if (entry.type === 'file' && !entry.error) console.log(entry.path, (await hashStream(entry.content())).sha256);
 * }
 * ```
 */
import type { FileHandle } from 'node:fs/promises';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RunContext } from '../../runtime/context.ts';
import { PermanentError, SluiceError } from '../../runtime/errors.ts';
import { ByteReader, type ByteInput } from '../decoders/byte-reader.ts';
import { byteStream, DECODERS } from '../decoders/decompress.ts';
import { COMPRESSION_MAGIC_BYTES, detectCompression } from '../decoders/detect.ts';
import type { ArchiveEntry, ArchiveFormat } from './archive-entry.ts';
import { childLevel, type ArchiveLevel } from './archive-level.ts';
import { attachLease, ContentLease } from './content-lease.ts';
import { detectArchive, TAR_HEADER_BYTES } from './detect-archive.ts';
import { Budget, DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from './limits.ts';
import { tarEntries } from './tar-entries.ts';
import { zipEntries } from './zip-entries.ts';

export interface ArchiveEntriesOptions {
  /** the archive in messages and in `entry.archive` (a path, a URL) */
  readonly name: string;
  /** open members that are archives themselves and yield their members instead (default false) */
  readonly nested?: boolean;
  /** bomb limits; unset fields take DEFAULT_ARCHIVE_LIMITS */
  readonly limits?: Partial<ArchiveLimits>;
  /** where a zip that arrives as a stream is copied to be read (default: the OS temp dir) */
  readonly tempDir?: string;
  /** stops waiting for a consumer's open content and ends the reading */
  readonly signal?: AbortSignal;
  /** what `absolutePath` starts with (default `name`) */
  readonly absolutePath?: string;
  /** put before every member's `path` (default ''; the files source passes `<archive path>!`) */
  readonly pathPrefix?: string;
}

export async function* archiveEntries(input: ByteInput, options: ArchiveEntriesOptions): AsyncGenerator<ArchiveEntry, void, undefined> {
  const reader = ByteReader.from(input);
  const level = topLevel(options);
  level.budget.inputOf = () => reader.position;
  yield* readLevel(reader, level, settings(options));
}

/**
 * The members of the archive at `file` on disk, opened through `ctx.fs` (so the run's
 * `read` permission applies). A zip is read in place; anything else as a stream.
 * Opening the file can throw (missing, not allowed); everything after that is as for
 * `archiveEntries`.
 */
export async function* archiveFileEntries(ctx: RunContext, file: string, options: ArchiveEntriesOptions): AsyncGenerator<ArchiveEntry, void, undefined> {
  const handle = await ctx.fs.open(file);
  let handedOver = false;
  try {
    const level = topLevel({ ...options, absolutePath: options.absolutePath ?? path.resolve(file) });
    const set = settings(options);
    const head = Buffer.alloc(TAR_HEADER_BYTES);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    if (detectArchive(head.subarray(0, bytesRead)) === 'zip') {
      const { size } = await handle.stat();
      level.budget.inputOf = () => size;
      yield* nestedIn(zipEntries(handle.fd, level), level, set);
      return;
    }
    const stream = handle.createReadStream({ start: 0, highWaterMark: 256 * 1024, autoClose: true });
    handedOver = true;
    const reader = ByteReader.from(stream as AsyncIterable<Uint8Array>);
    level.budget.inputOf = () => reader.position;
    yield* readLevel(reader, level, set);
  } finally {
    if (!handedOver) await handle.close();
  }
}

/**
 * Whether the bytes `reader` has left are an archive (looking through one layer of
 * compression for a tar), without consuming them. A compressed stream that cannot be
 * decoded is not an archive (its reader will fail on it later, if it is read).
 */
export async function probeArchive(reader: ByteReader, name: string): Promise<ArchiveFormat | undefined> {
  const head = await reader.peek(TAR_HEADER_BYTES);
  const compression = detectCompression(head);
  if (!compression) return detectArchive(head);
  const recording = reader.recording();
  try {
    // small chunks: the first 512 bytes should not wait for (or fail on) what comes after
    const decoded = ByteReader.from(DECODERS[compression](recording.input, { name, chunkSize: 8 * TAR_HEADER_BYTES }));
    const inner = await decoded.peek(TAR_HEADER_BYTES).catch(() => undefined);
    await decoded.cancel();
    return inner ? detectArchive(inner) : undefined;
  } finally {
    await recording.rewind();
  }
}

interface Settings {
  readonly nested: boolean;
  readonly maxDepth: number;
  readonly tempDir: string;
}

function settings(options: ArchiveEntriesOptions): Settings {
  return {
    nested: options.nested ?? false,
    maxDepth: options.limits?.maxDepth ?? DEFAULT_ARCHIVE_LIMITS.maxDepth,
    tempDir: options.tempDir ?? os.tmpdir(),
  };
}

function topLevel(options: ArchiveEntriesOptions): ArchiveLevel & { budget: Budget } {
  const limits: ArchiveLimits = { ...DEFAULT_ARCHIVE_LIMITS, ...options.limits };
  const prefix = options.pathPrefix ?? '';
  return {
    name: options.name,
    pathPrefix: prefix,
    absolutePrefix: `${options.absolutePath ?? options.name}!`,
    depth: 0,
    budget: new Budget(options.name, limits),
    ...(options.signal ? { signal: options.signal } : {}),
  };
}

/** Read one archive (any compression, tar or zip) from `reader`. */
async function* readLevel(reader: ByteReader, level: ArchiveLevel, set: Settings): AsyncGenerator<ArchiveEntry, void, undefined> {
  const compression = detectCompression(await reader.peek(COMPRESSION_MAGIC_BYTES));
  let source = reader;
  if (compression) {
    const decoded = DECODERS[compression](reader, { name: level.name });
    source = ByteReader.from(counted(decoded, level));
  }
  const kind = detectArchive(await source.peek(TAR_HEADER_BYTES));
  if (kind === 'tar') {
    yield* nestedIn(tarEntries(source, level), level, set);
    return;
  }
  if (kind === 'zip') {
    const spool = await spoolToFile(source, set.tempDir, level);
    try {
      yield* nestedIn(zipEntries(spool.handle.fd, level), level, set);
    } finally {
      await spool.remove();
    }
    return;
  }
  await source.cancel();
  throw new PermanentError(`${level.name} is not a tar or zip archive${compression ? ` (it is ${compression}-compressed, but what is inside is neither)` : ''}`, {
    item: level.name,
    hint: 'archives are recognised by their bytes: tar (plain, gzip, xz, zstd, bzip2) and zip',
  });
}

/** The level's entries, with archive members opened and replaced by their members when `nested`. */
async function* nestedIn(entries: AsyncGenerator<ArchiveEntry, void, undefined>, level: ArchiveLevel, set: Settings): AsyncGenerator<ArchiveEntry, void, undefined> {
  if (!set.nested) {
    yield* entries;
    return;
  }
  for await (const entry of entries) {
    if (entry.type !== 'file' || entry.error || entry.hardLinkTarget !== undefined || level.depth >= set.maxDepth) {
      yield entry;
      continue;
    }
    const reader = ByteReader.from(entry.content());
    const kind = await probeArchive(reader, `${level.name}!${entry.path.slice(level.pathPrefix.length)}`);
    if (!kind) {
      const again = passThrough(entry, reader);
      yield again.entry;
      await again.lease.release(level.signal);
      continue;
    }
    try {
      yield* readLevel(reader, childLevel(level, entry), set);
    } catch (err) {
      // the nested archive is broken: report it as one entry, go on with the outer one
      // (if the outer one is broken too, its own next header will say so)
      if (!(err instanceof PermanentError) || err.name === 'ArchiveLimitError' || level.signal?.aborted) throw err;
      await reader.cancel(err);
      yield failed(entry, err);
    }
  }
}

/** `entry` again, its content starting over from the bytes the probe looked at; not opened, the bytes are let go. */
function passThrough(entry: ArchiveEntry, reader: ByteReader): { entry: ArchiveEntry; lease: ContentLease } {
  const lease = new ContentLease(`${entry.archive}!${entry.path}`, () => byteStream(reader), () => reader.cancel());
  return { entry: attachLease({ ...entry, content: lease.content }, lease), lease };
}

function failed(entry: ArchiveEntry, error: PermanentError): ArchiveEntry {
  return {
    ...entry,
    error,
    content: () => {
      throw error;
    },
  };
}

/** Count what comes out of a decompressor against the bomb limits. */
async function* counted(stream: ReadableStream<Uint8Array>, level: ArchiveLevel): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const chunk of stream) {
    level.budget.addProduced(chunk.length, level.name, level.member);
    yield chunk;
  }
}

/** Copy what `reader` has left to a new private temp file, for a zip that arrived as a stream. */
async function spoolToFile(reader: ByteReader, tempDir: string, level: ArchiveLevel): Promise<{ handle: FileHandle; remove: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(tempDir, 'sluice-zip-'));
  const file = path.join(dir, 'spool.zip');
  const remove = async () => {
    await handle.close().catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  };
  const handle = await fs.open(file, 'w+', 0o600);
  try {
    for (;;) {
      level.signal?.throwIfAborted();
      const chunk = await reader.read();
      if (!chunk) break;
      await handle.write(chunk);
    }
  } catch (err) {
    await remove();
    if (err instanceof SluiceError) throw err;
    throw new PermanentError(`${level.name}: cannot copy the zip to ${tempDir} to read it: ${err instanceof Error ? err.message : String(err)}`, {
      item: level.name,
      hint: 'set tempDir to a writable directory with room for the zip',
      cause: err,
    });
  }
  return { handle, remove };
}
