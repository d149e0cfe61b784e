/**
 * zstd decoder: the reference C library (zstd 1.5.7, built from source by the
 * `zstd-napi` package on install) through its low-level `ZSTD_decompressStream` binding.
 *
 * Why: Node 20's zlib has no zstd. Measured on this project's machine (Node 20.20, 2
 * shared cores, 20 MB of log-like text, `zstd -3`, 5.7 MB compressed), draining the
 * output:
 *
 * | candidate                                     | MiB/s     | streams, bounded           |
 * | --------------------------------------------- | --------- | -------------------------- |
 * | `zstd -dc > /dev/null` 1.5.4 (baseline)       | 369       | yes                        |
 * | `zstd-napi` 0.0.13, `DCtx.decompressStream`   | 404       | yes (we choose each output buffer) |
 * | `zstd-napi` `DecompressStream` (Transform)    | 177       | yes                        |
 * | `fzstd` 0.1.1 (pure JS)                       | 51        | yes                        |
 * | `@mongodb-js/zstd` 7.0                        | –         | install fails: its install script downloads from GitHub |
 *
 * `zstd-napi`'s `DCtx` is ~8x `fzstd` and as fast as the `zstd` tool. Each call decodes
 * into an output buffer we give it, so memory is the frame's window (at most
 * 2^`maxWindowLog`, 128 MiB by default, as the `zstd` tool's default limit) plus one
 * input chunk and two output chunks of 256 KiB, whatever the ratio. The calls are
 * synchronous but short (one output chunk, well under a millisecond).
 *
 * Every frame is read (concatenated frames, skippable frames), and each frame's
 * checksum is verified when it has one (`zstd` writes one by default). End of input in
 * the middle of a frame is "truncated".
 *
 * @example
 * ```ts
 * import { unzstd } from './zstd.ts';
 *
 * const plain = unzstd(entry.content(), { name: entry.path });
 * ```
 */
import zstd from 'zstd-napi/binding.js';
import { ByteReader, type ByteInput } from './byte-reader.ts';
import { DecodeError } from './decode-error.ts';
import type { DecoderOptions } from './decoder.ts';

export const ZSTD_CHUNK_SIZE = 256 * 1024;
/** The largest window a frame may ask for by default: 2^27 = 128 MiB, the `zstd` tool's own default limit. */
export const ZSTD_DEFAULT_MAX_WINDOW_LOG = 27;

export interface ZstdOptions extends DecoderOptions {
  /** refuse frames whose window is larger than 2^maxWindowLog bytes (files made with `--long` need up to 31) */
  readonly maxWindowLog?: number;
}

const EMPTY = new Uint8Array(0);

export function unzstd(input: ByteInput, options: ZstdOptions = {}): ReadableStream<Uint8Array> {
  const what = options.name ?? 'zstd stream';
  const chunkSize = options.chunkSize ?? ZSTD_CHUNK_SIZE;
  const reader = ByteReader.from(input);
  let dctx: InstanceType<typeof zstd.DCtx> | undefined;
  let inBuf: Uint8Array = EMPTY;
  let inOff = 0;
  let inStart = 0;
  let eof = false;
  /** zstd's hint from the last call that moved bytes: 0 when a frame has just been completely decoded and flushed */
  let hint = 1;
  /** an error found after some output of the chunk: that output goes out first, then this */
  let failure: unknown;

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (failure !== undefined) throw failure;
        if (!dctx) {
          dctx = new zstd.DCtx();
          dctx.setParameter(zstd.DParameter.windowLogMax, options.maxWindowLog ?? ZSTD_DEFAULT_MAX_WINDOW_LOG);
        }
        const out = Buffer.allocUnsafe(chunkSize);
        let outOff = 0;
        let finished = false;
        try {
          while (outOff < chunkSize) {
            if (inOff >= inBuf.length && !eof) {
              const chunk = await reader.read();
              if (chunk) {
                inStart = reader.position - chunk.length;
                inBuf = chunk;
              } else {
                eof = true;
                inBuf = EMPTY;
              }
              inOff = 0;
            }
            let produced: number;
            let consumed: number;
            let callHint: number;
            try {
              [callHint, produced, consumed] = dctx.decompressStream(out.subarray(outOff), inBuf.subarray(inOff));
            } catch (err) {
              throw decodeError(err, what, inStart + inOff, options.maxWindowLog);
            }
            // a call that moved nothing (no input left) answers for the next frame; keep the
            // hint of the last call that did something
            if (produced > 0 || consumed > 0) hint = callHint;
            inOff += consumed;
            outOff += produced;
            if (eof && produced === 0 && consumed === 0) {
              // all input given and nothing more comes out: complete only at a frame's end
              if (hint !== 0 || inOff < inBuf.length) {
                throw new DecodeError('zstd', what, 'the stream ends too early (truncated)', { offset: reader.position });
              }
              finished = true;
              break;
            }
          }
        } catch (err) {
          await reader.cancel(err);
          // like `zstd -dc`: what was decoded before the problem was found goes out first
          if (outOff === 0) throw err;
          failure = err;
        }
        if (outOff > 0) controller.enqueue(out.subarray(0, outOff));
        if (finished) controller.close();
      },
      async cancel(reason) {
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 1 },
  );
}

function decodeError(err: unknown, what: string, offset: number, maxWindowLog: number | undefined): DecodeError {
  const message = err instanceof Error ? err.message : String(err);
  if (/too much memory|window/i.test(message)) {
    return new DecodeError('zstd', what, `${message} (the frame's window is larger than 2^${maxWindowLog ?? ZSTD_DEFAULT_MAX_WINDOW_LOG} bytes)`, {
      offset,
      hint: 'made with zstd --long? raise maxWindowLog (up to 31) if the file is trusted',
      cause: err,
    });
  }
  if (/checksum/i.test(message)) return new DecodeError('zstd', what, `checksum mismatch: ${message}`, { offset, cause: err });
  return new DecodeError('zstd', what, `corrupt data: ${message}`, { offset, cause: err });
}
