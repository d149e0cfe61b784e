/**
 * Decompressing one squashfs block (a data block, a fragment block or an 8 KiB metadata
 * block), with the decoders the rest of sluice uses:
 *
 * | id | squashfs   | decoded with                                                    |
 * | -- | ---------- | --------------------------------------------------------------- |
 * | 1  | gzip       | `node:zlib` inflate (zlib format), off the main thread          |
 * | 4  | xz         | liblzma through `node-liblzma` (as `sources/decoders/xz.ts`): every filter liblzma has, BCJ (x86, ARM, PowerPC, IA-64, SPARC, ARM-Thumb) included, off the main thread |
 * | 6  | zstd       | the zstd library through `zstd-napi`                             |
 * | 2  | lzma (legacy) | unsupported: an `ImageError` saying so                       |
 * | 5  | lz4        | `lz4-napi` (lz4_flex through napi-rs, maintained, prebuilt binaries from npm): raw LZ4 blocks, off the main thread; the size given to it is the block's limit, and it refuses more output |
 * | 3  | lzo        | unsupported: the npm `lzo` binding is an old node-gyp addon (0.4.x) with no bounded block API |
 *
 * Every block has a known largest size (the block size, or 8 KiB for metadata): more
 * output than that is corruption (or a bomb), an `ImageError`, and the decoder never
 * produces more than that limit plus one byte.
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { createUnxz, LZMA_FINISH, LZMA_STREAM_END, type NativeLZMA } from 'node-liblzma';
import lz4 from 'lz4-napi';
import zstd from 'zstd-napi/binding.js';
import { ImageError } from '../image-error.ts';

const inflate = promisify(zlib.inflate) as (buf: Uint8Array, options: zlib.ZlibOptions) => Promise<Buffer>;

export const COMPRESSION_NAMES: Readonly<Record<number, string>> = { 1: 'gzip', 2: 'lzma', 3: 'lzo', 4: 'xz', 5: 'lz4', 6: 'zstd' };

/** Decompress `input` (one block) into at most `limit` bytes. `where` is the block's offset in the image, for errors. */
export type BlockDecompressor = (input: Buffer, limit: number, where: number) => Promise<Buffer>;

export function blockDecompressor(id: number, image: string): BlockDecompressor {
  const fail = (what: string, where: number, cause?: unknown) => new ImageError(image, 'squashfs', what, where, cause === undefined ? {} : { cause });
  switch (id) {
    case 1:
      return async (input, limit, where) => {
        try {
          return await inflate(input, { maxOutputLength: limit });
        } catch (err) {
          throw fail(`gzip block does not decompress: ${(err as Error).message}`, where, err);
        }
      };
    case 4:
      return async (input, limit, where) => {
        const native = (createUnxz() as unknown as { lzma?: NativeLZMA }).lzma;
        if (!native) throw fail('node-liblzma has no native LZMA handle', where);
        const out = Buffer.allocUnsafe(limit + 1);
        try {
          const [ret, , availOut] = await new Promise<[number, number, number]>((resolve, reject) => {
            try {
              native.code(LZMA_FINISH, input, 0, input.length, out, 0, (r, ai, ao) => {
                resolve([r, ai, ao]);
                return false;
              });
            } catch (err) {
              reject(err);
            }
          });
          const produced = out.length - availOut;
          if (ret !== LZMA_STREAM_END) {
            throw fail(produced > limit ? `xz block decompresses to more than ${limit} bytes` : `xz block does not decompress (liblzma error ${ret})`, where);
          }
          return out.subarray(0, produced);
        } finally {
          native.close();
        }
      };
    case 5:
      return async (input, limit, where) => {
        // lz4-napi's uncompress takes a block with its size in front (lz4_flex's
        // decompress_size_prepended); squashfs stores bare blocks: put the limit there
        const framed = Buffer.allocUnsafe(input.length + 4);
        framed.writeUInt32LE(limit, 0);
        input.copy(framed, 4);
        try {
          return await lz4.uncompress(framed);
        } catch (err) {
          throw fail(`lz4 block does not decompress into ${limit} bytes: ${(err as Error).message}`, where, err);
        }
      };
    case 6: {
      let dctx: InstanceType<typeof zstd.DCtx> | undefined;
      return async (input, limit, where) => {
        dctx ??= new zstd.DCtx();
        const out = Buffer.allocUnsafe(limit);
        try {
          const n = dctx.decompress(out, input);
          return out.subarray(0, n);
        } catch (err) {
          dctx = undefined;
          throw fail(`zstd block does not decompress into ${limit} bytes: ${(err as Error).message}`, where, err);
        }
      };
    }
    default: {
      const name = COMPRESSION_NAMES[id];
      return async (_input, _limit, where) => {
        throw fail(
          name ? `${name} compression is not supported by this reader (supported: gzip, xz, zstd, lz4)` : `unknown compression id ${id}`,
          where,
        );
      };
    }
  }
}
