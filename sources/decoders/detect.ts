/**
 * Which compression a stream uses, from its first bytes (never from a file name):
 *
 * | format | magic                                    |
 * | ------ | ---------------------------------------- |
 * | gzip   | `1f 8b`                                  |
 * | xz     | `fd 37 7a 58 5a 00`                      |
 * | zstd   | `28 b5 2f fd`, or a skippable frame `5? 2a 4d 18` first (as pzstd writes) |
 * | bzip2  | `42 5a 68` (`BZh`) followed by a block size digit `1`–`9` |
 *
 * Give it at least `COMPRESSION_MAGIC_BYTES` bytes when the stream has them; with fewer
 * a format whose magic does not fit is not recognised.
 *
 * @example
 * ```ts
 * import { detectCompression, COMPRESSION_MAGIC_BYTES } from './detect.ts';
 *
 * const head = await reader.peek(COMPRESSION_MAGIC_BYTES);
 * detectCompression(head); // 'xz' | 'gzip' | 'zstd' | 'bzip2' | undefined
 * ```
 */
import type { CompressionFormat } from './decode-error.ts';

export type { CompressionFormat } from './decode-error.ts';

/** How many leading bytes `detectCompression` looks at. */
export const COMPRESSION_MAGIC_BYTES = 6;

export function detectCompression(firstBytes: Uint8Array): CompressionFormat | undefined {
  const b = firstBytes;
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
  if (b.length >= 6 && b[0] === 0xfd && b[1] === 0x37 && b[2] === 0x7a && b[3] === 0x58 && b[4] === 0x5a && b[5] === 0x00) return 'xz';
  if (b.length >= 4 && b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) return 'zstd';
  // skippable frame 0x184D2A50..0x184D2A5F (little-endian)
  if (b.length >= 4 && (b[0]! & 0xf0) === 0x50 && b[1] === 0x2a && b[2] === 0x4d && b[3] === 0x18) return 'zstd';
  if (b.length >= 4 && b[0] === 0x42 && b[1] === 0x5a && b[2] === 0x68 && b[3]! >= 0x31 && b[3]! <= 0x39) return 'bzip2';
  return undefined;
}
