/**
 * The RPM header structure: the unit both `.rpm` files (signature header, main
 * header) and ALT's `pkglist.*.xz` / `srclist.*.xz` (concatenated bare headers) are
 * made of.
 *
 * Ours, because nothing on npm reads RPM files: what is there builds packages
 * (`rpm-builder`, `rpmbuild`, electron-forge's `maker-rpm`: wrappers around the
 * `rpmbuild` tool) or, like `@snyk/rpm-parser`, lists the packages of an installed
 * rpmdb, without the lead, the signature header, the payload or the file's digests.
 * Shelling out to `rpm` instead would make every pipeline host need it and cost a
 * process per package. The format is small and stable (rpm's `lib/header.c`, unchanged
 * in essence since rpm 3), and a loader of whole repositories needs it fast, streaming
 * and safe against hostile input.
 *
 * Layout: magic `8e ad e8 01`, 4 reserved bytes, index entry count `il` (u32 BE), data
 * size `dl` (u32 BE), `il` × 16-byte entries (tag, type, offset, count, all u32 BE),
 * then `dl` bytes of data. Types: 0 null, 1 char, 2 int8, 3 int16, 4 int32, 5 int64,
 * 6 string, 7 bin, 8 string array, 9 i18n string.
 *
 * Against hostile input (every violation is a `PermanentError` naming the input and
 * the byte offset; never a crash, a hang or an allocation beyond what the input holds):
 *  - `il` ≤ 65535 and `dl` ≤ 256 MiB − 1, rpm's own `HEADER_TAGS_MAX`/`HEADER_DATA_MAX`;
 *  - every entry: known type, offset inside the data, `count × size` inside the data,
 *    strings NUL-terminated inside the data, a string array's `count` no more than
 *    the bytes left;
 *  - entries are not required to be in order or disjoint (old rpm and apt's genpkglist
 *    append entries out of order), but the total scanned for NUL terminators is bounded
 *    (4 × `dl` + 1 MiB), so overlapping entries cannot make validation quadratic.
 * Validation happens once, when the header is parsed; values are decoded on demand.
 *
 * Text: rpm stores bytes and never says which encoding. Current packages are UTF-8
 * (rpm ≥ 4.13 refuses to build anything else by default); old ones, ALT's included,
 * may be latin-1 or KOI8-R. We decode each string on its own: valid UTF-8 → UTF-8,
 * otherwise latin-1 (every byte maps to one code point, so nothing is lost and the
 * bytes can be recovered with `Buffer.from(s, 'latin1')`). ALT's old loader decoded
 * everything as latin-1, which turns valid UTF-8 into mojibake; we deliberately do not.
 * `rawStrings()` gives the bytes for callers that know better.
 *
 * @example
 * ```ts
 * import { parseHeader, readHeaders, TAG } from './header.ts';
 *
 * for await (const header of readHeaders(xzDecoded, { source: 'pkglist.classic.xz' })) {
 *   console.log(header.string(TAG.NAME), header.number(TAG.BUILDTIME));
 * }
 * ```
 */
import { isUtf8 } from 'node:buffer';
import { PermanentError } from '../../runtime/errors.ts';
import { ByteReader, type ByteSource } from './byte-reader.ts';

export const HEADER_MAGIC = 0x8eade801;
/** rpm's HEADER_TAGS_MAX */
export const MAX_INDEX_ENTRIES = 0xffff;
/** rpm's HEADER_DATA_MAX: 256 MiB − 1 */
export const MAX_DATA_SIZE = 0x0fffffff;
/** magic, reserved, il, dl */
export const PREAMBLE_SIZE = 16;
export const ENTRY_SIZE = 16;

/** Tag value types, as rpm numbers them. */
export const TYPE = {
  NULL: 0,
  CHAR: 1,
  INT8: 2,
  INT16: 3,
  INT32: 4,
  INT64: 5,
  STRING: 6,
  BIN: 7,
  STRING_ARRAY: 8,
  I18NSTRING: 9,
} as const;
export type TagType = (typeof TYPE)[keyof typeof TYPE];
const TYPE_NAMES = ['null', 'char', 'int8', 'int16', 'int32', 'int64', 'string', 'bin', 'string array', 'i18n string'];
const FIXED_SIZE = [0, 1, 1, 2, 4, 8, 0, 1, 0, 0];

/** The tags the readers use (rpm's `rpmtag.h`). Signature-header tags are in `SIGTAG`. */
export const TAG = {
  HEADERSIGNATURES: 62,
  HEADERIMMUTABLE: 63,
  HEADERI18NTABLE: 100,
  SIGSIZE: 257,
  SIGPGP: 259,
  SIGMD5: 261,
  SIGGPG: 262,
  DSAHEADER: 267,
  RSAHEADER: 268,
  SHA1HEADER: 269,
  SHA256HEADER: 273,
  NAME: 1000,
  VERSION: 1001,
  RELEASE: 1002,
  EPOCH: 1003,
  SUMMARY: 1004,
  DESCRIPTION: 1005,
  BUILDTIME: 1006,
  BUILDHOST: 1007,
  SIZE: 1009,
  DISTRIBUTION: 1010,
  VENDOR: 1011,
  LICENSE: 1014,
  PACKAGER: 1015,
  GROUP: 1016,
  URL: 1020,
  OS: 1021,
  ARCH: 1022,
  OLDFILENAMES: 1027,
  FILESIZES: 1028,
  FILEMODES: 1030,
  FILERDEVS: 1033,
  FILEMTIMES: 1034,
  FILEDIGESTS: 1035,
  FILELINKTOS: 1036,
  FILEFLAGS: 1037,
  FILEUSERNAME: 1039,
  FILEGROUPNAME: 1040,
  SOURCERPM: 1044,
  ARCHIVESIZE: 1046,
  PROVIDENAME: 1047,
  REQUIREFLAGS: 1048,
  REQUIRENAME: 1049,
  REQUIREVERSION: 1050,
  CONFLICTFLAGS: 1053,
  CONFLICTNAME: 1054,
  CONFLICTVERSION: 1055,
  CHANGELOGTIME: 1080,
  CHANGELOGNAME: 1081,
  CHANGELOGTEXT: 1082,
  OBSOLETENAME: 1090,
  FILEDEVICES: 1095,
  FILEINODES: 1096,
  FILELANGS: 1097,
  SOURCEPACKAGE: 1106,
  PROVIDEFLAGS: 1112,
  PROVIDEVERSION: 1113,
  OBSOLETEFLAGS: 1114,
  OBSOLETEVERSION: 1115,
  DIRINDEXES: 1116,
  BASENAMES: 1117,
  DIRNAMES: 1118,
  PAYLOADFORMAT: 1124,
  PAYLOADCOMPRESSOR: 1125,
  PAYLOADFLAGS: 1126,
  DISTTAG: 1155,
  LONGFILESIZES: 5008,
  LONGSIZE: 5009,
  FILEDIGESTALGO: 5011,
  RECOMMENDNAME: 5046,
  RECOMMENDVERSION: 5047,
  RECOMMENDFLAGS: 5048,
  SUGGESTNAME: 5049,
  SUGGESTVERSION: 5050,
  SUGGESTFLAGS: 5051,
  SUPPLEMENTNAME: 5052,
  SUPPLEMENTVERSION: 5053,
  SUPPLEMENTFLAGS: 5054,
  ENHANCENAME: 5055,
  ENHANCEVERSION: 5056,
  ENHANCEFLAGS: 5057,
  PAYLOADDIGEST: 5092,
  PAYLOADDIGESTALGO: 5093,
  /** APT tags in ALT's pkglist headers: the package's file name, its MD5 and BLAKE2b (hex) */
  APT_FILENAME: 1000000,
  APT_MD5: 1000005,
  APT_BLAKE2B: 1000009,
} as const;

/** Tags of the signature header (rpm's `rpmSigTag`); 1004/1005 are SIGMD5/SIGGPG (261/262) of the main header. */
export const SIGTAG = {
  SIZE: 1000,
  PGP: 1002,
  MD5: 1004,
  GPG: 1005,
  PAYLOADSIZE: 1007,
  RESERVEDSPACE: 1008,
  DSA: 267,
  RSA: 268,
  SHA1: 269,
  LONGSIZE: 270,
  LONGARCHIVESIZE: 271,
  SHA256: 273,
} as const;

/** One index entry, checked against the data. */
export interface HeaderEntry {
  readonly tag: number;
  readonly type: TagType;
  /** offset of the value in the data */
  readonly offset: number;
  readonly count: number;
  /** bytes the value occupies in the data */
  readonly length: number;
}

/** A decoded value: numbers for char/int8/int16/int32, bigints for int64, strings, bytes for bin. */
export type TagValue = null | number[] | bigint[] | string | string[] | Buffer;

export interface HeaderOptions {
  /** names the input in errors: a path, a URL, `pkglist.classic.xz` … */
  source?: string;
  /** absolute byte offset of the header within that input, for errors (default 0) */
  offset?: number;
  /** at most this many index entries (default and ceiling: 65535) */
  maxEntries?: number;
  /** at most this many data bytes (default and ceiling: 256 MiB − 1) */
  maxDataSize?: number;
}

const DEFAULT_SOURCE = '(stream)';

/** A `PermanentError` about bad RPM data: "<source>: <what> at byte <offset>". */
export function rpmFormatError(source: string, offset: number, what: string, hint?: string): PermanentError {
  return new PermanentError(`${source}: ${what} at byte ${offset}`, {
    item: source,
    hint: hint ?? 'the file is not a valid RPM (truncated or corrupt?); fetch it again or skip it',
  });
}

/** Text from rpm: valid UTF-8 as UTF-8, anything else as latin-1 (see the module comment). */
export function decodeRpmText(bytes: Buffer): string {
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes.toString('latin1');
}

/** The index entry count and data size of a header, from its first 16 bytes, checked. */
export function headerPreamble(
  preamble: Uint8Array,
  options: HeaderOptions = {},
): { indexCount: number; dataSize: number; byteLength: number } {
  const source = options.source ?? DEFAULT_SOURCE;
  const at = options.offset ?? 0;
  if (preamble.length < PREAMBLE_SIZE) {
    throw rpmFormatError(source, at + preamble.length, `truncated RPM header: ${preamble.length} of ${PREAMBLE_SIZE} preamble bytes`);
  }
  const view = new DataView(preamble.buffer, preamble.byteOffset, PREAMBLE_SIZE);
  const magic = view.getUint32(0);
  if (magic !== HEADER_MAGIC) {
    throw rpmFormatError(source, at, `bad RPM header magic ${hex32(magic)} (expected 8eade801)`);
  }
  const indexCount = view.getUint32(8);
  const dataSize = view.getUint32(12);
  const maxEntries = Math.min(options.maxEntries ?? MAX_INDEX_ENTRIES, MAX_INDEX_ENTRIES);
  const maxData = Math.min(options.maxDataSize ?? MAX_DATA_SIZE, MAX_DATA_SIZE);
  if (indexCount > maxEntries) {
    throw rpmFormatError(source, at + 8, `RPM header index count ${indexCount} exceeds the limit of ${maxEntries}`);
  }
  if (dataSize > maxData) {
    throw rpmFormatError(source, at + 12, `RPM header data size ${dataSize} exceeds the limit of ${maxData} bytes`);
  }
  return { indexCount, dataSize, byteLength: PREAMBLE_SIZE + indexCount * ENTRY_SIZE + dataSize };
}

/**
 * Parse the header that starts at `bytes[0]`. Bytes after the header are ignored (its
 * `byteLength` says where it ends). Throws a `PermanentError` for anything malformed.
 */
export function parseHeader(bytes: Uint8Array, options: HeaderOptions = {}): RpmHeader {
  const source = options.source ?? DEFAULT_SOURCE;
  const at = options.offset ?? 0;
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { indexCount, dataSize, byteLength } = headerPreamble(buf, options);
  if (buf.length < byteLength) {
    throw rpmFormatError(
      source,
      at + buf.length,
      `truncated RPM header: it declares ${indexCount} entries and ${dataSize} data bytes (${byteLength} bytes in all) but only ${buf.length} are there`,
    );
  }
  const dataStart = PREAMBLE_SIZE + indexCount * ENTRY_SIZE;
  const data = buf.subarray(dataStart, byteLength);
  const entries: HeaderEntry[] = new Array(indexCount);
  let scanBudget = 4 * dataSize + (1 << 20);

  for (let i = 0; i < indexCount; i++) {
    const p = PREAMBLE_SIZE + i * ENTRY_SIZE;
    const entryAt = at + p;
    const tag = buf.readUInt32BE(p);
    const type = buf.readUInt32BE(p + 4);
    const offset = buf.readUInt32BE(p + 8);
    const count = buf.readUInt32BE(p + 12);
    const what = `entry ${i} (tag ${tag}`;
    if (type > 9) throw rpmFormatError(source, entryAt + 4, `${what}) has unknown type ${type}`);
    const typeName = TYPE_NAMES[type];
    if (offset > dataSize) {
      throw rpmFormatError(source, entryAt + 8, `${what}, ${typeName}) points to data offset ${offset}, past the end of the ${dataSize} data bytes`);
    }
    const left = dataSize - offset;
    let length: number;
    if (type === TYPE.STRING || type === TYPE.STRING_ARRAY || type === TYPE.I18NSTRING) {
      if (type === TYPE.STRING && count !== 1) {
        throw rpmFormatError(source, entryAt + 12, `${what}, string) has count ${count}; a string has count 1`);
      }
      if (count > left) {
        throw rpmFormatError(source, entryAt + 12, `${what}, ${typeName}) claims ${count} strings but only ${left} data bytes follow its offset ${offset}`);
      }
      let pos = offset;
      for (let k = 0; k < count; k++) {
        const nul = data.indexOf(0, pos);
        if (nul < 0) {
          throw rpmFormatError(
            source,
            at + dataStart + pos,
            `${what}, ${typeName}) string ${k} has no NUL terminator before the end of the header data`,
          );
        }
        scanBudget -= nul - pos + 1;
        if (scanBudget < 0) {
          throw rpmFormatError(source, entryAt, `${what}) overlapping string entries: the header's strings add up to more than 4 times its data`);
        }
        pos = nul + 1;
      }
      length = pos - offset;
    } else {
      length = count * FIXED_SIZE[type]!;
      if (length > left) {
        throw rpmFormatError(
          source,
          entryAt + 12,
          `${what}, ${typeName}) count ${count} needs ${length} bytes at data offset ${offset}, past the end of the ${dataSize} data bytes`,
        );
      }
    }
    entries[i] = { tag, type: type as TagType, offset, count, length };
  }
  return new RpmHeader(buf.subarray(0, byteLength), data, entries, source, at);
}

/**
 * Read one header from `reader` (which must be at its magic). Returns `undefined` at a
 * clean end of input (no byte left); a partial header is a `PermanentError`.
 */
export async function readHeaderFrom(reader: ByteReader, options: HeaderOptions = {}): Promise<RpmHeader | undefined> {
  const source = options.source ?? DEFAULT_SOURCE;
  const at = reader.position;
  const preamble = await reader.peek(PREAMBLE_SIZE);
  if (preamble.length === 0) return undefined;
  const opts = { ...options, source, offset: at };
  const { byteLength } = headerPreamble(preamble, opts);
  const bytes = await reader.read(byteLength);
  if (bytes.length < byteLength) {
    throw rpmFormatError(source, at + bytes.length, `truncated RPM header: ${byteLength} bytes declared, input ends after ${bytes.length}`);
  }
  return parseHeader(bytes, opts);
}

/**
 * Every bare header of a stream of concatenated headers (ALT's `pkglist.*` and
 * `srclist.*` once decompressed), in order. Memory: one header at a time.
 */
export async function* readHeaders(stream: ByteSource, options: HeaderOptions = {}): AsyncGenerator<RpmHeader, void, undefined> {
  const reader = new ByteReader(stream);
  try {
    for (;;) {
      const header = await readHeaderFrom(reader, options);
      if (!header) return;
      yield header;
    }
  } finally {
    await reader.close();
  }
}

/** A parsed header: every entry checked, values decoded when asked for. */
export class RpmHeader {
  /** the header's own bytes, magic to the end of the data (what SHA1HEADER is computed over) */
  readonly bytes: Buffer;
  /** names the input in errors */
  readonly source: string;
  /** absolute offset of the header in its input */
  readonly offset: number;
  /** index entries in their stored order */
  readonly entries: readonly HeaderEntry[];
  private readonly data: Buffer;
  private readonly byTag = new Map<number, HeaderEntry>();

  constructor(bytes: Buffer, data: Buffer, entries: HeaderEntry[], source: string, offset: number) {
    this.bytes = bytes;
    this.data = data;
    this.entries = entries;
    this.source = source;
    this.offset = offset;
    // the first entry of a tag wins, like rpm's headerGet on a sorted index
    for (const entry of entries) if (!this.byTag.has(entry.tag)) this.byTag.set(entry.tag, entry);
  }

  get byteLength(): number {
    return this.bytes.length;
  }

  /** Absolute offset of the data area in the input (for errors about a value). */
  get dataOffset(): number {
    return this.offset + PREAMBLE_SIZE + this.entries.length * ENTRY_SIZE;
  }

  /** Absolute offset of a tag's index entry in the input (for errors about a tag); the header's offset when absent. */
  entryOffset(tag: number): number {
    const e = this.byTag.get(tag);
    return e ? this.offset + PREAMBLE_SIZE + this.entries.indexOf(e) * ENTRY_SIZE : this.offset;
  }

  /** Every tag present, in stored order (a repeated tag once). */
  tags(): number[] {
    return [...this.byTag.keys()];
  }

  has(tag: number): boolean {
    return this.byTag.has(tag);
  }

  entry(tag: number): HeaderEntry | undefined {
    return this.byTag.get(tag);
  }

  type(tag: number): TagType | undefined {
    return this.byTag.get(tag)?.type;
  }

  /** The value's bytes in the data, undecoded. */
  raw(tag: number): Buffer | undefined {
    const e = this.byTag.get(tag);
    return e && this.data.subarray(e.offset, e.offset + e.length);
  }

  /** The value decoded by its type; `undefined` when the tag is absent. */
  get(tag: number): TagValue | undefined {
    const e = this.byTag.get(tag);
    if (!e) return undefined;
    switch (e.type) {
      case TYPE.NULL:
        return null;
      case TYPE.INT64:
        return this.bigints(tag);
      case TYPE.STRING:
        return this.string(tag);
      case TYPE.BIN:
        return this.bin(tag);
      case TYPE.STRING_ARRAY:
      case TYPE.I18NSTRING:
        return this.strings(tag);
      default:
        return this.numbers(tag);
    }
  }

  /**
   * The strings of a string, string-array or i18n-string tag (for i18n, one per locale
   * of HEADERI18NTABLE, "C" first); `[]` when absent or of another type.
   */
  strings(tag: number): string[] {
    return this.rawStrings(tag).map(decodeRpmText);
  }

  /** The undecoded bytes of each string (no NUL). */
  rawStrings(tag: number): Buffer[] {
    const e = this.byTag.get(tag);
    if (!e || (e.type !== TYPE.STRING && e.type !== TYPE.STRING_ARRAY && e.type !== TYPE.I18NSTRING)) return [];
    const out: Buffer[] = new Array(e.count);
    let pos = e.offset;
    for (let k = 0; k < e.count; k++) {
      const nul = this.data.indexOf(0, pos); // checked at parse time
      out[k] = this.data.subarray(pos, nul);
      pos = nul + 1;
    }
    return out;
  }

  /** The first string of a string-like tag (the "C" locale of an i18n string). */
  string(tag: number): string | undefined {
    const e = this.byTag.get(tag);
    if (!e || (e.type !== TYPE.STRING && e.type !== TYPE.STRING_ARRAY && e.type !== TYPE.I18NSTRING) || e.count === 0) return undefined;
    const nul = this.data.indexOf(0, e.offset);
    return decodeRpmText(this.data.subarray(e.offset, nul));
  }

  /**
   * The numbers of a char/int8/int16/int32/int64 tag, unsigned (as rpm treats them);
   * int64 values above 2^53 lose precision (use `bigints`). `[]` when absent or not a number type.
   */
  numbers(tag: number): number[] {
    const e = this.byTag.get(tag);
    if (!e) return [];
    const d = this.data;
    const out: number[] = [];
    switch (e.type) {
      case TYPE.CHAR:
      case TYPE.INT8:
        for (let k = 0; k < e.count; k++) out.push(d[e.offset + k]!);
        return out;
      case TYPE.INT16:
        for (let k = 0; k < e.count; k++) out.push(d.readUInt16BE(e.offset + 2 * k));
        return out;
      case TYPE.INT32:
        for (let k = 0; k < e.count; k++) out.push(d.readUInt32BE(e.offset + 4 * k));
        return out;
      case TYPE.INT64:
        for (let k = 0; k < e.count; k++) out.push(Number(d.readBigUInt64BE(e.offset + 8 * k)));
        return out;
      default:
        return out;
    }
  }

  /** The first number of a number tag. */
  number(tag: number): number | undefined {
    const e = this.byTag.get(tag);
    if (!e || e.count === 0) return undefined;
    const d = this.data;
    switch (e.type) {
      case TYPE.CHAR:
      case TYPE.INT8:
        return d[e.offset];
      case TYPE.INT16:
        return d.readUInt16BE(e.offset);
      case TYPE.INT32:
        return d.readUInt32BE(e.offset);
      case TYPE.INT64:
        return Number(d.readBigUInt64BE(e.offset));
      default:
        return undefined;
    }
  }

  /** The numbers of any number tag as unsigned bigints. */
  bigints(tag: number): bigint[] {
    const e = this.byTag.get(tag);
    if (!e) return [];
    if (e.type !== TYPE.INT64) return this.numbers(tag).map(BigInt);
    const out: bigint[] = [];
    for (let k = 0; k < e.count; k++) out.push(this.data.readBigUInt64BE(e.offset + 8 * k));
    return out;
  }

  /** The bytes of a bin tag (a view into the header, not a copy). */
  bin(tag: number): Buffer | undefined {
    const e = this.byTag.get(tag);
    if (!e || e.type !== TYPE.BIN) return undefined;
    return this.data.subarray(e.offset, e.offset + e.length);
  }
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}
