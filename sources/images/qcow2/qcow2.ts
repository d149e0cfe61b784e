/**
 * qcow2 (versions 2 and 3) as a random-access `BlockDevice` of its virtual disk: the
 * header, the L1 table, L2 tables (cached), standard clusters, zero clusters (v3),
 * compressed clusters (zlib/deflate, and zstd when the v3 header says so), and backing
 * files: unallocated clusters are read from the backing image (qcow2 or raw), opened
 * through the run's `ctx.fs`, so the `read` permission decides which backing files may
 * be opened. A backing file outside the allowed roots is an `ImageError` naming the
 * image and the header offset of the backing file name.
 *
 * Refused with a clear error: encryption, external data files, extended L2 entries
 * (subclusters), a chain of backing files deeper than 16 (or one that loops).
 *
 * @example
 * ```ts
 * const disk = await openQcow2(ctx, await FileDevice.open(ctx, 'vm.qcow2'), { path: 'vm.qcow2' });
 * const mbr = await disk.read(0, 512);
 * ```
 */
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import zstd from 'zstd-napi/binding.js';
import type { RunContext } from '../../../runtime/context.ts';
import { SluiceError } from '../../../runtime/errors.ts';
import { checkRange, FileDevice, type BlockDevice } from '../block-device.ts';
import { ImageError } from '../image-error.ts';

const inflateRaw = promisify(zlib.inflateRaw) as (buf: Uint8Array, options: zlib.ZlibOptions) => Promise<Buffer>;
export const QCOW2_MAGIC = 0x514649fb;
const MAX_BACKING_DEPTH = 16;
const OFFSET_MASK = 0x00fffffffffffe00n;

export interface Qcow2Info {
  readonly format: 'qcow2';
  readonly version: number;
  readonly clusterSize: number;
  readonly virtualSize: number;
  readonly compression: 'zlib' | 'zstd';
  readonly backingFile?: string;
  readonly backing?: Qcow2Info | { readonly format: 'raw'; readonly path: string };
  readonly dirty: boolean;
}

export interface Qcow2Device extends BlockDevice {
  readonly info: Qcow2Info;
}

export async function isQcow2(device: BlockDevice): Promise<boolean> {
  return device.size >= 72 && (await device.read(0, 4)).readUInt32BE(0) === QCOW2_MAGIC;
}

export interface Qcow2Options {
  /** the image file on disk (for a relative backing file name); unset for an image without a place on disk */
  readonly path?: string;
  /** backing chains already open (loop detection); internal */
  readonly chain?: readonly string[];
}

export async function openQcow2(ctx: Pick<RunContext, 'fs'>, file: BlockDevice, options: Qcow2Options = {}): Promise<Qcow2Device> {
  const name = file.name;
  const fail = (what: string, at?: number, extra: { hint?: string; cause?: unknown } = {}) => new ImageError(name, 'qcow2', what, at, extra);
  if (file.size < 72) throw fail(`${file.size} bytes is too small for a qcow2 header`, 0);
  const h = await file.read(0, Math.min(file.size, 112));
  if (h.readUInt32BE(0) !== QCOW2_MAGIC) throw fail('no qcow2 magic (QFI\\xfb)', 0);
  const version = h.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw fail(`qcow2 version ${version} is not supported (2 or 3)`, 4);
  const backingOffset = Number(h.readBigUInt64BE(8));
  const backingSize = h.readUInt32BE(16);
  const clusterBits = h.readUInt32BE(20);
  const virtualSize = Number(h.readBigUInt64BE(24));
  const crypt = h.readUInt32BE(32);
  const l1Size = h.readUInt32BE(36);
  const l1Offset = Number(h.readBigUInt64BE(40));
  if (clusterBits < 9 || clusterBits > 21) throw fail(`cluster bits ${clusterBits} out of range (9–21)`, 20);
  if (!Number.isSafeInteger(virtualSize) || virtualSize > 2 ** 52) throw fail(`virtual size ${virtualSize} is absurd`, 24);
  if (crypt !== 0) throw fail('encrypted qcow2 images are not supported', 32, { hint: 'decrypt it with qemu-img convert first' });
  const clusterSize = 2 ** clusterBits;
  const l2Entries = clusterSize / 8;
  const needL1 = Math.ceil(virtualSize / (clusterSize * l2Entries));
  if (l1Size < needL1) throw fail(`L1 table of ${l1Size} entries cannot map ${virtualSize} bytes (needs ${needL1})`, 36);
  if (l1Size * 8 > 32 * 2 ** 20) throw fail(`L1 table of ${l1Size} entries is absurd`, 36);
  let compression: 'zlib' | 'zstd' = 'zlib';
  let dirty = false;
  if (version === 3) {
    if (h.length < 104) throw fail('the v3 header is truncated', h.length);
    const incompatible = h.readBigUInt64BE(72);
    dirty = (incompatible & 1n) !== 0n;
    if (incompatible & 4n) throw fail('qcow2 with an external data file is not supported', 72);
    if (incompatible & 16n) throw fail('qcow2 with extended L2 entries (subclusters) is not supported', 72);
    if (incompatible & ~0x1fn) throw fail(`unknown incompatible features 0x${incompatible.toString(16)}`, 72);
    const headerLength = h.readUInt32BE(100);
    if (incompatible & 8n) {
      if (headerLength <= 104 || h.length <= 104) throw fail('compression type bit set but the header has no compression type', 104);
      const type = h[104]!;
      if (type === 1) compression = 'zstd';
      else if (type !== 0) throw fail(`unknown compression type ${type}`, 104);
    }
  }
  if (l1Offset % clusterSize !== 0 || l1Offset + l1Size * 8 > file.size) throw fail(`L1 table at ${l1Offset} lies outside the file or is misaligned`, 40);
  const l1 = await file.read(l1Offset, l1Size * 8);

  // backing file
  let backing: BlockDevice | undefined;
  let backingInfo: Qcow2Info['backing'];
  let backingFile: string | undefined;
  if (backingOffset !== 0) {
    if (backingSize === 0 || backingSize > 1023 || backingOffset + backingSize > file.size) throw fail(`backing file name (${backingSize} bytes at ${backingOffset}) is out of range`, 8);
    backingFile = (await file.read(backingOffset, backingSize)).toString('utf8');
    if (options.path === undefined) {
      throw fail(`needs its backing file ${JSON.stringify(backingFile)}, which cannot be found for an image that is not a file on disk`, backingOffset);
    }
    const resolved = path.resolve(path.dirname(options.path), backingFile);
    const chain = [...(options.chain ?? [path.resolve(options.path)])];
    if (chain.includes(resolved) || chain.length >= MAX_BACKING_DEPTH) {
      throw fail(`backing file chain loops or is deeper than ${MAX_BACKING_DEPTH} (${[...chain, resolved].join(' -> ')})`, backingOffset);
    }
    let raw: FileDevice;
    try {
      raw = await FileDevice.open(ctx, resolved, resolved);
    } catch (err) {
      const why = err instanceof SluiceError ? err.message : err instanceof Error ? err.message : String(err);
      throw fail(`cannot open its backing file ${JSON.stringify(backingFile)} (${resolved}): ${why}`, backingOffset, {
        cause: err,
        hint: err instanceof SluiceError && err.name === 'PermissionError' ? 'the backing file is outside the allowed read roots: allow it with --allow-read if it is trusted' : 'check that the backing file exists next to the image',
      });
    }
    try {
      if (await isQcow2(raw)) {
        const inner = await openQcow2(ctx, raw, { path: resolved, chain: [...chain, resolved] });
        backing = inner;
        backingInfo = inner.info;
      } else {
        backing = raw;
        backingInfo = { format: 'raw', path: resolved };
      }
    } catch (err) {
      await raw.close();
      throw err;
    }
  }

  const info: Qcow2Info = {
    format: 'qcow2',
    version,
    clusterSize,
    virtualSize,
    compression,
    dirty,
    ...(backingFile !== undefined ? { backingFile } : {}),
    ...(backingInfo ? { backing: backingInfo } : {}),
  };
  const l2Cache = new Map<number, Buffer>();
  const clusterCache = new Map<number, Buffer>();
  const compressedBits = BigInt(62 - (clusterBits - 8));
  const compressedOffsetMask = (1n << compressedBits) - 1n;
  let dctx: InstanceType<typeof zstd.DCtx> | undefined;

  const l2Table = async (index: number): Promise<Buffer | undefined> => {
    const entry = l1.readBigUInt64BE(index * 8) & OFFSET_MASK;
    if (entry === 0n) return undefined;
    const at = Number(entry);
    const hit = l2Cache.get(at);
    if (hit) return hit;
    if (at % clusterSize !== 0 || at + clusterSize > file.size) throw fail(`L1 entry ${index} points to an L2 table at ${at}, outside the file or misaligned`, l1Offset + index * 8);
    const table = await file.read(at, clusterSize);
    l2Cache.set(at, table);
    if (l2Cache.size > 64) l2Cache.delete(l2Cache.keys().next().value!);
    return table;
  };

  const decompressCluster = async (descriptor: bigint, where: number): Promise<Buffer> => {
    const offset = Number(descriptor & compressedOffsetMask);
    const sectors = Number((descriptor >> compressedBits) & ((1n << (62n - compressedBits)) - 1n)) + 1;
    const hit = clusterCache.get(offset);
    if (hit) return hit;
    const length = Math.min(sectors * 512 - (offset % 512), file.size - offset);
    if (offset >= file.size || length <= 0) throw fail(`compressed cluster at ${offset} lies past the end of the file`, where);
    const raw = await file.read(offset, length);
    let out: Buffer;
    try {
      if (compression === 'zlib') {
        out = await inflateRaw(raw, { maxOutputLength: clusterSize, finishFlush: zlib.constants.Z_SYNC_FLUSH });
      } else {
        dctx ??= new zstd.DCtx();
        const buf = Buffer.alloc(clusterSize);
        const frame = raw.subarray(0, zstd.findFrameCompressedSize(raw));
        out = buf.subarray(0, dctx.decompress(buf, frame));
      }
    } catch (err) {
      dctx = undefined;
      throw fail(`compressed cluster at ${offset} does not decompress (${compression}): ${(err as Error).message}`, where, { cause: err });
    }
    if (out.length !== clusterSize) {
      const full = Buffer.alloc(clusterSize);
      out.copy(full, 0, 0, Math.min(out.length, clusterSize));
      out = full;
    }
    clusterCache.set(offset, out);
    if (clusterCache.size > 16) clusterCache.delete(clusterCache.keys().next().value!);
    return out;
  };

  const device: Qcow2Device = {
    name,
    size: virtualSize,
    info,
    read: async (position, length) => {
      checkRange({ name, size: virtualSize }, 'qcow2', position, length);
      const out = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const pos = position + done;
        const cluster = Math.floor(pos / clusterSize);
        const within = pos % clusterSize;
        const n = Math.min(clusterSize - within, length - done);
        const l1Index = Math.floor(cluster / l2Entries);
        const table = await l2Table(l1Index);
        const entry = table ? table.readBigUInt64BE((cluster % l2Entries) * 8) : 0n;
        const where = Number(l1.readBigUInt64BE(l1Index * 8) & OFFSET_MASK) + (cluster % l2Entries) * 8;
        if (entry & (1n << 62n)) {
          const data = await decompressCluster(entry & ((1n << 62n) - 1n), where);
          data.copy(out, done, within, within + n);
        } else {
          const host = Number(entry & OFFSET_MASK);
          const zero = (entry & 1n) !== 0n;
          if (zero) {
            // reads as zeros (already)
          } else if (host !== 0) {
            if (host + clusterSize > file.size + clusterSize || host + within + n > file.size) throw fail(`cluster ${cluster} maps to ${host}, past the end of the file (truncated?)`, where);
            (await file.read(host + within, n)).copy(out, done);
          } else if (backing) {
            const avail = Math.max(0, Math.min(n, backing.size - pos));
            if (avail > 0) (await backing.read(pos, avail)).copy(out, done);
          }
        }
        done += n;
      }
      return out;
    },
    close: async () => {
      await backing?.close();
      await file.close();
    },
  };
  return device;
}
