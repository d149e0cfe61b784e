/**
 * ALT's package lists: `<arch>/base/pkglist.<component>.xz` (binary packages) and
 * `srclist.<component>.xz` (source packages), as apt-rpm's `genpkglist` makes them. The
 * decompressed file is bare RPM headers one after the other (no lead, no signature):
 * each package's main header, with the signature values merged in the way rpm does it
 * when it reads a package (`headerMergeLegacySigs`: SIGMD5 261, SIGGPG 262, SIGSIZE
 * 257, SHA1HEADER 269 …), plus apt's own tags:
 *
 * | tag     | type   | what |
 * | ------- | ------ | ---- |
 * | 1000000 | string | the package's file name (`CRPMTAG_FILENAME`) |
 * | 1000001 | int32  | the package file's size (`CRPMTAG_FILESIZE`) |
 * | 1000005 | string | the package file's MD5, hex (`CRPMTAG_MD5`) |
 * | 1000009 | string | the package file's BLAKE2b-512, hex (ALT's addition) |
 *
 * So a loader knows a listed package's file's MD5 without opening the package file;
 * the old loader skipped known packages by that MD5, and so do the sluice loaders.
 *
 * Two forms of entry exist. ALT's genpkglist writes a **new** header with a chosen set
 * of tags (name, epoch, version, release, group, arch, packager, sourcerpm, size,
 * vendor, description, summary, buildtime, the i18n table, the dependencies, a stripped
 * file list, optionally the changelog) and the apt tags: no SHA1HEADER and no SIGMD5,
 * so the package's `pkg_hash` cannot be computed from it (the entry's `pkgHash` is '';
 * the loader takes the id from the store, or from the file when it reads it). A list
 * made from whole headers with the signature merged (as rpm merges it when it reads a
 * package: SIGMD5 261, SIGGPG 262, SIGSIZE 257, SHA1HEADER 269 …) does carry the id.
 *
 * `pkglistEntries` reads a list, one header at a time (memory: one header, whatever the
 * list's size), and keeps only what a loader needs: the entries hold strings and
 * numbers, never the header's bytes (which would pin the decoder's chunks in memory).
 * `pkglistHeader` writes one entry in either form, for the fixture script, the tests
 * and the benchmark (genpkglist itself is an ALT tool and cannot be run here): `merged`
 * keeps the whole main header (its immutable region as it was) and appends the merged
 * signature values and the apt tags after it, the way rpm appends tags to a header;
 * `genpkglist` makes a new header of genpkglist's tags (with the whole file list, as
 * its `--bloat` does) and the apt tags.
 *
 * @example
 * ```ts
 * for await (const entry of pkglistEntries(ctx.fs.createReadStream(file), { source: file })) {
 *   console.log(entry.filename, entry.md5, entry.pkgHash);
 * }
 * ```
 */
import { PermanentError } from '../../runtime/errors.ts';
import { decompress, type ByteInput } from '../decoders/index.ts';
import {
  PackageHeader,
  pkgHash,
  readHeaders,
  rpmFormatError,
  SIGTAG,
  TAG,
  TYPE,
  type RpmHeader,
} from '../rpm/index.ts';

/** apt-rpm's tags in pkglist headers. */
export const APT_TAG = {
  FILENAME: 1000000,
  FILESIZE: 1000001,
  MD5: 1000005,
  BLAKE2B: 1000009,
} as const;

/** One package of a list: what a loader needs before (or instead of) opening its file. */
export interface PkglistEntry {
  readonly filename: string;
  /** hex, lower case */
  readonly md5: string;
  /** hex, lower case; '' when the list has none */
  readonly blake2b: string;
  /** the file's size; 0 when the list does not say */
  readonly size: number;
  /** ALT's package id, decimal (see `pkgHash`); '' when the header cannot give it (no SHA1HEADER, no SIGMD5: genpkglist's form) */
  readonly pkgHash: string;
  readonly name: string;
  readonly epoch: number | undefined;
  readonly version: string;
  readonly release: string;
  readonly arch: string;
  readonly isSource: boolean;
  /** where the header starts in the decompressed list, for messages */
  readonly offset: number;
  /** set when the header lacks what a loader needs (no file name, no MD5): the entry cannot be loaded */
  readonly error?: PermanentError;
}

export interface PkglistOptions {
  /** names the list in errors, e.g. `x86_64/base/pkglist.classic.xz` */
  readonly source?: string;
}

/**
 * The entries of a package list, compressed (xz, gzip, zstd, bzip2: found from the
 * bytes) or not. A header that cannot be parsed ends the list with a `PermanentError`
 * naming the list and the offset in the decompressed stream; one that parses but lacks
 * the apt tags is an entry with `error` set, and the list goes on.
 */
export async function* pkglistEntries(input: ByteInput, options: PkglistOptions = {}): AsyncGenerator<PkglistEntry, void, undefined> {
  const source = options.source ?? '(pkglist)';
  const { stream } = await decompress(input, { name: source });
  for await (const header of readHeaders(stream, { source })) yield entryOf(header, source);
}

function entryOf(header: RpmHeader, source: string): PkglistEntry {
  const info = new PackageHeader(header);
  const filename = header.string(APT_TAG.FILENAME) ?? '';
  const md5 = (header.string(APT_TAG.MD5) ?? '').toLowerCase();
  const missing = [!filename && 'file name (tag 1000000)', !/^[0-9a-f]{32}$/.test(md5) && 'MD5 (tag 1000005)'].filter(Boolean);
  let error: PermanentError | undefined = missing.length
    ? rpmFormatError(source, header.offset, `package list entry ${info.name}-${info.version}-${info.release} has no valid ${missing.join(' and no valid ')}`, 'the list was not made by genpkglist, or is corrupt; regenerate it')
    : undefined;
  let hash = '';
  if (header.has(TAG.SHA1HEADER) || header.has(TAG.SIGMD5)) {
    try {
      hash = pkgHash(info).toString();
    } catch (err) {
      error ??= err instanceof PermanentError ? err : rpmFormatError(source, header.offset, String(err));
    }
  }
  const entry = fields(info, header, filename, md5, hash);
  return error ? { ...entry, error } : entry;
}

function fields(info: PackageHeader, header: RpmHeader, filename: string, md5: string, hash: string): PkglistEntry {
  return {
    filename,
    md5,
    blake2b: (header.string(APT_TAG.BLAKE2B) ?? '').toLowerCase(),
    size: header.number(APT_TAG.FILESIZE) ?? 0,
    pkgHash: hash,
    name: info.name,
    epoch: info.epoch,
    version: info.version,
    release: info.release,
    arch: info.arch,
    isSource: info.isSource,
    offset: header.offset,
  };
}

/** What apt adds to a package's header in a list. */
export interface AptFields {
  readonly filename: string;
  readonly size: number;
  readonly md5: string;
  readonly blake2b?: string;
}

/**
 * Signature tags and the main-header tags rpm merges them into (rpm's
 * `headerMergeLegacySigs`); tags 256–999 of the signature keep their number.
 */
const LEGACY_SIG_TAGS: ReadonlyMap<number, number> = new Map([
  [SIGTAG.SIZE, TAG.SIGSIZE],
  [SIGTAG.PGP, TAG.SIGPGP],
  [SIGTAG.MD5, TAG.SIGMD5],
  [SIGTAG.GPG, TAG.SIGGPG],
  [1006, 263], // PGP5 → SIGPGP5
  [SIGTAG.PAYLOADSIZE, TAG.ARCHIVESIZE],
]);

/** Signature tags never merged: the signature's region tag, and the space reserved for signing. */
const UNMERGED = new Set<number>([62, SIGTAG.RESERVEDSPACE]);

const ALIGN: Readonly<Record<number, number>> = { [TYPE.INT16]: 2, [TYPE.INT32]: 4, [TYPE.INT64]: 8 };

/** The tags genpkglist copies into a list entry (apt-rpm's genpkglist.cc), in its order; then the file list. */
export const GENPKGLIST_TAGS: readonly number[] = [
  TAG.NAME, TAG.EPOCH, TAG.VERSION, TAG.RELEASE, TAG.GROUP, TAG.ARCH, TAG.PACKAGER, TAG.SOURCERPM, TAG.SIZE, TAG.VENDOR,
  TAG.DESCRIPTION, TAG.SUMMARY, TAG.BUILDTIME, TAG.HEADERI18NTABLE,
  TAG.REQUIREFLAGS, TAG.REQUIRENAME, TAG.REQUIREVERSION,
  TAG.CONFLICTFLAGS, TAG.CONFLICTNAME, TAG.CONFLICTVERSION,
  TAG.PROVIDENAME, TAG.PROVIDEFLAGS, TAG.PROVIDEVERSION,
  TAG.OBSOLETENAME, TAG.OBSOLETEFLAGS, TAG.OBSOLETEVERSION,
  TAG.BASENAMES, TAG.DIRNAMES, TAG.DIRINDEXES,
];

export type PkglistForm = 'merged' | 'genpkglist';

/**
 * One pkglist entry for a package, as bytes (concatenate them for a list, then
 * compress it): `merged` (default), its main header with the signature merged in and
 * the apt tags appended; `genpkglist`, a new header of `GENPKGLIST_TAGS` and the apt tags.
 */
export function pkglistHeader(pkg: { readonly header: RpmHeader; readonly signature: RpmHeader }, apt: AptFields, form: PkglistForm = 'merged'): Buffer {
  const main = pkg.header;
  const il = form === 'merged' ? main.entries.length : 0;
  const index: Buffer[] = [main.bytes.subarray(16, 16 + il * 16)];
  const data: Buffer[] = [form === 'merged' ? main.bytes.subarray(16 + il * 16) : Buffer.alloc(0)];
  let dataSize = data[0]!.length;
  let count = il;
  const present = new Set(form === 'merged' ? main.tags() : []);
  const add = (tag: number, type: number, n: number, bytes: Buffer) => {
    const align = ALIGN[type] ?? 1;
    const pad = (align - (dataSize % align)) % align;
    if (pad) {
      data.push(Buffer.alloc(pad));
      dataSize += pad;
    }
    const entry = Buffer.alloc(16);
    entry.writeUInt32BE(tag, 0);
    entry.writeUInt32BE(type, 4);
    entry.writeUInt32BE(dataSize, 8);
    entry.writeUInt32BE(n, 12);
    index.push(entry);
    data.push(bytes);
    dataSize += bytes.length;
    count++;
    present.add(tag);
  };
  if (form === 'genpkglist') {
    for (const tag of GENPKGLIST_TAGS) {
      const e = main.entry(tag);
      if (e) add(tag, e.type, e.count, Buffer.from(main.raw(tag)!));
    }
  }
  for (const e of form === 'merged' ? pkg.signature.entries : []) {
    if (UNMERGED.has(e.tag)) continue;
    const target = LEGACY_SIG_TAGS.get(e.tag) ?? (e.tag >= 256 && e.tag < 1000 ? e.tag : undefined);
    if (target === undefined || present.has(target)) continue;
    add(target, e.type, e.count, Buffer.from(pkg.signature.raw(e.tag)!));
  }
  const string = (text: string) => Buffer.from(`${text}\0`, 'utf8');
  add(APT_TAG.FILENAME, TYPE.STRING, 1, string(apt.filename));
  const size = Buffer.alloc(4);
  size.writeUInt32BE(Math.min(apt.size, 0xffffffff), 0);
  add(APT_TAG.FILESIZE, TYPE.INT32, 1, size);
  add(APT_TAG.MD5, TYPE.STRING, 1, string(apt.md5));
  if (apt.blake2b) add(APT_TAG.BLAKE2B, TYPE.STRING, 1, string(apt.blake2b));
  const preamble = Buffer.alloc(16);
  main.bytes.copy(preamble, 0, 0, 8); // magic and reserved bytes
  preamble.writeUInt32BE(count, 8);
  preamble.writeUInt32BE(dataSize, 12);
  return Buffer.concat([preamble, ...index, ...data]);
}
