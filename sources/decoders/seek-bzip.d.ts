/**
 * Types for the part of `seek-bzip` 2.x that `bzip2.ts` drives: the `Bunzip` decoder
 * object and its block-at-a-time methods (the package ships no types). The underscore
 * methods are the package's own block loop (`Bunzip.decode` calls them the same way).
 */
declare module 'seek-bzip' {
  namespace Bunzip {
    interface InputStream {
      /** the next byte (0–255) */
      readByte(): number;
      /** fill `buffer[offset … offset+length)`; returns the count read */
      read(buffer: Uint8Array, offset: number, length: number): number;
    }
    interface OutputStream {
      writeByte(byte: number): void;
    }
    interface BitReader {
      read(bits: number): number;
    }
    interface DecodeFailure extends TypeError {
      errorCode: number;
    }
  }
  class Bunzip {
    /** reads the stream header (`BZh1`–`BZh9`) from `input` */
    constructor(input: Bunzip.InputStream, output: Bunzip.OutputStream);
    reader: Bunzip.BitReader;
    /** the combined CRC of the blocks so far, compared with the stream's at its end */
    streamCRC: number;
    /** block size in bytes (100000 × the level digit) */
    dbufSize: number;
    /** reads and Huffman-decodes the next block; false at the end-of-stream marker */
    _init_block(): boolean;
    /** undoes the BWT of the current block, writes it out, checks its CRC */
    _read_bunzip(): number;
    /** starts the next concatenated stream (reads its header) */
    _start_bunzip(input: Bunzip.InputStream, output: Bunzip.OutputStream): void;
    static Err: Record<'OK' | 'LAST_BLOCK' | 'NOT_BZIP_DATA' | 'UNEXPECTED_INPUT_EOF' | 'UNEXPECTED_OUTPUT_EOF' | 'DATA_ERROR' | 'OUT_OF_MEMORY' | 'OBSOLETE_INPUT' | 'END_OF_BLOCK', number>;
  }
  export = Bunzip;
}
