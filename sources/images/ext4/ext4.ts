/**
 * ext2/ext3/ext4 reader, read-only, over a random-access `BlockDevice`: the superblock,
 * group descriptors (32- and 64-byte), inodes of any size, extent trees (any depth,
 * uninitialised extents read as zeros), indirect blocks (ext2/ext3: single, double,
 * triple), sparse files (holes read as zeros), directories (linear and htree: an htree
 * directory's blocks are read in order, its index blocks hold no entries), fast and
 * slow symlinks, inline data small enough for the inode, 64-bit block numbers and large
 * files. The journal is not replayed (as for a read-only mount with `noload`).
 *
 * Refused with an `ImageError`: meta_bg layouts, encryption, compression; a file whose
 * inline data spills into xattrs is an error entry.
 *
 * Bad input: a block number past the end of the file system, an extent tree deeper than
 * 5 or with a bad magic, a directory entry whose length is not sane, a directory met
 * twice (a loop), a file whose size is absurd: an `ImageError` naming the image and the
 * byte offset, for the entry it concerns.
 *
 * @example
 * ```ts
 * const fs = await openExt(device);
 * console.log(fs.info.label, fs.info.uuid);
 * for await (const node of fs.entries()) console.log(node.path);
 * ```
 */
import { PermanentError } from '../../../runtime/errors.ts';
import type { BlockDevice } from '../block-device.ts';
import { ImageError } from '../image-error.ts';
import { DEFAULT_IMAGE_LIMITS, S_IFDIR, S_IFLNK, S_IFREG, typeOfMode, type ImageLimits, type TreeNode } from '../tree-node.ts';

const EXT_MAGIC = 0xef53;
const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_EXTENTS = 0x40;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_FLEX_BG = 0x200;
const INCOMPAT_ENCRYPT = 0x10000;
const INCOMPAT_COMPRESSION = 0x1;
const COMPAT_HAS_JOURNAL = 0x4;
const EXTENTS_FL = 0x80000;
const INLINE_DATA_FL = 0x10000000;
const ROOT_INODE = 2;

export interface ExtInfo {
  readonly format: 'ext2' | 'ext3' | 'ext4';
  readonly label: string;
  readonly uuid: string;
  readonly lastMounted: string;
  readonly blockSize: number;
  readonly blocks: number;
  readonly inodes: number;
  readonly created?: Date;
  readonly written?: Date;
  readonly features: { readonly compat: number; readonly incompat: number; readonly roCompat: number };
}

export interface Ext {
  readonly info: ExtInfo;
  entries(): AsyncGenerator<TreeNode, void, undefined>;
}

export async function isExt(device: BlockDevice): Promise<boolean> {
  return device.size >= 2048 && (await device.read(1024 + 56, 2)).readUInt16LE(0) === EXT_MAGIC;
}

interface Inode {
  number: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  nlink: number;
  flags: number;
  block: Buffer;
  at: number;
}

/** A run of blocks: `count` logical blocks from `logical` at physical `physical` (0: a hole). */
interface Run {
  logical: number;
  physical: number;
  count: number;
}

export async function openExt(device: BlockDevice, options: { limits?: Partial<ImageLimits> } = {}): Promise<Ext> {
  const fail = (what: string, at?: number) => new ImageError(device.name, 'ext', what, at);
  if (device.size < 2048) throw fail('too small for an ext superblock', 0);
  const sb = await device.read(1024, 1024);
  if (sb.readUInt16LE(56) !== EXT_MAGIC) throw fail('no ext2/3/4 magic (ef53)', 1024 + 56);
  const logBlock = sb.readUInt32LE(24);
  if (logBlock > 6) throw fail(`block size 1024 << ${logBlock} is out of range`, 1024 + 24);
  const blockSize = 1024 << logBlock;
  const compat = sb.readUInt32LE(92);
  const incompat = sb.readUInt32LE(96);
  const roCompat = sb.readUInt32LE(100);
  if (incompat & INCOMPAT_META_BG) throw fail('meta_bg file systems are not supported', 1024 + 96);
  if (incompat & INCOMPAT_ENCRYPT) throw fail('encrypted file systems are not supported', 1024 + 96);
  if (incompat & INCOMPAT_COMPRESSION) throw fail('compressed ext2 file systems are not supported', 1024 + 96);
  const is64 = (incompat & INCOMPAT_64BIT) !== 0;
  const blocks = sb.readUInt32LE(4) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const inodesCount = sb.readUInt32LE(0);
  const firstDataBlock = sb.readUInt32LE(20);
  const blocksPerGroup = sb.readUInt32LE(32);
  const inodesPerGroup = sb.readUInt32LE(40);
  const rev = sb.readUInt32LE(76);
  const inodeSize = rev === 0 ? 128 : sb.readUInt16LE(88);
  const descSize = is64 ? Math.max(32, sb.readUInt16LE(254)) : 32;
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) throw fail(`inode size ${inodeSize} is out of range`, 1024 + 88);
  if (blocksPerGroup === 0 || inodesPerGroup === 0 || inodesPerGroup > blockSize * 8) throw fail('blocks or inodes per group out of range', 1024 + 32);
  const groups = Math.ceil((blocks - firstDataBlock) / blocksPerGroup);
  if (groups <= 0 || groups * descSize > 64 * 2 ** 20) throw fail(`${groups} block groups is absurd`, 1024 + 4);
  const descAt = (firstDataBlock + 1) * blockSize;
  if (descAt + groups * descSize > device.size) throw fail('the group descriptors lie past the end of the image (truncated?)', descAt);
  const descriptors = await device.read(descAt, groups * descSize);
  const hasFiletype = (incompat & INCOMPAT_FILETYPE) !== 0;

  const format: ExtInfo['format'] = incompat & (INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG) ? 'ext4' : compat & COMPAT_HAS_JOURNAL ? 'ext3' : 'ext2';
  const uuid = sb.toString('hex', 104, 120).replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
  const text = (from: number, to: number) => sb.toString('utf8', from, to).replace(/\0.*$/s, '');
  const mkfs = sb.readUInt32LE(0x108);
  const wtime = sb.readUInt32LE(48);
  const info: ExtInfo = {
    format,
    label: text(120, 136),
    uuid,
    lastMounted: text(136, 200),
    blockSize,
    blocks,
    inodes: inodesCount,
    ...(mkfs ? { created: new Date(mkfs * 1000) } : {}),
    ...(wtime ? { written: new Date(wtime * 1000) } : {}),
    features: { compat, incompat, roCompat },
  };
  const limits: ImageLimits = { ...DEFAULT_IMAGE_LIMITS, ...options.limits };
  const fsBytes = Math.min(blocks * blockSize, device.size);

  const readBlocks = async (block: number, count: number, what: string): Promise<Buffer> => {
    if (block >= blocks || block + count > blocks || (block + count) * blockSize > device.size) {
      throw fail(`${what}: block ${block} lies past the end of the file system (${blocks} blocks${(block + count) * blockSize > device.size ? ', or the image is truncated' : ''})`, Math.min(block * blockSize, Number.MAX_SAFE_INTEGER));
    }
    return device.read(block * blockSize, count * blockSize);
  };

  const inode = async (number: number): Promise<Inode> => {
    if (number < 1 || number > inodesCount) throw fail(`inode ${number} is out of range (1–${inodesCount})`);
    const group = Math.floor((number - 1) / inodesPerGroup);
    const index = (number - 1) % inodesPerGroup;
    const d = group * descSize;
    const table = descriptors.readUInt32LE(d + 8) + (descSize >= 64 ? descriptors.readUInt32LE(d + 0x28) * 2 ** 32 : 0);
    const at = table * blockSize + index * inodeSize;
    if (table >= blocks || at + inodeSize > device.size) throw fail(`inode ${number}'s table lies past the end of the image`, descAt + d + 8);
    const b = await device.read(at, Math.min(inodeSize, 160));
    const mode = b.readUInt16LE(0);
    const size = b.readUInt32LE(4) + b.readUInt32LE(108) * 2 ** 32;
    return {
      number,
      mode,
      uid: b.readUInt16LE(2) | (b.readUInt16LE(120) << 16),
      gid: b.readUInt16LE(24) | (b.readUInt16LE(122) << 16),
      size,
      mtime: b.readUInt32LE(16),
      nlink: b.readUInt16LE(26),
      flags: b.readUInt32LE(32),
      block: b.subarray(40, 100),
      at,
    };
  };

  /** The runs of blocks that make up an inode's data, in logical order (holes are gaps). */
  const runs = async (node: Inode): Promise<Run[]> => {
    const out: Run[] = [];
    const maxBlocks = Math.ceil(node.size / blockSize);
    if (node.flags & EXTENTS_FL) {
      const walk = async (buf: Buffer, at: number, depthLeft: number): Promise<void> => {
        if (buf.readUInt16LE(0) !== 0xf30a) throw fail(`inode ${node.number}: extent header has a bad magic`, at);
        const entries = buf.readUInt16LE(2);
        const depth = buf.readUInt16LE(6);
        if (depth > 5 || depth >= depthLeft) throw fail(`inode ${node.number}: extent tree deeper than allowed (${depth})`, at);
        if (12 + entries * 12 > buf.length) throw fail(`inode ${node.number}: ${entries} extents do not fit their node`, at);
        for (let i = 0; i < entries; i++) {
          const e = 12 + i * 12;
          if (depth === 0) {
            const logical = buf.readUInt32LE(e);
            let len = buf.readUInt16LE(e + 4);
            const uninit = len > 32768;
            if (uninit) len -= 32768;
            const physical = buf.readUInt16LE(e + 6) * 2 ** 32 + buf.readUInt32LE(e + 8);
            if (logical >= maxBlocks) continue;
            out.push({ logical, physical: uninit ? 0 : physical, count: Math.min(len, maxBlocks - logical) });
            if (out.length > maxBlocks + 1) throw fail(`inode ${node.number}: more extents than blocks`, at);
          } else {
            const leaf = buf.readUInt16LE(e + 8) * 2 ** 32 + buf.readUInt32LE(e + 4);
            const child = await readBlocks(leaf, 1, `inode ${node.number} extent node`);
            await walk(child, leaf * blockSize, depth);
          }
        }
      };
      await walk(node.block, node.at + 40, 6);
      out.sort((a, b) => a.logical - b.logical);
    } else {
      // ext2/3 block map: 12 direct, then single, double, triple indirect
      const perBlock = blockSize / 4;
      let logical = 0;
      const push = (physical: number) => {
        const last = out[out.length - 1];
        if (physical !== 0 && last && last.physical !== 0 && last.physical + last.count === physical && last.logical + last.count === logical) last.count++;
        else if (physical !== 0) out.push({ logical, physical, count: 1 });
        logical++;
      };
      for (let i = 0; i < 12 && logical < maxBlocks; i++) push(node.block.readUInt32LE(i * 4));
      const indirect = async (block: number, level: number): Promise<void> => {
        const span = perBlock ** level;
        if (block === 0) {
          logical += span;
          return;
        }
        const b = await readBlocks(block, 1, `inode ${node.number} indirect block`);
        for (let i = 0; i < perBlock && logical < maxBlocks; i++) {
          const p = b.readUInt32LE(i * 4);
          if (level === 1) push(p);
          else await indirect(p, level - 1);
        }
      };
      for (let level = 1; level <= 3 && logical < maxBlocks; level++) await indirect(node.block.readUInt32LE((11 + level) * 4), level);
    }
    return out;
  };

  const content = (node: Inode, path: string): ReadableStream<Uint8Array> => {
    let plan: Run[] | undefined;
    let pos = 0; // bytes produced
    let run = 0;
    const chunk = Math.max(blockSize, 256 * 1024);
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          if (node.flags & INLINE_DATA_FL) {
            if (node.size > 60) throw fail(`${path}: inline data larger than the inode (kept in xattrs) is not supported`, node.at);
            controller.enqueue(Buffer.from(node.block.subarray(0, node.size)));
            controller.close();
            return;
          }
          plan ??= await runs(node);
          if (pos >= node.size) {
            controller.close();
            return;
          }
          const block = Math.floor(pos / blockSize);
          while (run < plan.length && plan[run]!.logical + plan[run]!.count <= block) run++;
          const r = plan[run];
          const end = Math.min(node.size, pos + chunk);
          if (!r || r.logical > block) {
            // a hole up to the next run (or the end)
            const holeEnd = Math.min(end, r ? r.logical * blockSize : node.size);
            controller.enqueue(Buffer.alloc(holeEnd - pos));
            pos = holeEnd;
            return;
          }
          const runEnd = Math.min(end, (r.logical + r.count) * blockSize);
          const physicalAt = r.physical * blockSize + (pos - r.logical * blockSize);
          const length = runEnd - pos;
          if (r.physical === 0) {
            controller.enqueue(Buffer.alloc(length));
          } else {
            if (r.physical + r.count > blocks || physicalAt + length > fsBytes) throw fail(`${path}: data block ${r.physical} lies past the end of the file system (truncated?)`, physicalAt);
            controller.enqueue(await device.read(physicalAt, length));
          }
          pos = runEnd;
        },
      },
      { highWaterMark: 1 },
    );
  };

  const readAll = async (node: Inode, path: string, limit: number): Promise<Buffer> => {
    if (node.size > limit) throw fail(`${path}: ${node.size} bytes is more than the ${limit} allowed`, node.at);
    const parts: Buffer[] = [];
    for await (const c of content(node, path) as unknown as AsyncIterable<Uint8Array>) parts.push(Buffer.from(c));
    return Buffer.concat(parts);
  };

  async function* walk(): AsyncGenerator<TreeNode, void, undefined> {
    const root = await inode(ROOT_INODE);
    if ((root.mode & 0o170000) !== S_IFDIR) throw fail('the root inode is not a directory', root.at);
    const stack: { path: string; node: Inode; depth: number }[] = [{ path: '', node: root, depth: 0 }];
    const seen = new Set<number>();
    let count = 0;
    while (stack.length > 0) {
      const dir = stack.pop()!;
      if (seen.has(dir.node.number)) {
        yield errorNode(dir.path, fail(`directory ${dir.path || '/'} loops back to a directory already listed`, dir.node.at));
        continue;
      }
      seen.add(dir.node.number);
      let listing: { name: string; inode: number }[];
      try {
        listing = parseDirectory(await readAll(dir.node, dir.path || '/', limits.maxDirectoryBytes), dir.path, dir.node);
      } catch (err) {
        if (!(err instanceof PermanentError)) throw err;
        yield errorNode(dir.path, err);
        continue;
      }
      const subdirs: { path: string; node: Inode; depth: number }[] = [];
      for (const { name, inode: number } of listing) {
        if (++count > limits.maxEntries) throw fail(`more than ${limits.maxEntries} entries (limits.maxEntries)`);
        const path = dir.path ? `${dir.path}/${name}` : name;
        let node: Inode;
        try {
          node = await inode(number);
        } catch (err) {
          if (!(err instanceof PermanentError)) throw err;
          yield errorNode(path, err, 'file');
          continue;
        }
        const type = typeOfMode(node.mode);
        let linkTarget: string | undefined;
        if (type === 'symlink') {
          try {
            linkTarget = node.size < 60 && !(node.flags & (EXTENTS_FL | INLINE_DATA_FL)) ? node.block.toString('utf8', 0, node.size) : (await readAll(node, path, 65536)).toString('utf8');
          } catch (err) {
            if (!(err instanceof PermanentError)) throw err;
            yield errorNode(path, err, 'symlink');
            continue;
          }
        }
        const entry: TreeNode = {
          path,
          type,
          size: type === 'file' ? node.size : type === 'symlink' ? Buffer.byteLength(linkTarget!) : 0,
          mode: node.mode,
          mtime: new Date(node.mtime * 1000),
          uid: node.uid,
          gid: node.gid,
          nlink: node.nlink,
          inode: node.number,
          ...(linkTarget !== undefined ? { linkTarget } : {}),
          ...(type === 'file' ? { open: () => content(node, path) } : {}),
        };
        if (type === 'file' && node.size > 2 ** 50) {
          // ext4's largest file is 16 TiB (4 KiB blocks) to 256 TiB (64 KiB): more is corruption
          yield { ...entry, error: fail(`${path}: size ${node.size} is absurd`, node.at) };
          continue;
        }
        if (type === 'directory') {
          if (dir.depth + 1 > limits.maxDepth) {
            yield { ...entry, error: fail(`directory ${path} is nested deeper than ${limits.maxDepth} levels (limits.maxDepth)`, node.at) };
            continue;
          }
          subdirs.push({ path, node, depth: dir.depth + 1 });
        }
        yield entry;
      }
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
    }
  }

  const parseDirectory = (bytes: Buffer, path: string, node: Inode): { name: string; inode: number }[] => {
    const list: { name: string; inode: number }[] = [];
    let pos = 0;
    while (pos + 8 <= bytes.length) {
      const ino = bytes.readUInt32LE(pos);
      const recLen = bytes.readUInt16LE(pos + 4);
      const nameLen = hasFiletype ? bytes[pos + 6]! : bytes.readUInt16LE(pos + 6);
      const blockEnd = (Math.floor(pos / blockSize) + 1) * blockSize;
      if (recLen < 8 || recLen % 4 !== 0 || pos + recLen > blockEnd || 8 + nameLen > recLen) {
        throw fail(`directory ${path || '/'}: entry at ${pos} has a bad record length ${recLen}`, node.at);
      }
      if (ino !== 0 && nameLen > 0) {
        const name = bytes.toString('utf8', pos + 8, pos + 8 + nameLen);
        if (name !== '.' && name !== '..') {
          if (name.includes('/') || name.includes('\0')) throw fail(`directory ${path || '/'} has an entry with an unusable name ${JSON.stringify(name)}`, node.at);
          list.push({ name, inode: ino });
        }
      }
      pos += recLen;
    }
    return list;
  };

  return { info, entries: walk };
}

function errorNode(path: string, error: PermanentError, type: TreeNode['type'] = 'directory'): TreeNode {
  return { path, type, size: 0, mode: type === 'directory' ? S_IFDIR : type === 'symlink' ? S_IFLNK : S_IFREG, mtime: new Date(0), error };
}
