/**
 * xz decoder: liblzma (the library of the `xz` tool itself) through `node-liblzma`,
 * driven one `lzma_code()` call at a time so that memory stays bounded.
 *
 * Why this library. What was tried (Node 20.20, this project's machine, 2 shared cores):
 *
 * | candidate                      | SHA-256 check | BCJ (`--x86`) | multi-block / multi-stream | streaming | 100 MiB text, xz -6 (21 MiB) |
 * | ------------------------------ | ------------- | ------------- | -------------------------- | --------- | ---------------------------- |
 * | `xz -dc` 5.4.1 (baseline)      | yes           | yes           | yes                        | yes       | 40–60 MiB/s                  |
 * | `node-liblzma` 4.0.2 (liblzma 5.4.1) | yes     | yes           | yes                        | yes       | 31–53 MiB/s (0.8–0.9x)       |
 * | `lzma-native` 8.0.6 (bundled liblzma 5.2.3) | yes | yes         | yes                        | yes       | 25–34 MiB/s (0.57–0.62x)     |
 * | `@napi-rs/lzma` 1.5 (Rust)     | **no** ("Unsupported SHA-256 checksum") | **no** ("Unknown filter id 4") | yes | no (whole buffer) | – |
 * | `xz-decompress` 0.2.3 (wasm)   | **no** ("error code 6") | **no** (same) | yes                 | yes       | –                            |
 *
 * Every file was checked against the sha256 of the original: `xz --check=sha256`,
 * `xz --x86 --lzma2`, `xz -T2 --block-size=…` (15 blocks), two streams concatenated,
 * and a 0.5 MB x86 binary with BCJ in 200 KB blocks. `node-liblzma` is the fastest
 * correct one and is maintained (2026 releases); version 4.0.2 is the last that supports
 * Node 20 (5.x needs Node 22). On install npm builds it against the system liblzma
 * (`liblzma-dev`, on the machine image), with its own prebuilt binary as fallback.
 *
 * Why not its `Unxz` Transform: it pushes all the output of one input chunk without
 * waiting for the reader (an xz bomb turns 64 KiB of input into hundreds of MB at once),
 * and it ends without an error on a truncated file (measured). So this decoder uses the
 * same native `LZMA` handle (`Unxz#lzma`, typed `NativeLZMA` by the package) directly: each
 * pull fills one output chunk of `chunkSize` (256 KiB) with asynchronous `code()` calls
 * (off the main thread), feeding input only when liblzma wants more. Memory is the
 * dictionary (what the file asks for: 8 MiB at `-6`, 64 MiB at `-9`) plus one input
 * chunk plus two output chunks, whatever the ratio.
 *
 * Integrity: liblzma verifies each block's check (CRC32, CRC64, SHA-256); a mismatch is
 * "compressed data is corrupt". End of input before the end of the last stream is
 * "truncated". Data after the last stream that is not another stream (or stream
 * padding) is an error too, as for `xz -d`. As with `xz -dc`, what was decoded before the
 * problem was found is passed on, then the stream errors: a block is verified at its end,
 * and holding a whole block back (one block is the whole file, for single-threaded xz)
 * would not be bounded.
 *
 * @example
 * ```ts
 * import { unxz } from './xz.ts';
 *
 * const packages = unxz(ctx.fs.createReadStream('debian/Packages.xz'), { name: 'Packages.xz' });
 * ```
 */
import {
  createUnxz,
  LZMA_BUF_ERROR,
  LZMA_DATA_ERROR,
  LZMA_FINISH,
  LZMA_FORMAT_ERROR,
  LZMA_MEM_ERROR,
  LZMA_MEMLIMIT_ERROR,
  LZMA_OK,
  LZMA_OPTIONS_ERROR,
  LZMA_RUN,
  LZMA_STREAM_END,
  type NativeLZMA,
} from 'node-liblzma';
import { FatalError } from '../../runtime/errors.ts';
import { ByteReader, type ByteInput } from './byte-reader.ts';
import { DecodeError } from './decode-error.ts';
import { asBuffer, type DecoderOptions } from './decoder.ts';

export const XZ_CHUNK_SIZE = 256 * 1024;

export function unxz(input: ByteInput, options: DecoderOptions = {}): ReadableStream<Uint8Array> {
  const what = options.name ?? 'xz stream';
  const chunkSize = options.chunkSize ?? XZ_CHUNK_SIZE;
  const reader = ByteReader.from(input);
  let native: NativeLZMA | undefined;
  let inBuf: Buffer | null = null;
  let inOff = 0;
  /** offset in the input of inBuf[0] */
  let inStart = 0;
  let eof = false;
  /** an error found after some output of the chunk: that output goes out first, then this */
  let failure: unknown;

  const close = () => {
    native?.close();
    native = undefined;
  };

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (failure !== undefined) throw failure;
        native ??= openDecoder();
        const out = Buffer.allocUnsafe(chunkSize);
        let outOff = 0;
        let finished = false;
        try {
          while (outOff < chunkSize) {
            if ((inBuf === null || inOff >= inBuf.length) && !eof) {
              const chunk = await reader.read();
              if (chunk) {
                inStart = reader.position - chunk.length;
                inBuf = asBuffer(chunk);
              } else {
                eof = true;
                inBuf = null;
              }
              inOff = 0;
            }
            const availIn = inBuf ? inBuf.length - inOff : 0;
            const [ret, availInAfter, availOutAfter] = await code(native, eof ? LZMA_FINISH : LZMA_RUN, inBuf, inOff, availIn, out, outOff);
            const used = availIn - availInAfter;
            const produced = chunkSize - outOff - availOutAfter;
            inOff += used;
            outOff += produced;
            if (ret === LZMA_STREAM_END) {
              finished = true;
              break;
            }
            if (ret !== LZMA_OK && !(ret === LZMA_BUF_ERROR && !eof)) {
              throw decodeError(ret, what, inStart + inOff, eof);
            }
            if (eof && used === 0 && produced === 0) {
              throw new DecodeError('xz', what, 'the stream ends too early (truncated)', { offset: reader.position });
            }
          }
        } catch (err) {
          close();
          await reader.cancel(err);
          // like `xz -dc`: what was decoded before the problem was found goes out first
          if (outOff === 0) throw err;
          failure = err;
        }
        if (outOff > 0) controller.enqueue(out.subarray(0, outOff));
        if (finished) {
          close();
          controller.close();
        }
      },
      async cancel(reason) {
        close();
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 1 },
  );
}

function openDecoder(): NativeLZMA {
  const handle = (createUnxz() as unknown as { lzma?: NativeLZMA }).lzma;
  if (!handle || typeof handle.code !== 'function') {
    throw new FatalError('node-liblzma has no native LZMA handle on Unxz#lzma', {
      hint: 'the xz decoder was written for node-liblzma 4.0.2; install that version (package.json pins it)',
    });
  }
  return handle;
}

/** One asynchronous `lzma_code()` call; resolves with [ret, availInAfter, availOutAfter]. */
function code(native: NativeLZMA, action: number, inBuf: Buffer | null, inOff: number, availIn: number, out: Buffer, outOff: number): Promise<[number, number, number]> {
  return new Promise((resolve, reject) => {
    try {
      native.code(action, inBuf, inOff, availIn, out, outOff, (ret, availInAfter, availOutAfter) => {
        // resolve, and continue in a later microtask: the binding is not done with the
        // call until this callback returns
        resolve([ret, availInAfter, availOutAfter]);
        return false;
      });
    } catch (err) {
      reject(err);
    }
  });
}

function decodeError(ret: number, what: string, offset: number, eof: boolean): DecodeError {
  switch (ret) {
    case LZMA_DATA_ERROR:
      return new DecodeError('xz', what, 'compressed data is corrupt', { offset });
    case LZMA_FORMAT_ERROR:
      return new DecodeError('xz', what, 'not in the xz format', { offset, hint: 'check the file type; only .xz (not .lzma) is read here' });
    case LZMA_OPTIONS_ERROR:
      return new DecodeError('xz', what, 'uses options (a filter or check) that liblzma does not support', { offset });
    case LZMA_MEM_ERROR:
    case LZMA_MEMLIMIT_ERROR:
      return new DecodeError('xz', what, 'needs more memory than can be allocated (a very large dictionary)', { offset });
    case LZMA_BUF_ERROR:
      if (eof) return new DecodeError('xz', what, 'the stream ends too early (truncated)', { offset });
  }
  return new DecodeError('xz', what, `liblzma error ${ret}`, { offset });
}
