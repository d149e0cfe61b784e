export { ByteReader, type ByteInput } from './byte-reader.ts';
export { bunzip2 } from './bzip2.ts';
export { DecodeError, type CompressionFormat } from './decode-error.ts';
export type { Decoder, DecoderOptions } from './decoder.ts';
export { byteStream, decompress, DECODERS, type Decompressed } from './decompress.ts';
export { COMPRESSION_MAGIC_BYTES, detectCompression } from './detect.ts';
export { gunzip } from './gzip.ts';
export { unxz } from './xz.ts';
export { unzstd, type ZstdOptions } from './zstd.ts';
