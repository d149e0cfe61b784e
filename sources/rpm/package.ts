/**
 * Read an RPM package (`.rpm`, binary or source) from a stream, in one pass: the
 * 96-byte lead (magic `ed ab ee db`), the signature header (padded to 8 bytes), the
 * main header, and the payload, while the file's md5, sha1, sha256 and blake2b-512 are
 * computed over the same bytes as they go by. Also `pkgHash`, the package id of ALT's
 * database.
 *
 * Ours, because nothing on npm reads `.rpm` files (the RPM packages there build them,
 * or list an installed rpmdb: see `header.ts`), and shelling out to `rpm`/`rpm2cpio`
 * costs a process per package and a system tool on every pipeline host. A repository
 * loader reads hundreds of thousands of packages, many of them old (ALT's go back to
 * rpm 4.0.4, with latin-1 texts): it needs a reader that streams, hashes as it reads,
 * checks every offset and never trusts a length. See `header.ts` for the header format,
 * its limits and the text-encoding rule, and `payload.ts` for the files inside.
 *
 * Errors: anything malformed (bad magic, truncated input, an offset past the data, a
 * file list whose arrays disagree …) is a `PermanentError` that names the input and the
 * byte offset; the stream's own errors pass through.
 *
 * @example
 * ```ts
 * import { readPackage, pkgHash } from './package.ts';
 *
 * const pkg = await readPackage(entry.content(), { source: entry.absolutePath });
 * console.log(pkg.name, pkg.version, pkg.digests.sha256, pkgHash(pkg));
 * for (const file of pkg.files) console.log(file.path, file.size, file.digest);
 * ```
 */
import { createHash, type Hash } from 'node:crypto';
import { fileDigester } from './digests.ts';
import { PermanentError } from '../../runtime/errors.ts';
import type { EntryType } from '../entry.ts';
import { ByteReader, type ByteSource } from './byte-reader.ts';
import { decodeRpmText, headerPreamble, parseHeader, PREAMBLE_SIZE, rpmFormatError, RpmHeader, SIGTAG, TAG } from './header.ts';
import { murmurHash3_32 } from './murmur3.ts';

export const LEAD_MAGIC = 0xedabeedb;
export const LEAD_SIZE = 96;
/** the only signature type rpm ≥ 3 writes: a header-structured signature */
const RPMSIGTYPE_HEADERSIG = 5;

/** The lead: obsolete since rpm 3 but still the first 96 bytes of every package. */
export interface RpmLead {
  readonly major: number;
  readonly minor: number;
  /** 0 binary, 1 source */
  readonly type: number;
  readonly archnum: number;
  /** the package's name-version-release as the builder wrote it (truncated to 65 bytes) */
  readonly name: string;
  readonly osnum: number;
  readonly signatureType: number;
}

/** `<`, `<=`, `=`, `>=`, `>`, or `''` for an unversioned dependency. */
export type DependencyOp = '' | '<' | '<=' | '=' | '>=' | '>';

/** The `RPMSENSE_*` bits of a dependency's flags (rpm 4.18's `rpmds.h`). */
export const RPMSENSE = {
  LESS: 1 << 1,
  GREATER: 1 << 2,
  EQUAL: 1 << 3,
  POSTTRANS: 1 << 5,
  PREREQ: 1 << 6,
  PRETRANS: 1 << 7,
  INTERP: 1 << 8,
  SCRIPT_PRE: 1 << 9,
  SCRIPT_POST: 1 << 10,
  SCRIPT_PREUN: 1 << 11,
  SCRIPT_POSTUN: 1 << 12,
  SCRIPT_VERIFY: 1 << 13,
  FIND_REQUIRES: 1 << 14,
  FIND_PROVIDES: 1 << 15,
  MISSINGOK: 1 << 19,
  RPMLIB: 1 << 24,
  CONFIG: 1 << 28,
} as const;

/**
 * A dependency qualifier, in the order and with the names of rpm's `deptype` query
 * format: `Requires(pre)` is `pre`, `Requires(post)` is `post`, an interpreter of a
 * scriptlet `interp`, automatically found ones `auto` … No qualifier is rpm's "manual".
 */
export type DependencyType =
  | 'pre' | 'post' | 'preun' | 'postun' | 'verify' | 'interp' | 'rpmlib' | 'auto'
  | 'prereq' | 'pretrans' | 'posttrans' | 'config' | 'missingok';

const DEPENDENCY_TYPES: ReadonlyArray<readonly [number, DependencyType]> = [
  [RPMSENSE.SCRIPT_PRE, 'pre'],
  [RPMSENSE.SCRIPT_POST, 'post'],
  [RPMSENSE.SCRIPT_PREUN, 'preun'],
  [RPMSENSE.SCRIPT_POSTUN, 'postun'],
  [RPMSENSE.SCRIPT_VERIFY, 'verify'],
  [RPMSENSE.INTERP, 'interp'],
  [RPMSENSE.RPMLIB, 'rpmlib'],
  [RPMSENSE.FIND_REQUIRES | RPMSENSE.FIND_PROVIDES, 'auto'],
  [RPMSENSE.PREREQ, 'prereq'],
  [RPMSENSE.PRETRANS, 'pretrans'],
  [RPMSENSE.POSTTRANS, 'posttrans'],
  [RPMSENSE.CONFIG, 'config'],
  [RPMSENSE.MISSINGOK, 'missingok'],
];

export interface Dependency {
  readonly name: string;
  /** `[epoch:]version[-release]`, `''` when unversioned */
  readonly version: string;
  /** the raw `RPMSENSE_*` flags, as stored (ALT's Depends table keeps them) */
  readonly flags: number;
  readonly op: DependencyOp;
  /** qualifiers decoded from the flags (see `DependencyType`); empty for a plain ("manual") dependency */
  readonly types: readonly DependencyType[];
}

export type DependencyKind = 'requires' | 'provides' | 'conflicts' | 'obsoletes' | 'recommends' | 'suggests' | 'supplements' | 'enhances';

const DEPENDENCY_TAGS: Record<DependencyKind, readonly [name: number, flags: number, version: number]> = {
  requires: [TAG.REQUIRENAME, TAG.REQUIREFLAGS, TAG.REQUIREVERSION],
  provides: [TAG.PROVIDENAME, TAG.PROVIDEFLAGS, TAG.PROVIDEVERSION],
  conflicts: [TAG.CONFLICTNAME, TAG.CONFLICTFLAGS, TAG.CONFLICTVERSION],
  obsoletes: [TAG.OBSOLETENAME, TAG.OBSOLETEFLAGS, TAG.OBSOLETEVERSION],
  recommends: [TAG.RECOMMENDNAME, TAG.RECOMMENDFLAGS, TAG.RECOMMENDVERSION],
  suggests: [TAG.SUGGESTNAME, TAG.SUGGESTFLAGS, TAG.SUGGESTVERSION],
  supplements: [TAG.SUPPLEMENTNAME, TAG.SUPPLEMENTFLAGS, TAG.SUPPLEMENTVERSION],
  enhances: [TAG.ENHANCENAME, TAG.ENHANCEFLAGS, TAG.ENHANCEVERSION],
};

/** The `RPMFILE_*` bits of a file's flags. */
export const RPMFILE = {
  CONFIG: 1 << 0,
  DOC: 1 << 1,
  ICON: 1 << 2,
  MISSINGOK: 1 << 3,
  NOREPLACE: 1 << 4,
  SPECFILE: 1 << 5,
  GHOST: 1 << 6,
  LICENSE: 1 << 7,
  README: 1 << 8,
  PUBKEY: 1 << 11,
  ARTIFACT: 1 << 12,
} as const;

/** File attributes, in the order of rpm's `fflags` query format (`d c s m n g l r a`). */
export type FileFlag = 'doc' | 'config' | 'specfile' | 'missingok' | 'noreplace' | 'ghost' | 'license' | 'readme' | 'artifact';

const FILE_FLAGS: ReadonlyArray<readonly [number, FileFlag]> = [
  [RPMFILE.DOC, 'doc'],
  [RPMFILE.CONFIG, 'config'],
  [RPMFILE.SPECFILE, 'specfile'],
  [RPMFILE.MISSINGOK, 'missingok'],
  [RPMFILE.NOREPLACE, 'noreplace'],
  [RPMFILE.GHOST, 'ghost'],
  [RPMFILE.LICENSE, 'license'],
  [RPMFILE.README, 'readme'],
  [RPMFILE.ARTIFACT, 'artifact'],
];

/** Names of FILEDIGESTALGO values (OpenPGP hash algorithm ids); absent means md5. */
export const DIGEST_ALGORITHMS: Readonly<Record<number, string>> = {
  1: 'md5',
  2: 'sha1',
  3: 'ripemd160',
  5: 'md2',
  6: 'tiger192',
  7: 'haval-5-160',
  8: 'sha256',
  9: 'sha384',
  10: 'sha512',
  11: 'sha224',
};

/** One file of the package, from the header's file list. */
export interface RpmFile {
  /** absolute path as installed, e.g. `/usr/bin/foo` */
  readonly path: string;
  readonly size: number;
  /** the full `st_mode` (type and permission bits) */
  readonly mode: number;
  readonly type: EntryType;
  /** hex digest of the content (see `fileDigestAlgorithm`); `''` for directories, links, ghosts */
  readonly digest: string;
  /** the symlink's target, `''` otherwise */
  readonly linkTarget: string;
  readonly flags: number;
  readonly flagNames: readonly FileFlag[];
  readonly user: string;
  readonly group: string;
  /** seconds since the epoch */
  readonly mtime: number;
  readonly inode: number;
  readonly device: number;
  readonly rdev: number;
  readonly lang: string;
}

export interface ChangelogEntry {
  /** seconds since the epoch (rpm keeps the date at noon UTC) */
  readonly time: number;
  /** `Name <email> evr`, as written in the spec */
  readonly name: string;
  readonly text: string;
}

/** The file's own digests, hex. */
export interface PackageDigests {
  readonly md5: string;
  readonly sha1: string;
  readonly sha256: string;
  readonly blake2b: string;
}

/** What `pkgHash` needs: a `PackageHeader`/`RpmPackage` has it. */
export interface PkgHashFields {
  readonly buildtime: number;
  /** hex, as the SHA1HEADER tag holds it */
  readonly sha1header?: string;
  readonly sigmd5?: Uint8Array;
  readonly siggpg?: Uint8Array;
}

const EMPTY = Buffer.alloc(0);

/**
 * ALT's package id (`pkg_hash`, a UInt64), compatible with the ALTRepo uploader's
 * `snowflake_id_pkg`: `(BUILDTIME − 1,000,000,000) << 32 | lo32`, where
 * `lo32 = MurmurHash3_x86_32(sha1 ‖ md5 ‖ gpg, seed 0)` and
 *  - `sha1` is the SHA1HEADER tag decoded from hex: its 20 binary bytes, not the 40
 *    ASCII characters of the string. The spec says "SHA1HEADER bytes"; the uploader
 *    does `bytes.fromhex(hdr[RPMTAG_SHA1HEADER])`, so the binary digest is what the
 *    existing ids were made from;
 *  - `md5` is SIGMD5 (signature tag 1004, a 16-byte bin) as stored;
 *  - `gpg` is SIGGPG (signature tag 1005, a bin) as stored;
 *  - a missing value contributes no bytes.
 * A build time before 2001-09-09 makes the high half negative; the result is then its
 * 64-bit two's complement, as ClickHouse would store the uploader's negative Python int.
 * A SHA1HEADER that is not hex is a `PermanentError` (the uploader crashed on it).
 */
export function pkgHash(pkg: PkgHashFields): bigint {
  const sha1 = pkg.sha1header ? hexBytes(pkg.sha1header) : EMPTY;
  const md5 = pkg.sigmd5 ?? EMPTY;
  const gpg = pkg.siggpg ?? EMPTY;
  const data = Buffer.concat([sha1, md5, gpg]);
  const lo = murmurHash3_32(data, 0);
  const hi = BigInt(Math.trunc(pkg.buildtime) - 1_000_000_000);
  return BigInt.asUintN(64, (hi << 32n) | BigInt(lo));
}

function hexBytes(hex: string): Buffer {
  // like Python's bytes.fromhex: whitespace between bytes is ignored
  const compact = hex.replace(/\s+/g, '');
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(compact)) {
    throw new PermanentError(`SHA1HEADER ${JSON.stringify(hex)} is not hex; cannot compute pkg_hash`, {
      hint: 'the package header is corrupt; skip the package',
    });
  }
  return Buffer.from(compact, 'hex');
}

/**
 * A package's metadata: the main header with typed accessors, plus the signature
 * header when there is one (a bare header from a pkglist has none: the signature
 * values are then taken from the main header's SIGMD5/SIGGPG/SHA1HEADER tags, where
 * rpm merges them). Values are decoded when first asked for.
 */
export class PackageHeader {
  readonly header: RpmHeader;
  readonly signature?: RpmHeader;
  private cachedFiles?: readonly RpmFile[];

  constructor(header: RpmHeader, signature?: RpmHeader) {
    this.header = header;
    this.signature = signature;
    for (const [tag, name] of [[TAG.NAME, 'NAME'], [TAG.VERSION, 'VERSION'], [TAG.RELEASE, 'RELEASE']] as const) {
      if (header.string(tag) === undefined) {
        throw rpmFormatError(header.source, header.offset, `RPM header has no ${name} tag (or it is not a string)`);
      }
    }
  }

  get name(): string {
    return this.header.string(TAG.NAME)!;
  }
  get epoch(): number | undefined {
    return this.header.number(TAG.EPOCH);
  }
  get version(): string {
    return this.header.string(TAG.VERSION)!;
  }
  get release(): string {
    return this.header.string(TAG.RELEASE)!;
  }
  get arch(): string {
    return this.header.string(TAG.ARCH) ?? '';
  }
  get os(): string {
    return this.header.string(TAG.OS) ?? '';
  }
  get summary(): string {
    return this.header.string(TAG.SUMMARY) ?? '';
  }
  get description(): string {
    return this.header.string(TAG.DESCRIPTION) ?? '';
  }
  get license(): string {
    return this.header.string(TAG.LICENSE) ?? '';
  }
  get group(): string {
    return this.header.string(TAG.GROUP) ?? '';
  }
  get url(): string {
    return this.header.string(TAG.URL) ?? '';
  }
  /** seconds since the epoch; 0 when absent */
  get buildtime(): number {
    return this.header.number(TAG.BUILDTIME) ?? 0;
  }
  get buildhost(): string {
    return this.header.string(TAG.BUILDHOST) ?? '';
  }
  /** the source package this one was built from; `undefined` for a source package */
  get sourcerpm(): string | undefined {
    return this.header.string(TAG.SOURCERPM);
  }
  /** a source package: it has the SOURCEPACKAGE tag, or no SOURCERPM */
  get isSource(): boolean {
    return this.header.has(TAG.SOURCEPACKAGE) || !this.header.has(TAG.SOURCERPM);
  }
  /** installed size in bytes (LONGSIZE when present) */
  get size(): number {
    return this.header.number(TAG.LONGSIZE) ?? this.header.number(TAG.SIZE) ?? 0;
  }
  get packager(): string {
    return this.header.string(TAG.PACKAGER) ?? '';
  }
  get vendor(): string {
    return this.header.string(TAG.VENDOR) ?? '';
  }
  get distribution(): string {
    return this.header.string(TAG.DISTRIBUTION) ?? '';
  }
  get disttag(): string {
    return this.header.string(TAG.DISTTAG) ?? '';
  }
  /** SHA-1 of the main header, hex, as stored */
  get sha1header(): string | undefined {
    return this.signature?.string(SIGTAG.SHA1) ?? this.header.string(TAG.SHA1HEADER);
  }
  /** SHA-256 of the main header, hex, as stored */
  get sha256header(): string | undefined {
    return this.signature?.string(SIGTAG.SHA256) ?? this.header.string(TAG.SHA256HEADER);
  }
  /** MD5 of main header + payload (signature tag 1004, SIGMD5 261 in the main header) */
  get sigmd5(): Buffer | undefined {
    return this.signature?.bin(SIGTAG.MD5) ?? this.header.bin(TAG.SIGMD5);
  }
  /** GPG signature of main header + payload (signature tag 1005, SIGGPG 262 in the main header) */
  get siggpg(): Buffer | undefined {
    return this.signature?.bin(SIGTAG.GPG) ?? this.header.bin(TAG.SIGGPG);
  }
  /** PGP signature (signature tag 1002, SIGPGP 259) */
  get sigpgp(): Buffer | undefined {
    return this.signature?.bin(SIGTAG.PGP) ?? this.header.bin(TAG.SIGPGP);
  }
  /** `cpio` unless the header says otherwise */
  get payloadFormat(): string {
    return this.header.string(TAG.PAYLOADFORMAT) ?? 'cpio';
  }
  /** `gzip`, `xz`, `zstd`, `bzip2`, `lzma` …; gzip when the header does not say (old packages) */
  get payloadCompressor(): string {
    return this.header.string(TAG.PAYLOADCOMPRESSOR) ?? 'gzip';
  }
  get payloadFlags(): string {
    return this.header.string(TAG.PAYLOADFLAGS) ?? '';
  }
  /** the algorithm of the file digests: from FILEDIGESTALGO, md5 when absent */
  get fileDigestAlgorithm(): string {
    const algo = this.header.number(TAG.FILEDIGESTALGO);
    return algo === undefined ? 'md5' : (DIGEST_ALGORITHMS[algo] ?? `unknown-${algo}`);
  }

  get requires(): Dependency[] {
    return this.dependencies('requires');
  }
  get provides(): Dependency[] {
    return this.dependencies('provides');
  }
  get conflicts(): Dependency[] {
    return this.dependencies('conflicts');
  }
  get obsoletes(): Dependency[] {
    return this.dependencies('obsoletes');
  }
  get recommends(): Dependency[] {
    return this.dependencies('recommends');
  }
  get suggests(): Dependency[] {
    return this.dependencies('suggests');
  }
  get supplements(): Dependency[] {
    return this.dependencies('supplements');
  }
  get enhances(): Dependency[] {
    return this.dependencies('enhances');
  }

  /** The dependencies of one kind, in stored order. */
  dependencies(kind: DependencyKind): Dependency[] {
    const [nameTag, flagsTag, versionTag] = DEPENDENCY_TAGS[kind];
    const names = this.header.strings(nameTag);
    if (names.length === 0) return [];
    const flags = this.parallel(this.header.numbers(flagsTag), names.length, flagsTag, nameTag);
    const versions = this.parallel(this.header.strings(versionTag), names.length, versionTag, nameTag);
    return names.map((name, i) => {
      const f = flags[i] ?? 0;
      return { name, version: versions[i] ?? '', flags: f, op: dependencyOp(f), types: dependencyTypes(f) };
    });
  }

  /** The file list (OLDFILENAMES for very old packages, else DIRNAMES[DIRINDEXES] + BASENAMES). */
  get files(): readonly RpmFile[] {
    return (this.cachedFiles ??= this.readFiles());
  }

  /** Just the paths of the files, cheaper than `files`. */
  get filePaths(): string[] {
    return this.cachedFiles ? this.cachedFiles.map((f) => f.path) : this.readPaths();
  }

  get changelog(): ChangelogEntry[] {
    const h = this.header;
    const times = h.numbers(TAG.CHANGELOGTIME);
    if (times.length === 0) return [];
    const names = this.parallel(h.strings(TAG.CHANGELOGNAME), times.length, TAG.CHANGELOGNAME, TAG.CHANGELOGTIME);
    const texts = this.parallel(h.strings(TAG.CHANGELOGTEXT), times.length, TAG.CHANGELOGTEXT, TAG.CHANGELOGTIME);
    return times.map((time, i) => ({ time, name: names[i] ?? '', text: texts[i] ?? '' }));
  }

  private readPaths(): string[] {
    const h = this.header;
    const basenames = h.rawStrings(TAG.BASENAMES);
    if (basenames.length === 0) return h.strings(TAG.OLDFILENAMES);
    const dirnames = h.rawStrings(TAG.DIRNAMES);
    const indexes = this.parallel(h.numbers(TAG.DIRINDEXES), basenames.length, TAG.DIRINDEXES, TAG.BASENAMES, true);
    const paths: string[] = new Array(basenames.length);
    for (let i = 0; i < basenames.length; i++) {
      const d = indexes[i]!;
      if (d >= dirnames.length) {
        const e = h.entry(TAG.DIRINDEXES)!;
        throw rpmFormatError(h.source, h.dataOffset + e.offset + 4 * i, `file ${i}: DIRINDEXES value ${d} is past the ${dirnames.length} DIRNAMES`);
      }
      // decode the joined bytes once, so a name split across dir and base decodes alike
      paths[i] = decodeRpmText(Buffer.concat([dirnames[d]!, basenames[i]!]));
    }
    return paths;
  }

  private readFiles(): RpmFile[] {
    const h = this.header;
    const paths = this.readPaths();
    const n = paths.length;
    if (n === 0) return [];
    const first = h.has(TAG.BASENAMES) ? TAG.BASENAMES : TAG.OLDFILENAMES;
    const longSizes = h.has(TAG.LONGFILESIZES);
    const sizes = this.parallel(h.numbers(longSizes ? TAG.LONGFILESIZES : TAG.FILESIZES), n, longSizes ? TAG.LONGFILESIZES : TAG.FILESIZES, first);
    const modes = this.parallel(h.numbers(TAG.FILEMODES), n, TAG.FILEMODES, first);
    const digests = this.parallel(h.strings(TAG.FILEDIGESTS), n, TAG.FILEDIGESTS, first);
    const links = this.parallel(h.strings(TAG.FILELINKTOS), n, TAG.FILELINKTOS, first);
    const flags = this.parallel(h.numbers(TAG.FILEFLAGS), n, TAG.FILEFLAGS, first);
    const users = this.parallel(h.strings(TAG.FILEUSERNAME), n, TAG.FILEUSERNAME, first);
    const groups = this.parallel(h.strings(TAG.FILEGROUPNAME), n, TAG.FILEGROUPNAME, first);
    const mtimes = this.parallel(h.numbers(TAG.FILEMTIMES), n, TAG.FILEMTIMES, first);
    const inodes = this.parallel(h.numbers(TAG.FILEINODES), n, TAG.FILEINODES, first);
    const devices = this.parallel(h.numbers(TAG.FILEDEVICES), n, TAG.FILEDEVICES, first);
    const rdevs = this.parallel(h.numbers(TAG.FILERDEVS), n, TAG.FILERDEVS, first);
    const langs = this.parallel(h.strings(TAG.FILELANGS), n, TAG.FILELANGS, first);
    const files: RpmFile[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const mode = modes[i] ?? 0;
      const f = flags[i] ?? 0;
      files[i] = {
        path: paths[i]!,
        size: sizes[i] ?? 0,
        mode,
        type: typeOfMode(mode),
        digest: digests[i] ?? '',
        linkTarget: links[i] ?? '',
        flags: f,
        flagNames: fileFlagNames(f),
        user: users[i] ?? '',
        group: groups[i] ?? '',
        mtime: mtimes[i] ?? 0,
        inode: inodes[i] ?? 0,
        device: devices[i] ?? 0,
        rdev: rdevs[i] ?? 0,
        lang: langs[i] ?? '',
      };
    }
    return files;
  }

  /**
   * An array that runs parallel to another (`count` long): absent is fine (empty, or an
   * error when `required`), any other length is a `PermanentError`.
   */
  private parallel<T>(values: T[], count: number, tag: number, alongside: number, required = false): T[] {
    if (values.length === count || (values.length === 0 && !required)) return values;
    const h = this.header;
    throw rpmFormatError(
      h.source,
      h.entryOffset(tag),
      `RPM header tag ${tag} has ${values.length} values but tag ${alongside} has ${count} (the arrays must be parallel)`,
    );
  }
}

/** `<`, `<=` … from the LESS/GREATER/EQUAL bits. */
export function dependencyOp(flags: number): DependencyOp {
  const lt = flags & RPMSENSE.LESS;
  const gt = flags & RPMSENSE.GREATER;
  const eq = flags & RPMSENSE.EQUAL;
  if (lt && !gt) return eq ? '<=' : '<';
  if (gt && !lt) return eq ? '>=' : '>';
  if (eq && !lt && !gt) return '=';
  return '';
}

/** The qualifiers in `flags`, in rpm's `deptype` order. */
export function dependencyTypes(flags: number): DependencyType[] {
  const out: DependencyType[] = [];
  for (const [bit, name] of DEPENDENCY_TYPES) if (flags & bit) out.push(name);
  return out;
}

/** The attributes in a file's flags, in rpm's `fflags` order. */
export function fileFlagNames(flags: number): FileFlag[] {
  const out: FileFlag[] = [];
  for (const [bit, name] of FILE_FLAGS) if (flags & bit) out.push(name);
  return out;
}

/** `file`, `directory`, `symlink` or `other` from the type bits of `st_mode`. */
export function typeOfMode(mode: number): EntryType {
  switch (mode & 0o170000) {
    case 0o100000:
      return 'file';
    case 0o040000:
      return 'directory';
    case 0o120000:
      return 'symlink';
    default:
      return 'other';
  }
}

/** A whole package as read from a file: metadata, lead, signature, where things are, and the file's digests. */
export class RpmPackage extends PackageHeader {
  readonly lead: RpmLead;
  override readonly signature: RpmHeader;
  /** md5, sha1, sha256 and blake2b-512 of the package file (computed while reading) */
  readonly digests: PackageDigests;
  /** bytes of the whole file */
  readonly byteLength: number;
  /** where the main header starts */
  readonly headerOffset: number;
  /** where the (compressed) payload starts */
  readonly payloadOffset: number;

  constructor(parts: {
    lead: RpmLead;
    signature: RpmHeader;
    header: RpmHeader;
    digests: PackageDigests;
    byteLength: number;
    payloadOffset: number;
  }) {
    super(parts.header, parts.signature);
    this.lead = parts.lead;
    this.signature = parts.signature;
    this.digests = parts.digests;
    this.byteLength = parts.byteLength;
    this.headerOffset = parts.header.offset;
    this.payloadOffset = parts.payloadOffset;
  }
}

export interface ReadPackageOptions {
  /** names the input in errors (a path, a URL); default `(stream)` */
  source?: string;
  /**
   * Check what the package says about itself: SHA1HEADER and SHA256HEADER against the
   * main header, SIGMD5 against header + payload, PAYLOADDIGEST (sha256) against the
   * payload. A mismatch is a `PermanentError`. Costs an md5 and a sha256 of the payload
   * on top of the file digests. Default false. (The total size, SIGSIZE/LONGSIGSIZE, is
   * always checked: it is free and catches truncated files.)
   */
  verify?: boolean;
}

/** A package whose headers are read and whose payload is next; see `openPackage`. */
export interface OpenedPackage {
  readonly lead: RpmLead;
  readonly signature: RpmHeader;
  /** the metadata (everything but the digests, which need the whole file) */
  readonly header: PackageHeader;
  /**
   * The payload as stored (compressed), chunk by chunk; it can be iterated once, and
   * leaving the loop early does not close the input (`finish` reads the rest).
   */
  readonly payload: AsyncIterable<Buffer>;
  /** Read whatever the payload loop left, run the checks, and return the package with its digests. */
  finish(): Promise<RpmPackage>;
  /** Give up: close the input without reading the rest. */
  close(): Promise<void>;
}

/**
 * Read the lead and both headers, and stop at the payload: for readers of the payload
 * (`payload.ts`). Everything read so far, and everything read later through `payload`
 * or `finish`, goes through the file digests once.
 */
export async function openPackage(input: ByteSource, options: ReadPackageOptions = {}): Promise<OpenedPackage> {
  const source = options.source ?? '(stream)';
  // md5, sha1, sha256 and blake2b-512 of the file, on the hash workers (see digests.ts)
  const digester = fileDigester();
  const reader = new ByteReader(input, (chunk) => digester.update(chunk));
  try {
    const leadBytes = await reader.read(LEAD_SIZE);
    const lead = parseLead(leadBytes, source);

    // signature header, then padding to a multiple of 8
    const signature = await readHeaderAt(reader, source, 'signature header');
    const pad = (8 - (signature.byteLength % 8)) % 8;
    if ((await reader.skip(pad)) < pad) {
      throw rpmFormatError(source, reader.position, 'truncated RPM: the input ends in the padding after the signature header');
    }

    const header = await readHeaderAt(reader, source, 'main header');
    const info = new PackageHeader(header, signature);
    const payloadOffset = reader.position;

    // checks over header + payload, when asked for
    const verifyMd5 = options.verify && info.sigmd5 ? createHash('md5').update(header.bytes) : undefined;
    const payloadAlgo = header.number(TAG.PAYLOADDIGESTALGO) ?? 8;
    const payloadDigest = options.verify && header.has(TAG.PAYLOADDIGEST) && payloadAlgo === 8 ? createHash('sha256') : undefined;
    if (options.verify) verifyHeaderDigests(info, header, source);

    let finished: Promise<RpmPackage> | undefined;
    const pull = async (): Promise<IteratorResult<Buffer, undefined>> => {
      await digester.drain(); // the hash workers are behind: do not read further ahead of them
      const chunk = await reader.readSome(1 << 20);
      if (chunk.length === 0) return { done: true, value: undefined };
      verifyMd5?.update(chunk);
      payloadDigest?.update(chunk);
      return { done: false, value: chunk };
    };
    // one read at a time, even when a payload consumer that was abandoned (a decompressor
    // reading ahead) still has a read in flight while `finish` drains the rest
    let tail: Promise<unknown> = Promise.resolve();
    const next = (): Promise<IteratorResult<Buffer, undefined>> => {
      const result = tail.then(pull);
      tail = result.catch(() => undefined);
      return result;
    };
    const payload: AsyncIterable<Buffer> = {
      [Symbol.asyncIterator]: () => ({
        next,
        return: async () => ({ done: true, value: undefined }),
      }),
    };

    const finish = async (): Promise<RpmPackage> => {
      try {
        while (!(await next()).done);
      } catch (err) {
        digester.abort();
        throw err;
      } finally {
        await reader.close();
      }
      // the workers finish the digests while the size and the checks are looked at
      const digests = digester.digest();
      digests.catch(() => undefined);
      const byteLength = reader.position;
      const declared = signature.number(SIGTAG.LONGSIZE) ?? signature.number(SIGTAG.SIZE);
      if (declared !== undefined && byteLength - header.offset !== declared) {
        const got = byteLength - header.offset;
        throw rpmFormatError(
          source,
          byteLength,
          got < declared
            ? `truncated RPM: the signature says header + payload are ${declared} bytes, the input ends after ${got}`
            : `RPM has ${got - declared} bytes of trailing data after the payload (the signature says header + payload are ${declared} bytes)`,
        );
      }
      if (verifyMd5) {
        const got = verifyMd5.digest();
        if (!got.equals(info.sigmd5!)) {
          throw new PermanentError(`${source}: SIGMD5 mismatch: header + payload hash to ${got.toString('hex')}, the signature says ${info.sigmd5!.toString('hex')}`, {
            item: source,
            hint: 'the package is corrupt; fetch it again',
          });
        }
      }
      if (payloadDigest) {
        const got = payloadDigest.digest('hex');
        const want = header.strings(TAG.PAYLOADDIGEST);
        if (!want.includes(got)) {
          throw new PermanentError(`${source}: PAYLOADDIGEST mismatch: the payload hashes to ${got}, the header says ${want.join(', ')}`, {
            item: source,
            hint: 'the package is corrupt; fetch it again',
          });
        }
      }
      return new RpmPackage({
        lead,
        signature,
        header,
        digests: await digests,
        byteLength,
        payloadOffset,
      });
    };

    return {
      lead,
      signature,
      header: info,
      payload,
      finish: () => (finished ??= finish()),
      close: () => {
        digester.abort();
        return reader.close();
      },
    };
  } catch (err) {
    digester.abort();
    await reader.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Read a whole package: headers parsed, payload read through (not unpacked) for the
 * file digests and the size check. Memory: the two headers and one chunk.
 */
export async function readPackage(input: ByteSource, options: ReadPackageOptions = {}): Promise<RpmPackage> {
  const opened = await openPackage(input, options);
  return opened.finish();
}

function parseLead(bytes: Buffer, source: string): RpmLead {
  if (bytes.length < 4 || bytes.readUInt32BE(0) !== LEAD_MAGIC) {
    const magic = bytes.subarray(0, 4).toString('hex');
    throw rpmFormatError(source, 0, `not an RPM package: lead magic is ${magic || 'missing (empty input)'}, expected edabeedb`);
  }
  if (bytes.length < LEAD_SIZE) {
    throw rpmFormatError(source, bytes.length, `truncated RPM: the input ends inside the ${LEAD_SIZE}-byte lead`);
  }
  const nameEnd = bytes.indexOf(0, 10);
  const lead: RpmLead = {
    major: bytes[4]!,
    minor: bytes[5]!,
    type: bytes.readUInt16BE(6),
    archnum: bytes.readUInt16BE(8),
    name: decodeRpmText(bytes.subarray(10, nameEnd < 0 || nameEnd > 76 ? 76 : nameEnd)),
    osnum: bytes.readUInt16BE(76),
    signatureType: bytes.readUInt16BE(78),
  };
  if (lead.major < 3) {
    throw rpmFormatError(source, 4, `RPM format version ${lead.major}.${lead.minor} is too old (rpm < 3; not supported)`);
  }
  if (lead.signatureType !== RPMSIGTYPE_HEADERSIG) {
    throw rpmFormatError(source, 78, `RPM signature type ${lead.signatureType} is not supported (only 5, a header signature, as every rpm ≥ 3 writes)`);
  }
  return lead;
}

async function readHeaderAt(reader: ByteReader, source: string, what: string): Promise<RpmHeader> {
  const at = reader.position;
  const preamble = await reader.peek(PREAMBLE_SIZE);
  if (preamble.length < PREAMBLE_SIZE) {
    throw rpmFormatError(source, at + preamble.length, `truncated RPM: the input ends before the ${what}`);
  }
  const opts = { source, offset: at };
  let length: number;
  try {
    length = headerPreamble(preamble, opts).byteLength;
  } catch (err) {
    if (err instanceof PermanentError) err.message = err.message.replace(/^([^:]*: )/, `$1${what}: `);
    throw err;
  }
  const bytes = await reader.read(length);
  if (bytes.length < length) {
    throw rpmFormatError(source, at + bytes.length, `truncated RPM: the ${what} declares ${length} bytes, the input ends after ${bytes.length}`);
  }
  try {
    return parseHeader(bytes, opts);
  } catch (err) {
    if (err instanceof PermanentError) err.message = err.message.replace(/^([^:]*: )/, `$1${what}: `);
    throw err;
  }
}

function verifyHeaderDigests(info: PackageHeader, header: RpmHeader, source: string): void {
  const checks: Array<[string, string | undefined, Hash]> = [
    ['SHA1HEADER', info.sha1header, createHash('sha1')],
    ['SHA256HEADER', info.sha256header, createHash('sha256')],
  ];
  for (const [name, want, hash] of checks) {
    if (!want) continue;
    const got = hash.update(header.bytes).digest('hex');
    if (got !== want.toLowerCase()) {
      throw new PermanentError(`${source}: ${name} mismatch: the main header hashes to ${got}, the signature says ${want}`, {
        item: source,
        hint: 'the package is corrupt; fetch it again',
      });
    }
  }
}
