/**
 * The files of an image, whatever its format, found from its bytes (never its name):
 *
 * | format | how it is read |
 * | --- | --- |
 * | ISO9660 (Rock Ridge, Joliet, El Torito) | `iso9660/` — a tree |
 * | squashfs 4 | `squashfs/` — a tree |
 * | ext2/ext3/ext4 | `ext4/` — a tree |
 * | GPT or MBR disk | `partitions/` — each partition is a layer `p<N>`, read as an image |
 * | qcow2 | `qcow2/` — its virtual disk is read as an image (same layer) |
 * | xz, gzip, zstd, bzip2 | decompressed to a spool file (spool.ts), then read as an image (same layer) |
 *
 * An ISO is checked before a partition table, so a hybrid ISO is listed as an ISO (its
 * partition table is in its volume info).
 *
 * **Nesting** (`nested`, default true): a file of a tree that is itself an image (a
 * squashfs in an ISO, an ext4 image in a squashfs) is yielded, then its files, with
 * paths `<file>!<path inside>` (image-entry.ts). A file stored contiguously (any ISO
 * file) is read in place through a slice of the outer device; any other is spooled
 * first (spool.ts, within `spoolBudget`). Only files of at least `nestedMinBytes`
 * (4 KiB) are looked at, or `nestedStreamMinBytes` (1 MiB) for files whose first bytes
 * must be decompressed to be looked at (squashfs files), down to `maxDepth` levels. A nested image that cannot be read becomes one
 * error entry (its path, the `ImageError`), and the outer tree goes on.
 *
 * `onLayer` is called for each layer as it is opened, with its format's metadata (the
 * ISO's volume id and dates, a squashfs's compression, a disk's partitions …).
 *
 * **Content lifetime**: an entry's `content()` can be opened (again and again) while its
 * layer is open, i.e. until the generator moves past the layer's last entry; an entry
 * passed to `holdEntry` keeps its layer open until the returned release is called. The
 * `image()` source holds each item until it is acknowledged.
 *
 * @example
 * ```ts
 * const device = await FileDevice.open(ctx, 'alt-live.iso');
 * for await (const e of imageEntries(ctx, device, { name: 'alt-live.iso', path: 'alt-live.iso' })) {
 *   if (e.type === 'file' && !e.error) console.log(e.path, (await hashStream(e.content())).sha256);
 * }
 * ```
 */
import os from 'node:os';
import path from 'node:path';
import type { RunContext } from '../../runtime/context.ts';
import { PermanentError } from '../../runtime/errors.ts';
import { ByteReader } from '../decoders/byte-reader.ts';
import { byteStream, DECODERS } from '../decoders/decompress.ts';
import { COMPRESSION_MAGIC_BYTES, detectCompression } from '../decoders/detect.ts';
import { deviceStream, type BlockDevice } from './block-device.ts';
import { isExt, openExt } from './ext4/ext4.ts';
import type { ImageEntry, LayerInfo } from './image-entry.ts';
import { ImageError } from './image-error.ts';
import { isIso9660, openIso9660, type Iso9660Options } from './iso9660/iso9660.ts';
import { partitionDevices, readPartitions } from './partitions/partitions.ts';
import { isQcow2, openQcow2 } from './qcow2/qcow2.ts';
import { DiskBudget, spool } from './spool.ts';
import { isSquashfs, openSquashfs } from './squashfs/squashfs.ts';
import type { ImageLimits, TreeNode } from './tree-node.ts';

export type ImageKind = 'iso9660' | 'squashfs' | 'ext' | 'qcow2' | 'partitions' | 'compressed';

export interface ImageEntriesOptions {
  /** the image in messages and in `entry.image` (default the device's name) */
  readonly name?: string;
  /** the image file on disk: for a qcow2's relative backing file, and `absolutePath` */
  readonly path?: string;
  /** open files that are images and yield their files too (default true) */
  readonly nested?: boolean;
  /** deepest nesting (default 4) */
  readonly maxDepth?: number;
  /** smallest file looked at for nesting when it can be read in place (an ISO file; default 4096 bytes) */
  readonly nestedMinBytes?: number;
  /**
   * smallest file looked at for nesting when its first bytes must be decompressed to be
   * looked at (a squashfs file; default 1 MiB): looking costs a block's decompression
   */
  readonly nestedStreamMinBytes?: number;
  /** where spool files go (default the OS temp dir) */
  readonly tempDir?: string;
  /** most bytes of spool files at once (default 8 GiB) */
  readonly spoolBudget?: number;
  readonly limits?: Partial<ImageLimits>;
  readonly iso9660?: Iso9660Options;
  /** called when a layer is opened */
  readonly onLayer?: (layer: LayerInfo) => void;
  readonly signal?: AbortSignal;
}

/** Which image format the device holds, from its bytes. */
export async function detectImage(device: BlockDevice): Promise<ImageKind | undefined> {
  if (device.size === 0) return undefined;
  if (await isQcow2(device)) return 'qcow2';
  if (await isSquashfs(device)) return 'squashfs';
  if (detectCompression(await device.read(0, Math.min(COMPRESSION_MAGIC_BYTES, device.size)))) return 'compressed';
  if (await isIso9660(device)) return 'iso9660';
  if (await isExt(device)) return 'ext';
  if (device.size >= 1024) {
    const sig = await device.read(510, 2);
    if (sig[0] === 0x55 && sig[1] === 0xaa) return 'partitions';
  }
  return undefined;
}

/** Keeps a layer's resources (devices, spool files) until the layer is done and every held entry released. */
class Keeper {
  private refs = 1;
  private readonly closers: (() => Promise<void>)[] = [];
  constructor(private readonly parent?: Keeper) {
    parent?.retain();
  }
  retain(): void {
    this.refs++;
  }
  onClose(close: () => Promise<void>): void {
    this.closers.push(close);
  }
  async release(): Promise<void> {
    if (--this.refs > 0) return;
    for (const close of this.closers.reverse()) await close().catch(() => undefined);
    this.closers.length = 0;
    await this.parent?.release();
  }
}

const keepers = new WeakMap<object, Keeper>();

/** Keep an entry's layer open (its `content()` usable) until the returned function is called. */
export function holdEntry(entry: ImageEntry): () => Promise<void> {
  const keeper = keepers.get(entry);
  if (!keeper) return async () => {};
  keeper.retain();
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await keeper.release();
  };
}

interface Level {
  readonly image: string;
  readonly layer: string;
  readonly absolute: string;
  readonly depth: number;
  readonly keeper: Keeper;
}

interface Settings {
  readonly ctx: Pick<RunContext, 'fs'>;
  readonly nested: boolean;
  readonly maxDepth: number;
  readonly nestedMinBytes: number;
  readonly nestedStreamMinBytes: number;
  readonly tempDir: string;
  readonly budget: DiskBudget;
  readonly options: ImageEntriesOptions;
}

/**
 * The files of the image on `device`. The device is closed when the generator is done
 * (and every held entry released).
 */
export async function* imageEntries(ctx: Pick<RunContext, 'fs'>, device: BlockDevice, options: ImageEntriesOptions = {}): AsyncGenerator<ImageEntry, void, undefined> {
  const name = options.name ?? device.name;
  const keeper = new Keeper();
  keeper.onClose(() => device.close());
  const set: Settings = {
    ctx,
    nested: options.nested ?? true,
    maxDepth: options.maxDepth ?? 4,
    nestedMinBytes: options.nestedMinBytes ?? 4096,
    nestedStreamMinBytes: options.nestedStreamMinBytes ?? 2 ** 20,
    tempDir: options.tempDir ?? os.tmpdir(),
    budget: new DiskBudget(options.spoolBudget),
    options,
  };
  const absolute = options.path ? path.resolve(options.path) : name;
  try {
    yield* readLayer(device, { image: name, layer: '', absolute, depth: 0, keeper }, set, options.path);
  } finally {
    await keeper.release();
  }
}

async function* readLayer(device: BlockDevice, level: Level, set: Settings, filePath?: string, wrappers = 0): AsyncGenerator<ImageEntry, void, undefined> {
  const kind = await detectImage(device);
  const report = (format: string, info: Record<string, unknown>) => set.options.onLayer?.({ layer: level.layer, format, size: device.size, info });
  switch (kind) {
    case 'qcow2': {
      if (wrappers > 4) throw new ImageError(device.name, 'qcow2', 'qcow2 nested in itself too deeply');
      const disk = await openQcow2(set.ctx, device, filePath !== undefined ? { path: filePath } : {});
      level.keeper.onClose(() => disk.close());
      report('qcow2', { ...disk.info });
      yield* readLayer(disk, level, set, undefined, wrappers + 1);
      return;
    }
    case 'compressed': {
      if (wrappers > 4) throw new ImageError(device.name, 'image', 'compressed too many times over');
      const head = await device.read(0, COMPRESSION_MAGIC_BYTES);
      const compression = detectCompression(head)!;
      const decoded = DECODERS[compression](deviceStream(device, [{ offset: 0, length: device.size }]), { name: device.name });
      const spooled = await spool(decoded, { name: `${device.name} (${compression}-decompressed)`, budget: set.budget, tempDir: set.tempDir, ...(set.options.signal ? { signal: set.options.signal } : {}) });
      level.keeper.onClose(() => spooled.close());
      report(compression, { compressedSize: device.size, size: spooled.size });
      yield* readLayer(spooled, level, set, undefined, wrappers + 1);
      return;
    }
    case 'iso9660': {
      const iso = await openIso9660(device, { ...set.options.iso9660, ...(set.options.limits ? { limits: set.options.limits } : {}) });
      const table = await readPartitions(device).catch(() => undefined);
      report('iso9660', { ...iso.info, ...(table ? { partitions: table } : {}) });
      yield* tree(iso.entries(), 'iso9660', level, set);
      return;
    }
    case 'squashfs': {
      const fs = await openSquashfs(device, set.options.limits ? { limits: set.options.limits } : {});
      report('squashfs', { ...fs.info });
      yield* tree(fs.entries(), 'squashfs', level, set);
      return;
    }
    case 'ext': {
      const fs = await openExt(device, set.options.limits ? { limits: set.options.limits } : {});
      report(fs.info.format, { ...fs.info });
      yield* tree(fs.entries(), fs.info.format, level, set);
      return;
    }
    case 'partitions': {
      const table = await readPartitions(device);
      if (!table) throw new ImageError(device.name, 'image', 'not an image this reader knows (ISO9660, squashfs, ext2/3/4, GPT/MBR disk, qcow2, or one of those compressed)', 0);
      report(table.format, { ...table });
      for (const { partition, device: part } of partitionDevices(device, table)) {
        const layer = level.layer ? `${level.layer}!p${partition.number}` : `p${partition.number}`;
        const child: Level = { image: level.image, layer, absolute: level.absolute, depth: level.depth + 1, keeper: new Keeper(level.keeper) };
        try {
          if (!(await detectImage(part))) {
            set.options.onLayer?.({ layer, format: 'unknown', size: part.size, info: { ...partition } });
            continue;
          }
          yield* readLayer(part, child, set);
        } catch (err) {
          if (!(err instanceof PermanentError)) throw err;
          yield errorEntry(child, '', err, 'partitions');
        } finally {
          await child.keeper.release();
        }
      }
      return;
    }
    default:
      throw new ImageError(device.name, 'image', 'not an image this reader knows (ISO9660, squashfs, ext2/3/4, GPT/MBR disk, qcow2, or one of those compressed)', 0);
  }
}

function entryOf(node: TreeNode, format: string, level: Level): ImageEntry {
  const p = level.layer ? `${level.layer}!${node.path}` : node.path;
  const error = node.error;
  const entry: ImageEntry = {
    path: p,
    absolutePath: `${level.absolute}!${p}`,
    type: node.type,
    size: node.size,
    mode: node.mode,
    mtime: node.mtime,
    ...(node.linkTarget !== undefined ? { linkTarget: node.linkTarget } : {}),
    image: level.image,
    layer: level.layer,
    innerPath: node.path,
    format,
    ...(node.uid !== undefined ? { uid: node.uid } : {}),
    ...(node.gid !== undefined ? { gid: node.gid } : {}),
    ...(node.nlink !== undefined ? { nlink: node.nlink } : {}),
    ...(node.inode !== undefined ? { inode: node.inode } : {}),
    ...(node.xattrs ? { xattrs: node.xattrs } : {}),
    ...(node.device && !error ? { device: node.device } : {}),
    ...(error ? { error } : {}),
    content: () => {
      if (error) throw error;
      if (!node.open) {
        throw new PermanentError(`${level.image}!${p}: a ${node.type} has no content to read`, { item: `${level.image}!${p}`, hint: "read content() of entries of type 'file' only" });
      }
      return node.open();
    },
  };
  keepers.set(entry, level.keeper);
  return entry;
}

function errorEntry(level: Level, p: string, error: PermanentError, format: string): ImageEntry {
  return entryOf({ path: p, type: 'file', size: 0, mode: 0, mtime: new Date(0), error }, format, level);
}

async function* tree(nodes: AsyncGenerator<TreeNode, void, undefined>, format: string, level: Level, set: Settings): AsyncGenerator<ImageEntry, void, undefined> {
  for await (const node of nodes) {
    set.options.signal?.throwIfAborted();
    const entry = entryOf(node, format, level);
    yield entry;
    if (!set.nested || node.type !== 'file' || node.error || !node.open || level.depth >= set.maxDepth) continue;
    if (node.size < (node.device ? set.nestedMinBytes : set.nestedStreamMinBytes)) continue;
    yield* nestedImage(node, entry, level, set);
  }
}

/** If `node` is an image, its layer's entries; otherwise nothing. */
async function* nestedImage(node: TreeNode, entry: ImageEntry, level: Level, set: Settings): AsyncGenerator<ImageEntry, void, undefined> {
  const layer = entry.path;
  const name = `${level.image}!${layer}`;
  const child: Level = { image: level.image, layer, absolute: level.absolute, depth: level.depth + 1, keeper: new Keeper(level.keeper) };
  try {
    let device: BlockDevice | undefined;
    if (node.device) {
      const slice = node.device();
      device = { name, size: slice.size, read: slice.read, close: slice.close };
      if (!(await looksLikeImage(await device.read(0, Math.min(device.size, 64 * 1024))))) return;
    } else {
      // look at the first bytes through the stream; spool only what is an image
      const reader = ByteReader.from(node.open!());
      const head = await reader.peek(64 * 1024).catch(() => undefined);
      if (!head || !(await looksLikeImage(head))) {
        await reader.cancel();
        return;
      }
      device = await spool(byteStream(reader), { name, budget: set.budget, tempDir: set.tempDir, expectedSize: node.size, ...(set.options.signal ? { signal: set.options.signal } : {}) });
      child.keeper.onClose(() => device!.close());
    }
    yield* readLayer(device, child, set);
  } catch (err) {
    if (!(err instanceof PermanentError) || set.options.signal?.aborted) throw err;
    yield errorEntry(child, '', err, 'image');
  } finally {
    await child.keeper.release();
  }
}

/** The magic numbers of `detectImage`, on the first bytes only (a compressed file is not taken for an image). */
async function looksLikeImage(head: Uint8Array): Promise<boolean> {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 4 && (b.readUInt32BE(0) === 0x514649fb || b.readUInt32LE(0) === 0x73717368)) return true;
  if (b.length >= 32774 && b.toString('latin1', 32769, 32774) === 'CD001') return true;
  if (b.length >= 1082 && b.readUInt16LE(1080) === 0xef53) return true;
  if (b.length >= 520 && b.toString('latin1', 512, 520) === 'EFI PART') return true;
  return false;
}
