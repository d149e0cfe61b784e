/**
 * squashfs 4.0 reader over a random-access `BlockDevice`: the superblock, the inode,
 * directory, fragment, id and xattr tables, data blocks (compressed, uncompressed and
 * sparse) and fragments; hard links (several names for one inode); extended inodes.
 * Compression: see compressors.ts (gzip, xz with any BCJ filter, zstd, lz4; lzma and
 * lzo are refused with a clear error when the image is opened).
 *
 * Entries come depth-first in directory order (squashfs stores names sorted). A file's
 * `open()` reads its blocks lazily, decompressing up to `readAhead` blocks ahead (the
 * decoders run off the main thread, so this uses a second core). Metadata blocks are
 * cached (a bounded LRU), and so are the last fragment blocks.
 *
 * Against hostile input (each an `ImageError` naming the image and the byte offset,
 * for the entry it concerns where possible): table offsets past the image, metadata
 * blocks whose length or decompressed size is out of range, block sizes over the
 * superblock's block size, directory headers with more than 256 entries, directory
 * loops (a directory inode met again), inode and id indexes out of range, more
 * entries or depth than `ImageLimits`.
 *
 * @example
 * ```ts
 * const fs = await openSquashfs(device);
 * for await (const node of fs.entries()) if (node.type === 'file') await hashStream(node.open!());
 * ```
 */
import { PermanentError } from '../../../runtime/errors.ts';
import type { BlockDevice } from '../block-device.ts';
import { ImageError } from '../image-error.ts';
import { DEFAULT_IMAGE_LIMITS, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK, typeOfMode, type ImageLimits, type TreeNode } from '../tree-node.ts';
import { blockDecompressor, COMPRESSION_NAMES, type BlockDecompressor } from './compressors.ts';

export const SQUASHFS_MAGIC = 0x73717368;
const METADATA_SIZE = 8192;
const NO_FRAGMENT = 0xffffffff;
const UNCOMPRESSED_BLOCK = 1 << 24;

export interface SquashfsInfo {
  readonly format: 'squashfs';
  readonly version: string;
  readonly compression: string;
  readonly blockSize: number;
  readonly inodes: number;
  readonly fragments: number;
  readonly created: Date;
  /** bytes the filesystem uses (the image may be padded beyond) */
  readonly bytesUsed: number;
  readonly flags: number;
}

export interface SquashfsOptions {
  readonly limits?: Partial<ImageLimits>;
  /** data blocks decompressed ahead of the reader of a file (default 4) */
  readonly readAhead?: number;
}

export interface Squashfs {
  readonly info: SquashfsInfo;
  entries(): AsyncGenerator<TreeNode, void, undefined>;
}

export async function isSquashfs(device: BlockDevice): Promise<boolean> {
  if (device.size < 96) return false;
  return (await device.read(0, 4)).readUInt32LE(0) === SQUASHFS_MAGIC;
}

interface Superblock {
  inodeCount: number;
  mkfsTime: number;
  blockSize: number;
  fragmentCount: number;
  compression: number;
  flags: number;
  idCount: number;
  major: number;
  minor: number;
  rootInode: bigint;
  bytesUsed: number;
  idTable: number;
  xattrTable: number;
  inodeTable: number;
  directoryTable: number;
  fragmentTable: number;
}

const NONE = 0xffffffffffffffffn;

export async function openSquashfs(device: BlockDevice, options: SquashfsOptions = {}): Promise<Squashfs> {
  const fail = (what: string, at?: number) => new ImageError(device.name, 'squashfs', what, at);
  if (device.size < 96) throw fail(`${device.size} bytes is too small for a squashfs superblock`, 0);
  const sb = await device.read(0, 96);
  if (sb.readUInt32LE(0) !== SQUASHFS_MAGIC) throw fail('no squashfs magic (hsqs)', 0);
  const u64 = (at: number, what: string, optional = false): number => {
    const v = sb.readBigUInt64LE(at);
    if (optional && v === NONE) return -1;
    if (v > BigInt(device.size)) throw fail(`${what} at ${v} lies past the end of the ${device.size}-byte image (truncated?)`, at);
    return Number(v);
  };
  const s: Superblock = {
    inodeCount: sb.readUInt32LE(4),
    mkfsTime: sb.readUInt32LE(8),
    blockSize: sb.readUInt32LE(12),
    fragmentCount: sb.readUInt32LE(16),
    compression: sb.readUInt16LE(20),
    flags: sb.readUInt16LE(24),
    idCount: sb.readUInt16LE(26),
    major: sb.readUInt16LE(28),
    minor: sb.readUInt16LE(30),
    rootInode: sb.readBigUInt64LE(32),
    bytesUsed: u64(40, 'the end of the filesystem (bytes_used)'),
    idTable: u64(48, 'the id table'),
    xattrTable: u64(56, 'the xattr table', true),
    inodeTable: u64(64, 'the inode table'),
    directoryTable: u64(72, 'the directory table'),
    fragmentTable: u64(80, 'the fragment table', true),
  };
  if (s.major !== 4) throw fail(`squashfs version ${s.major}.${s.minor} is not supported (only 4.x)`, 28);
  const blockLog = sb.readUInt16LE(22);
  if (s.blockSize < 4096 || s.blockSize > 1 << 20 || 1 << blockLog !== s.blockSize) throw fail(`block size ${s.blockSize} (log ${blockLog}) is not a power of two from 4 KiB to 1 MiB`, 12);
  if (![1, 4, 5, 6].includes(s.compression)) {
    const name = COMPRESSION_NAMES[s.compression];
    throw new ImageError(device.name, 'squashfs', name ? `${name} compression is not supported by this reader (supported: gzip, xz, zstd, lz4)` : `unknown compression id ${s.compression}`, 20, {
      hint: 'rebuild the image with mksquashfs -comp xz, gzip, zstd or lz4, or skip it',
    });
  }
  if (!(s.inodeTable < s.directoryTable && s.directoryTable <= s.bytesUsed)) throw fail('inode and directory tables are out of order', 64);
  const limits: ImageLimits = { ...DEFAULT_IMAGE_LIMITS, ...options.limits };
  const reader = new SquashfsReader(device, s, blockDecompressor(s.compression, device.name), limits, options.readAhead ?? 4);
  await reader.loadIds();
  const info: SquashfsInfo = {
    format: 'squashfs',
    version: `${s.major}.${s.minor}`,
    compression: COMPRESSION_NAMES[s.compression]!,
    blockSize: s.blockSize,
    inodes: s.inodeCount,
    fragments: s.fragmentCount,
    created: new Date(s.mkfsTime * 1000),
    bytesUsed: s.bytesUsed,
    flags: s.flags,
  };
  return { info, entries: () => reader.walk() };
}

interface Inode {
  type: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  number: number;
  nlink: number;
  xattr: number;
  // directories
  dirBlock?: number;
  dirOffset?: number;
  dirSize?: number;
  // files
  blocksStart?: number;
  fileSize?: number;
  fragment?: number;
  fragmentOffset?: number;
  blockSizes?: number[];
  // symlinks
  target?: string;
  at: number;
}

/** A cursor over the metadata stream of a table: crosses 8 KiB block boundaries. */
interface Cursor {
  block: number;
  offset: number;
}

class SquashfsReader {
  private ids: number[] = [];
  private readonly metaCache = new Map<number, { data: Buffer; next: number }>();
  private readonly fragmentCache = new Map<number, Promise<Buffer>>();
  /** recently decompressed data blocks: a probe of a file's first bytes (nesting) and the read that follows share them */
  private readonly blockCache = new Map<number, Promise<Buffer>>();
  private fragmentIndex: number[] | undefined;
  private readonly fail: (what: string, at?: number) => ImageError;

  constructor(
    private readonly device: BlockDevice,
    private readonly s: Superblock,
    private readonly decompress: BlockDecompressor,
    private readonly limits: ImageLimits,
    private readonly readAhead: number,
  ) {
    this.fail = (what, at) => new ImageError(device.name, 'squashfs', what, at);
  }

  /** One metadata block at absolute position `pos`: its bytes and where the next one starts. */
  private async metaBlock(pos: number): Promise<{ data: Buffer; next: number }> {
    const hit = this.metaCache.get(pos);
    if (hit) {
      this.metaCache.delete(pos);
      this.metaCache.set(pos, hit);
      return hit;
    }
    if (pos + 2 > this.device.size) throw this.fail('metadata block lies past the end of the image (truncated?)', pos);
    const header = (await this.device.read(pos, 2)).readUInt16LE(0);
    const size = header & 0x7fff;
    if (size === 0 || size > METADATA_SIZE) throw this.fail(`metadata block claims ${size} bytes (at most ${METADATA_SIZE})`, pos);
    const raw = await this.device.read(pos + 2, size);
    const data = header & 0x8000 ? raw : await this.decompress(raw, METADATA_SIZE, pos);
    const block = { data, next: pos + 2 + size };
    this.metaCache.set(pos, block);
    if (this.metaCache.size > 512) this.metaCache.delete(this.metaCache.keys().next().value!);
    return block;
  }

  /** `length` bytes of a metadata stream from `cursor`, which is moved past them. */
  private async meta(cursor: Cursor, length: number, tableEnd: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let need = length;
    while (need > 0) {
      if (cursor.block >= tableEnd) throw this.fail('metadata runs past the end of its table', cursor.block);
      const { data, next } = await this.metaBlock(cursor.block);
      if (cursor.offset > data.length) throw this.fail(`metadata offset ${cursor.offset} is past its ${data.length}-byte block`, cursor.block);
      const take = Math.min(need, data.length - cursor.offset);
      parts.push(data.subarray(cursor.offset, cursor.offset + take));
      need -= take;
      cursor.offset += take;
      if (cursor.offset === data.length) {
        // at the end of this block: the stream goes on in the next one
        cursor.block = next;
        cursor.offset = 0;
      }
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** A lookup table: `count` entries of `entrySize` bytes in metadata blocks listed by u64 pointers at `at`. */
  private async lookup(at: number, count: number, entrySize: number, what: string): Promise<Buffer> {
    const perBlock = METADATA_SIZE / entrySize;
    const blocks = Math.ceil(count / perBlock);
    if (at + blocks * 8 > this.device.size) throw this.fail(`${what} index lies past the end of the image`, at);
    const pointers = await this.device.read(at, blocks * 8);
    const parts: Buffer[] = [];
    for (let i = 0; i < blocks; i++) {
      const p = Number(pointers.readBigUInt64LE(i * 8));
      const want = Math.min(perBlock, count - i * perBlock) * entrySize;
      const bytes = await this.meta({ block: p, offset: 0 }, want, this.device.size);
      parts.push(bytes);
    }
    return Buffer.concat(parts);
  }

  async loadIds(): Promise<void> {
    if (this.s.idCount === 0) throw this.fail('the id table is empty', 26);
    const table = await this.lookup(this.s.idTable, this.s.idCount, 4, 'id table');
    for (let i = 0; i < this.s.idCount; i++) this.ids.push(table.readUInt32LE(i * 4));
  }

  private id(index: number, at: number): number {
    const v = this.ids[index];
    if (v === undefined) throw this.fail(`inode refers to id ${index}, but the id table has ${this.ids.length}`, at);
    return v;
  }

  private async fragmentEntry(index: number, at: number): Promise<{ start: number; size: number }> {
    if (index >= this.s.fragmentCount || this.s.fragmentTable < 0) throw this.fail(`inode refers to fragment ${index}, but there are ${this.s.fragmentCount}`, at);
    if (!this.fragmentIndex) {
      const table = await this.lookup(this.s.fragmentTable, this.s.fragmentCount, 16, 'fragment table');
      const list: number[] = [];
      for (let i = 0; i < this.s.fragmentCount; i++) list.push(Number(table.readBigUInt64LE(i * 16)), table.readUInt32LE(i * 16 + 8));
      this.fragmentIndex = list;
    }
    return { start: this.fragmentIndex[index * 2]!, size: this.fragmentIndex[index * 2 + 1]! };
  }

  /** A data or fragment block, decompressed (or zeros for a sparse block). */
  private async dataBlock(start: number, sizeWord: number, expect: number, what: string): Promise<Buffer> {
    const size = sizeWord & (UNCOMPRESSED_BLOCK - 1);
    if (size === 0) return Buffer.alloc(expect);
    if (size > this.s.blockSize) throw this.fail(`${what}: block of ${size} bytes is larger than the block size ${this.s.blockSize}`, start);
    if (start + size > this.s.bytesUsed) throw this.fail(`${what}: block lies past the end of the filesystem (truncated?)`, start);
    const raw = await this.device.read(start, size);
    const data = sizeWord & UNCOMPRESSED_BLOCK ? raw : await this.decompress(raw, this.s.blockSize, start);
    return data;
  }

  private cachedBlock(start: number, sizeWord: number, expect: number, what: string): Promise<Buffer> {
    let hit = this.blockCache.get(start);
    if (hit) return hit;
    hit = this.dataBlock(start, sizeWord, expect, what);
    this.blockCache.set(start, hit);
    hit.catch(() => this.blockCache.delete(start));
    if (this.blockCache.size > Math.max(4, (8 * 2 ** 20) / this.s.blockSize)) this.blockCache.delete(this.blockCache.keys().next().value!);
    return hit;
  }

  private fragmentBlock(entry: { start: number; size: number }): Promise<Buffer> {
    let hit = this.fragmentCache.get(entry.start);
    if (hit) return hit;
    hit = this.dataBlock(entry.start, entry.size, this.s.blockSize, 'fragment block');
    this.fragmentCache.set(entry.start, hit);
    hit.catch(() => this.fragmentCache.delete(entry.start));
    if (this.fragmentCache.size > 8) this.fragmentCache.delete(this.fragmentCache.keys().next().value!);
    return hit;
  }

  private async inode(ref: bigint): Promise<Inode> {
    const block = Number(ref >> 16n);
    const offset = Number(ref & 0xffffn);
    const at = this.s.inodeTable + block;
    if (at >= this.s.directoryTable) throw this.fail(`inode reference ${ref} points past the inode table`, at);
    const c: Cursor = { block: at, offset };
    const end = this.s.directoryTable;
    const h = await this.meta(c, 16, end);
    const type = h.readUInt16LE(0);
    const perm = h.readUInt16LE(2);
    const node: Inode = {
      type,
      mode: perm,
      uid: this.id(h.readUInt16LE(4), at),
      gid: this.id(h.readUInt16LE(6), at),
      mtime: h.readUInt32LE(8),
      number: h.readUInt32LE(12),
      nlink: 1,
      xattr: NO_FRAGMENT,
      at,
    };
    switch (type) {
      case 1: {
        const b = await this.meta(c, 16, end);
        node.mode |= S_IFDIR;
        node.dirBlock = b.readUInt32LE(0);
        node.nlink = b.readUInt32LE(4);
        node.dirSize = b.readUInt16LE(8);
        node.dirOffset = b.readUInt16LE(10);
        break;
      }
      case 8: {
        const b = await this.meta(c, 24, end);
        node.mode |= S_IFDIR;
        node.nlink = b.readUInt32LE(0);
        node.dirSize = b.readUInt32LE(4);
        node.dirBlock = b.readUInt32LE(8);
        node.dirOffset = b.readUInt16LE(18);
        node.xattr = b.readUInt32LE(20);
        break;
      }
      case 2:
      case 9: {
        node.mode |= S_IFREG;
        if (type === 2) {
          const b = await this.meta(c, 16, end);
          node.blocksStart = b.readUInt32LE(0);
          node.fragment = b.readUInt32LE(4);
          node.fragmentOffset = b.readUInt32LE(8);
          node.fileSize = b.readUInt32LE(12);
        } else {
          const b = await this.meta(c, 40, end);
          node.blocksStart = Number(b.readBigUInt64LE(0));
          node.fileSize = Number(b.readBigUInt64LE(8));
          node.nlink = b.readUInt32LE(24);
          node.fragment = b.readUInt32LE(28);
          node.fragmentOffset = b.readUInt32LE(32);
          node.xattr = b.readUInt32LE(36);
        }
        const size = node.fileSize;
        if (!Number.isSafeInteger(size) || size > 2 ** 50) throw this.fail(`file size ${size} is absurd`, at);
        const hasFragment = node.fragment !== NO_FRAGMENT;
        const count = hasFragment ? Math.floor(size / this.s.blockSize) : Math.ceil(size / this.s.blockSize);
        if (count * 4 > this.s.bytesUsed) throw this.fail(`file of ${size} bytes needs ${count} block sizes, more than the image could hold`, at);
        const sizes = await this.meta(c, count * 4, end);
        node.blockSizes = [];
        for (let i = 0; i < count; i++) node.blockSizes.push(sizes.readUInt32LE(i * 4));
        break;
      }
      case 3:
      case 10: {
        const b = await this.meta(c, 8, end);
        node.mode |= S_IFLNK;
        node.nlink = b.readUInt32LE(0);
        const length = b.readUInt32LE(4);
        if (length > 65536) throw this.fail(`symlink target of ${length} bytes`, at);
        node.target = (await this.meta(c, length, end)).toString('utf8');
        if (type === 10) node.xattr = (await this.meta(c, 4, end)).readUInt32LE(0);
        break;
      }
      case 4:
      case 5:
      case 11:
      case 12: {
        const b = await this.meta(c, type > 10 ? 12 : 8, end);
        node.mode |= type === 4 || type === 11 ? S_IFBLK : S_IFCHR;
        node.nlink = b.readUInt32LE(0);
        if (type > 10) node.xattr = b.readUInt32LE(8);
        break;
      }
      case 6:
      case 7:
      case 13:
      case 14: {
        const b = await this.meta(c, type > 10 ? 8 : 4, end);
        node.mode |= type === 6 || type === 13 ? S_IFIFO : S_IFSOCK;
        node.nlink = b.readUInt32LE(0);
        if (type > 10) node.xattr = b.readUInt32LE(4);
        break;
      }
      default:
        throw this.fail(`unknown inode type ${type}`, at);
    }
    return node;
  }

  /** The entries of a directory: names and inode references. */
  private async directory(dir: Inode, path: string): Promise<{ name: string; ref: bigint }[]> {
    const size = dir.dirSize! - 3; // the listing is 3 bytes shorter than its size ("." and "..")
    const list: { name: string; ref: bigint }[] = [];
    if (size <= 0) return list;
    if (size > this.limits.maxDirectoryBytes) throw this.fail(`directory ${path || '/'} claims ${size} bytes (limits.maxDirectoryBytes)`, dir.at);
    const start = this.s.directoryTable + dir.dirBlock!;
    const end = this.s.fragmentTable >= 0 ? Math.min(this.s.bytesUsed, Math.max(this.s.fragmentTable, start + 1)) : this.s.bytesUsed;
    const c: Cursor = { block: start, offset: dir.dirOffset! };
    const bytes = await this.meta(c, size, Math.max(end, this.s.bytesUsed));
    let pos = 0;
    while (pos < bytes.length) {
      if (pos + 12 > bytes.length) throw this.fail(`directory ${path || '/'}: header runs past the listing`, start);
      const count = bytes.readUInt32LE(pos) + 1;
      const inodeBlock = bytes.readUInt32LE(pos + 4);
      const base = bytes.readUInt32LE(pos + 8);
      pos += 12;
      if (count > 256) throw this.fail(`directory ${path || '/'}: header claims ${count} entries (at most 256)`, start);
      void base;
      for (let i = 0; i < count; i++) {
        if (pos + 8 > bytes.length) throw this.fail(`directory ${path || '/'}: entry runs past the listing`, start);
        const offset = bytes.readUInt16LE(pos);
        const nameSize = bytes.readUInt16LE(pos + 6) + 1;
        if (pos + 8 + nameSize > bytes.length) throw this.fail(`directory ${path || '/'}: name runs past the listing`, start);
        const name = bytes.toString('utf8', pos + 8, pos + 8 + nameSize);
        pos += 8 + nameSize;
        if (name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
          throw this.fail(`directory ${path || '/'} has an entry with an unusable name ${JSON.stringify(name)}`, start);
        }
        list.push({ name, ref: (BigInt(inodeBlock) << 16n) | BigInt(offset) });
      }
    }
    return list;
  }

  private async xattrs(index: number, at: number): Promise<Record<string, Buffer> | undefined> {
    if (index === NO_FRAGMENT || this.s.xattrTable < 0) return undefined;
    const head = await this.device.read(this.s.xattrTable, 16).catch(() => {
      throw this.fail('xattr table lies past the end of the image', this.s.xattrTable);
    });
    const kvStart = Number(head.readBigUInt64LE(0));
    const count = head.readUInt32LE(8);
    if (index >= count) throw this.fail(`inode refers to xattr set ${index}, but there are ${count}`, at);
    const block = Math.floor(index / 512);
    const pointer = Number((await this.device.read(this.s.xattrTable + 16 + block * 8, 8)).readBigUInt64LE(0));
    const entry = await this.meta({ block: pointer, offset: (index % 512) * 16 }, 16, this.device.size);
    const ref = entry.readBigUInt64LE(0);
    const pairs = entry.readUInt32LE(8);
    if (pairs > 65536) throw this.fail(`xattr set ${index} claims ${pairs} pairs`, at);
    const c: Cursor = { block: kvStart + Number(ref >> 16n), offset: Number(ref & 0xffffn) };
    const out: Record<string, Buffer> = {};
    const prefixes = ['user.', 'trusted.', 'security.'];
    for (let i = 0; i < pairs; i++) {
      const k = await this.meta(c, 4, this.device.size);
      const type = k.readUInt16LE(0);
      const name = (prefixes[type & 0xff] ?? '') + (await this.meta(c, k.readUInt16LE(2), this.device.size)).toString('utf8');
      const vsize = (await this.meta(c, 4, this.device.size)).readUInt32LE(0);
      if (vsize > 1 << 20) throw this.fail(`xattr ${name} value of ${vsize} bytes`, at);
      let value = await this.meta(c, vsize, this.device.size);
      if (type & 0x100) {
        const vref = value.readBigUInt64LE(0);
        const vc: Cursor = { block: kvStart + Number(vref >> 16n), offset: Number(vref & 0xffffn) };
        const size = (await this.meta(vc, 4, this.device.size)).readUInt32LE(0);
        if (size > 1 << 20) throw this.fail(`xattr ${name} value of ${size} bytes`, at);
        value = await this.meta(vc, size, this.device.size);
      }
      out[name] = Buffer.from(value);
    }
    return out;
  }

  async *walk(): AsyncGenerator<TreeNode, void, undefined> {
    const root = await this.inode(this.s.rootInode);
    if ((root.mode & S_IFDIR) !== S_IFDIR || (root.type !== 1 && root.type !== 8)) throw this.fail('the root inode is not a directory', root.at);
    const stack: { path: string; inode: Inode; depth: number }[] = [{ path: '', inode: root, depth: 0 }];
    const seen = new Set<number>();
    let count = 0;
    while (stack.length > 0) {
      const dir = stack.pop()!;
      if (seen.has(dir.inode.number)) {
        yield errorNode(dir.path, this.fail(`directory ${dir.path || '/'} loops back to a directory already listed`, dir.inode.at));
        continue;
      }
      seen.add(dir.inode.number);
      let listing: { name: string; ref: bigint }[];
      try {
        listing = await this.directory(dir.inode, dir.path);
      } catch (err) {
        if (!(err instanceof PermanentError)) throw err;
        yield errorNode(dir.path, err);
        continue;
      }
      const subdirs: { path: string; inode: Inode; depth: number }[] = [];
      for (const { name, ref } of listing) {
        if (++count > this.limits.maxEntries) throw this.fail(`more than ${this.limits.maxEntries} entries (limits.maxEntries)`);
        const path = dir.path ? `${dir.path}/${name}` : name;
        let inode: Inode;
        try {
          inode = await this.inode(ref);
        } catch (err) {
          if (!(err instanceof PermanentError)) throw err;
          yield errorNode(path, err, 'file');
          continue;
        }
        let xattrs: Record<string, Buffer> | undefined;
        try {
          xattrs = await this.xattrs(inode.xattr, inode.at);
        } catch (err) {
          if (!(err instanceof PermanentError)) throw err;
          yield errorNode(path, err, typeOfMode(inode.mode));
          continue;
        }
        const type = typeOfMode(inode.mode);
        const node: TreeNode = {
          path,
          type,
          size: type === 'file' ? inode.fileSize! : type === 'symlink' ? Buffer.byteLength(inode.target!) : 0,
          mode: inode.mode,
          mtime: new Date(inode.mtime * 1000),
          uid: inode.uid,
          gid: inode.gid,
          nlink: inode.nlink,
          inode: inode.number,
          ...(inode.target !== undefined ? { linkTarget: inode.target } : {}),
          ...(xattrs ? { xattrs } : {}),
          ...(type === 'file' ? { open: () => this.content(inode, path) } : {}),
        };
        if (type === 'directory') {
          if (dir.depth + 1 > this.limits.maxDepth) {
            yield { ...node, error: this.fail(`directory ${path} is nested deeper than ${this.limits.maxDepth} levels (limits.maxDepth)`, inode.at) };
            continue;
          }
          subdirs.push({ path, inode, depth: dir.depth + 1 });
        }
        yield node;
      }
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
    }
  }

  /** A file's bytes: its blocks in order, decompressed `readAhead` ahead, then its fragment tail. */
  private content(inode: Inode, path: string): ReadableStream<Uint8Array> {
    const sizes = inode.blockSizes!;
    const blockSize = this.s.blockSize;
    const total = inode.fileSize!;
    const offsets: number[] = [];
    let pos = inode.blocksStart!;
    for (const w of sizes) {
      offsets.push(pos);
      pos += w & (UNCOMPRESSED_BLOCK - 1);
    }
    const what = `file ${path}`;
    const queue: Promise<Buffer>[] = [];
    let next = 0;
    let fragmentDone = inode.fragment === NO_FRAGMENT;
    let pulls = 0;
    const fill = () => {
      // one block for the first pull (a probe of the first bytes), then `readAhead` ahead
      const ahead = pulls++ === 0 ? 1 : this.readAhead;
      while (queue.length < ahead && next < sizes.length) {
        const i = next++;
        const expect = Math.min(blockSize, total - i * blockSize);
        const sparse = (sizes[i]! & (UNCOMPRESSED_BLOCK - 1)) === 0;
        const p = (sparse ? this.dataBlock(offsets[i]!, sizes[i]!, expect, what) : this.cachedBlock(offsets[i]!, sizes[i]!, expect, what)).then((b) => {
          if (b.length !== expect) throw this.fail(`${what}: block ${i} decompresses to ${b.length} bytes, expected ${expect}`, offsets[i]);
          return b;
        });
        p.catch(() => undefined);
        queue.push(p);
      }
    };
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          fill();
          const head = queue.shift();
          if (head) {
            const block = await head;
            fill();
            controller.enqueue(block);
            return;
          }
          if (!fragmentDone) {
            fragmentDone = true;
            const tail = total - sizes.length * blockSize;
            const entry = await this.fragmentEntry(inode.fragment!, inode.at);
            const block = await this.fragmentBlock(entry);
            const start = inode.fragmentOffset!;
            if (start + tail > block.length) throw this.fail(`${what}: its tail (${tail} bytes at ${start}) lies past the end of its ${block.length}-byte fragment block`, entry.start);
            if (tail > 0) controller.enqueue(Buffer.from(block.subarray(start, start + tail)));
            if (tail > 0) return;
          }
          controller.close();
        },
        cancel: () => {
          queue.length = 0;
        },
      },
      { highWaterMark: 0 },
    );
  }
}

function errorNode(path: string, error: PermanentError, type: TreeNode['type'] = 'directory'): TreeNode {
  return { path, type, size: 0, mode: type === 'directory' ? S_IFDIR : S_IFREG, mtime: new Date(0), error };
}
