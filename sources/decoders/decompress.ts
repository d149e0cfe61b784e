/**
 * Decompress a stream whatever its compression, found from its first bytes
 * (`detectCompression`): gzip, xz, zstd or bzip2. A stream in none of them comes back as
 * it is, with `compression: undefined`, so callers can take "maybe compressed" input.
 *
 * Nothing is read before the first bytes are needed, and the bytes looked at are not
 * lost: the returned stream starts at the first byte.
 *
 * @example
 * ```ts
 * import { decompress } from './decompress.ts';
 *
 * const { compression, stream } = await decompress(entry.content(), { name: entry.path });
 * ```
 */
import { ByteReader, type ByteInput } from './byte-reader.ts';
import { bunzip2 } from './bzip2.ts';
import type { Decoder, DecoderOptions } from './decoder.ts';
import { COMPRESSION_MAGIC_BYTES, detectCompression, type CompressionFormat } from './detect.ts';
import { gunzip } from './gzip.ts';
import { unxz } from './xz.ts';
import { unzstd } from './zstd.ts';

export const DECODERS: Readonly<Record<CompressionFormat, Decoder>> = {
  gzip: gunzip,
  xz: unxz,
  zstd: unzstd,
  bzip2: bunzip2,
};

export interface Decompressed {
  /** the compression found, or undefined when the input was not compressed */
  readonly compression: CompressionFormat | undefined;
  /** the decompressed bytes (or the input itself) as a web stream */
  readonly stream: ReadableStream<Uint8Array>;
}

export async function decompress(input: ByteInput, options: DecoderOptions = {}): Promise<Decompressed> {
  const reader = ByteReader.from(input);
  const compression = detectCompression(await reader.peek(COMPRESSION_MAGIC_BYTES));
  if (compression) return { compression, stream: DECODERS[compression](reader, options) };
  return { compression, stream: byteStream(reader) };
}

/** A web stream of what `reader` has left. */
export function byteStream(reader: ByteReader): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const chunk = await reader.read();
        if (chunk) controller.enqueue(chunk);
        else controller.close();
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}
