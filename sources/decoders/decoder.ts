/**
 * The contract every decoder in this folder follows:
 *
 * - it takes the compressed bytes as a web `ReadableStream<Uint8Array>` or any
 *   `AsyncIterable<Uint8Array>` and returns the decompressed bytes as a
 *   `ReadableStream<Uint8Array>`;
 * - it streams: it reads its input only when its output is pulled, keeps at most one
 *   output chunk ready ahead of the reader, and never holds the whole input or output
 *   (each file's comment says how much it holds at most);
 * - it reads every concatenated stream / member / frame, as the format's own tool does;
 * - bad input makes the output stream error with a `DecodeError` (a `PermanentError`)
 *   naming the format, `options.name` and the offset in the compressed input;
 * - cancelling the output cancels the input.
 *
 * @example
 * ```ts
 * import { unxz } from './xz.ts';
 *
 * const text = unxz(entry.content(), { name: entry.path }).pipeThrough(new TextDecoderStream());
 * ```
 */
import type { ByteInput } from './byte-reader.ts';

export interface DecoderOptions {
  /** what is being decoded, for error messages (a path, a URL, `outer.tar!inner.xz`) */
  readonly name?: string;
  /** bytes per output chunk (each decoder has its own default, 128–256 KiB) */
  readonly chunkSize?: number;
}

export type Decoder = (input: ByteInput, options?: DecoderOptions) => ReadableStream<Uint8Array>;

/** A Node `Buffer` over the same memory as `chunk` (no copy), for native bindings that want one. */
export function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}
