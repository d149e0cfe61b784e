/**
 * The files inside an RPM: its payload decompressed and parsed as cpio "newc"
 * (magic `070701`, or `070702` with a checksum), yielded in the `FileEntry` shape of
 * `sources/entry.ts`, so a transform written for `files()` works on a package's
 * contents unchanged.
 *
 * Decompression: gzip, xz, zstd and bzip2 with the project's decoders
 * (`sources/decoders/`); any other compressor (e.g. rpm's legacy `lzma`) through a
 * `Decompressor` passed in `options.decompressors`, which can also replace the built-in
 * ones. A payload with no decompressor is a `PermanentError` saying so.
 *
 * Paths: rpm stores `./usr/bin/foo`; entries are `usr/bin/foo` (no `./` or `/`), and
 * `absolutePath` is the package's `absolutePath` followed by `/` and that. A path with a
 * `..` component is a `PermanentError` (no real package has one).
 *
 * Content: `entry.content()` called (and read from) before the next entry is asked for
 * streams the bytes as they are decompressed. Called or first read later, or called
 * again, it opens the package again and decompresses up to that entry: correct, but it
 * costs a pass over the payload. A live stream left half-read when the iteration moves
 * on errors (its remaining bytes were skipped). Hard links: rpm stores the data once, with the last link of a set; the
 * others are yielded with the size from the header and a `content()` that finds it.
 * rpm ≥ 4.12's "stripped" cpio for files over 4 GiB (`07070X`) is not supported (a
 * `PermanentError`); neither rpm 4.0.4 (ALT) nor 4.18 writes it for smaller files.
 *
 * @example
 * ```ts
 * import { payloadEntries } from './payload.ts';
 *
 * for await (const file of payloadEntries(rpmEntry)) {
 *   if (file.type === 'file') console.log(file.path, file.size);
 * }
 * ```
 */
import { PermanentError, SluiceError } from '../../runtime/errors.ts';
import type { FileEntry } from '../entry.ts';
import { DECODERS } from '../decoders/decompress.ts';
import { ByteReader, chunksOf, type ByteSource } from './byte-reader.ts';
import { decodeRpmText } from './header.ts';
import { openPackage, typeOfMode, type RpmFile, type RpmPackage } from './package.ts';

/**
 * Turns compressed bytes into decompressed bytes, streaming; `name` is for its errors.
 * The decoders of `sources/decoders/` have this shape.
 */
export type Decompressor = (
  compressed: AsyncIterable<Uint8Array>,
  options: { readonly name: string },
) => AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>;

/** Decompressors by PAYLOADCOMPRESSOR name (`gzip`, `xz`, `zstd`, `bzip2`, `lzma` …). */
export type Decompressors = Readonly<Partial<Record<string, Decompressor>>>;

/** What this module decompresses without help: the project's decoders, and `identity`. */
export const BUILTIN_DECOMPRESSORS: Decompressors = {
  ...DECODERS,
  identity: (compressed) => compressed,
};

export interface PayloadOptions {
  /** names the package in errors (default: the package's `absolutePath`, or `(stream)`) */
  source?: string;
  /** decompressors for other compressors, or to use instead of the built-in ones (see the module comment) */
  decompressors?: Decompressors;
}

/**
 * The decompressed payload. Errors of the decompressor (corrupt or truncated data)
 * become `PermanentError`s naming the package.
 */
export async function* decompressPayload(
  compressor: string,
  compressed: AsyncIterable<Uint8Array>,
  options: PayloadOptions = {},
): AsyncGenerator<Uint8Array, void, undefined> {
  const source = options.source ?? '(stream)';
  const decompress = options.decompressors?.[compressor] ?? BUILTIN_DECOMPRESSORS[compressor];
  if (!decompress) {
    throw new PermanentError(`${source}: no decompressor for ${JSON.stringify(compressor)} RPM payloads`, {
      item: source,
      hint: `pass one in options.decompressors (built in: ${Object.keys(BUILTIN_DECOMPRESSORS).join(', ')})`,
    });
  }
  try {
    yield* chunksOf(decompress(compressed, { name: `${source} (${compressor} payload)` }));
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    throw new PermanentError(`${source}: cannot decompress the ${compressor} payload: ${(err as Error).message}`, {
      item: source,
      hint: 'the package is corrupt or truncated; fetch it again',
      cause: err,
    });
  }
}

/** The header of one cpio member. */
export interface CpioEntry {
  /** the name as stored, e.g. `./usr/bin/foo` */
  readonly name: string;
  readonly ino: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly nlink: number;
  /** seconds since the epoch */
  readonly mtime: number;
  /** bytes of data stored with this member (0 for all but the last link of a hard-link set) */
  readonly size: number;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  /** offset of the member's header in the decompressed payload */
  readonly offset: number;
}

/** A cpio member and its data; `body` is valid until the next member is asked for. */
export interface CpioMember {
  readonly entry: CpioEntry;
  /** the data, streamed; what is not read is skipped when the iteration moves on */
  readonly body: AsyncIterable<Buffer>;
}

const NEWC_HEADER = 110;
const MAX_NAME = 64 * 1024;
const TRAILER = 'TRAILER!!!';
const BODY_CHUNK = 256 * 1024;

/**
 * The members of a cpio "newc" archive, up to its `TRAILER!!!` (what follows the
 * trailer is not read). Memory: one header and one chunk.
 */
export async function* cpioEntries(data: ByteSource, options: { source?: string } = {}): AsyncGenerator<CpioMember, void, undefined> {
  const source = options.source ?? '(stream)';
  const where = (offset: number, what: string) => payloadError(source, offset, what);
  const reader = new ByteReader(data);
  try {
    for (;;) {
      const at = reader.position;
      const head = await reader.read(NEWC_HEADER);
      if (head.length === 0) throw where(at, `the archive ends without a ${TRAILER} member`);
      if (head.length < NEWC_HEADER) throw where(at + head.length, 'truncated member header');
      const magic = head.toString('latin1', 0, 6);
      if (magic === '07070X') throw where(at, 'stripped cpio (07070X, rpm ≥ 4.12 packages with files over 4 GiB) is not supported');
      if (magic !== '070701' && magic !== '070702') {
        throw where(at, `bad cpio magic ${JSON.stringify(magic)} (expected "070701", the "newc" format)`);
      }
      const field = (i: number): number => {
        const text = head.toString('latin1', 6 + 8 * i, 14 + 8 * i);
        if (!/^[0-9a-fA-F]{8}$/.test(text)) throw where(at + 6 + 8 * i, `cpio header field ${i} is not 8 hex digits: ${JSON.stringify(text)}`);
        return parseInt(text, 16);
      };
      const ino = field(0);
      const mode = field(1);
      const uid = field(2);
      const gid = field(3);
      const nlink = field(4);
      const mtime = field(5);
      const size = field(6);
      const devMajor = field(7);
      const devMinor = field(8);
      const rdevMajor = field(9);
      const rdevMinor = field(10);
      const nameSize = field(11);
      field(12); // check: unused by rpm
      if (nameSize === 0 || nameSize > MAX_NAME) throw where(at + 94, `cpio name size ${nameSize} is out of range (1..${MAX_NAME})`);
      const nameBytes = await reader.read(nameSize);
      if (nameBytes.length < nameSize) throw where(reader.position, 'truncated member name');
      if (nameBytes[nameSize - 1] !== 0) throw where(at + NEWC_HEADER, 'cpio member name is not NUL-terminated');
      const name = decodeRpmText(nameBytes.subarray(0, nameSize - 1));
      await padTo4(reader, source);
      if (name === TRAILER) return;

      const entry: CpioEntry = { name, ino, mode, uid, gid, nlink, mtime, size, devMajor, devMinor, rdevMajor, rdevMinor, offset: at };
      let left = size;
      let current = true;
      const body: AsyncIterable<Buffer> = {
        [Symbol.asyncIterator]: () => ({
          next: async (): Promise<IteratorResult<Buffer, undefined>> => {
            if (left === 0) return { done: true, value: undefined };
            if (!current) throw where(at, `the data of ${JSON.stringify(name)} was read after the archive moved on`);
            const chunk = await reader.readSome(Math.min(left, BODY_CHUNK));
            if (chunk.length === 0) throw where(reader.position, `truncated data of ${JSON.stringify(name)}: ${left} bytes missing`);
            left -= chunk.length;
            return { done: false, value: chunk };
          },
          return: async () => ({ done: true, value: undefined }),
        }),
      };
      yield { entry, body };
      // skip what the body's reader left; `left` stays as it is, so a late read of a
      // half-read body errors instead of ending early with bytes missing
      current = false;
      const unread = left;
      if ((await reader.skip(unread)) < unread) throw where(reader.position, `truncated data of ${JSON.stringify(name)}`);
      await padTo4(reader, source);
    }
  } finally {
    await reader.close();
  }
}

async function padTo4(reader: ByteReader, source: string): Promise<void> {
  const pad = (4 - (reader.position % 4)) % 4;
  if ((await reader.skip(pad)) < pad) throw payloadError(source, reader.position, 'truncated padding');
}

/** A `PermanentError` about the cpio archive: "<source>: cpio payload: <what> at byte <offset> of the decompressed payload". */
function payloadError(source: string, offset: number, what: string): PermanentError {
  return new PermanentError(`${source}: cpio payload: ${what} at byte ${offset} of the decompressed payload`, {
    item: source,
    hint: 'the package is corrupt; fetch it again or skip it',
  });
}

/** A file of the payload. */
export interface PayloadEntry extends FileEntry {
  readonly ino: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  /** the header's record for this path (digest, flags, user and group names …), when it has one */
  readonly file?: RpmFile;
}

/** The package file: a `FileEntry` of a `.rpm` fits. */
export interface PackageSource {
  readonly absolutePath: string;
  readonly content: () => ReadableStream<Uint8Array>;
}

/**
 * Every member of the package's payload as a `PayloadEntry`, in payload order. The
 * generator's return value (for callers that iterate by hand) is the `RpmPackage`,
 * with its digests, once the whole file has been read.
 */
export async function* payloadEntries(pkg: PackageSource, options: PayloadOptions = {}): AsyncGenerator<PayloadEntry, RpmPackage, undefined> {
  const source = options.source ?? pkg.absolutePath;
  const opened = await openPackage(pkg.content(), { source });
  let byPath: Map<string, RpmFile> | undefined;
  const fileFor = (path: string): RpmFile | undefined => {
    byPath ??= new Map(opened.header.files.map((f) => [relativePath(f.path), f]));
    return byPath.get(path);
  };
  try {
    const members = cpioEntries(decompressPayload(opened.header.payloadCompressor, opened.payload, { ...options, source }), { source });
    for await (const { entry, body } of members) {
      const path = checkedPath(entry, source);
      const type = typeOfMode(entry.mode);
      const file = fileFor(path);
      let linkTarget: string | undefined;
      if (type === 'symlink') {
        if (entry.size > MAX_NAME) throw payloadError(source, entry.offset, `symlink ${JSON.stringify(entry.name)} has a ${entry.size}-byte target`);
        const parts: Buffer[] = [];
        for await (const chunk of body) parts.push(chunk);
        linkTarget = decodeRpmText(Buffer.concat(parts));
      }
      // an earlier link of a hard-link set: its data travels with the last link
      const dataElsewhere = type === 'file' && entry.size === 0 && entry.nlink > 1 && (file?.size ?? 0) > 0;
      const index = entry;
      const match = dataElsewhere
        ? (e: CpioEntry) => e.ino === index.ino && e.size > 0 && e.offset > index.offset
        : (e: CpioEntry) => e.offset === index.offset;
      let live = type === 'file' && !dataElsewhere;
      let movedOn = false;
      // the data as it is decompressed; if reading starts only after the archive moved on, from a second pass
      async function* liveData(): AsyncGenerator<Buffer, void, undefined> {
        if (movedOn) yield* reopened(pkg, options, source, match);
        else yield* body;
      }
      const content = (): ReadableStream<Uint8Array> => {
        if (live) {
          live = false;
          return toReadableStream(liveData());
        }
        if (type === 'symlink') return toReadableStream([Buffer.from(linkTarget!)]);
        if (type !== 'file') return toReadableStream([]);
        return toReadableStream(reopened(pkg, options, source, match));
      };
      const result: PayloadEntry = {
        path,
        absolutePath: `${pkg.absolutePath}/${path}`,
        type,
        size: dataElsewhere ? file!.size : type === 'symlink' ? Buffer.byteLength(linkTarget!) : entry.size,
        mode: entry.mode,
        mtime: new Date(entry.mtime * 1000),
        ...(linkTarget !== undefined ? { linkTarget } : {}),
        content,
        ino: entry.ino,
        nlink: entry.nlink,
        uid: entry.uid,
        gid: entry.gid,
        ...(file ? { file } : {}),
      };
      yield result;
      live = false;
      movedOn = true;
    }
    return await opened.finish();
  } finally {
    await opened.close();
  }
}

/** Open the package again and stream the data of the first member `match` accepts. */
async function* reopened(pkg: PackageSource, options: PayloadOptions, source: string, match: (e: CpioEntry) => boolean): AsyncGenerator<Buffer, void, undefined> {
  const opened = await openPackage(pkg.content(), { source });
  try {
    const members = cpioEntries(decompressPayload(opened.header.payloadCompressor, opened.payload, { ...options, source }), { source });
    for await (const { entry, body } of members) {
      if (!match(entry)) continue;
      yield* body;
      return;
    }
    throw new PermanentError(`${source}: the member asked for is no longer in the payload (the package changed while it was read?)`, { item: source });
  } finally {
    await opened.close();
  }
}

function relativePath(p: string): string {
  return p.replace(/^(\.\/|\/)+/, '');
}

function checkedPath(entry: CpioEntry, source: string): string {
  const path = relativePath(entry.name).replace(/\/+$/, '');
  if (path === '' || path.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    throw payloadError(source, entry.offset, `unsafe member name ${JSON.stringify(entry.name)}`);
  }
  return path;
}

/** A pull-based web stream over an async iterable; cancelling it stops the iteration. */
function toReadableStream(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it: AsyncIterator<Uint8Array> | Iterator<Uint8Array> =
    Symbol.asyncIterator in chunks ? chunks[Symbol.asyncIterator]() : (chunks as Iterable<Uint8Array>)[Symbol.iterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await it.next();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel() {
      await it.return?.();
    },
  });
}
