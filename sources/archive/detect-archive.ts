/**
 * Whether (uncompressed) bytes start a tar or a zip, from the bytes themselves:
 *
 * - zip: a local file header `PK\x03\x04`, an empty archive's end record `PK\x05\x06`,
 *   or the spanning marker `PK\x07\x08`;
 * - tar: a first 512-byte header whose checksum (bytes 148–155) is right, and a name.
 *   That covers ustar, GNU and PAX tars (which also have `ustar` at byte 257) and the old
 *   V7 ones (which have no magic at all). An archive that starts with an empty block (an
 *   empty tar) is not recognised.
 *
 * Give it `TAR_HEADER_BYTES` bytes when there are that many.
 *
 * @example
 * ```ts
 * import { detectArchive, TAR_HEADER_BYTES } from './detect-archive.ts';
 *
 * detectArchive(await reader.peek(TAR_HEADER_BYTES)); // 'tar' | 'zip' | undefined
 * ```
 */
import type { ArchiveFormat } from './archive-entry.ts';

export const TAR_HEADER_BYTES = 512;

export function detectArchive(firstBytes: Uint8Array): ArchiveFormat | undefined {
  const b = firstBytes;
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && ((b[2] === 3 && b[3] === 4) || (b[2] === 5 && b[3] === 6) || (b[2] === 7 && b[3] === 8))) {
    return 'zip';
  }
  if (b.length >= TAR_HEADER_BYTES && b[0] !== 0 && tarChecksumMatches(b)) return 'tar';
  return undefined;
}

function tarChecksumMatches(header: Uint8Array): boolean {
  const field = Buffer.from(header.subarray(148, 156)).toString('latin1').replace(/[\0 ]+$/g, '').trim();
  if (!/^[0-7]{1,7}$/.test(field)) return false;
  const stored = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_HEADER_BYTES; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : header[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  // some old tars summed signed chars
  return stored === unsigned || stored === signed;
}
