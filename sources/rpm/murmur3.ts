/**
 * MurmurHash3_x86_32 (Austin Appleby's public-domain reference, `MurmurHash3.cpp`):
 * the hash ClickHouse calls `murmurHash3_32` and Python's `mmh3.hash(data,
 * signed=False)` computes. ALT's database uses it for the low half of a package's id
 * (see `pkgHash` in `package.ts`). Written here because it is twenty lines, and the
 * popular npm packages (`imurmurhash`, `murmurhash3js`, `murmurhash-js`) hash the char
 * codes of JS strings, where we need bytes.
 *
 * @example
 * ```ts
 * import { murmurHash3_32 } from './murmur3.ts';
 *
 * murmurHash3_32(Buffer.from('hello')); // 613153351, like SELECT murmurHash3_32('hello')
 * ```
 */
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** The 32-bit hash of `data` with `seed` (default 0), as an unsigned number. */
export function murmurHash3_32(data: Uint8Array, seed = 0): number {
  const length = data.length;
  const blocks = length & ~3;
  let h = seed >>> 0;
  for (let i = 0; i < blocks; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = length & 3;
  if (tail > 0) {
    let k = 0;
    if (tail === 3) k ^= data[blocks + 2]! << 16;
    if (tail >= 2) k ^= data[blocks + 1]! << 8;
    k ^= data[blocks]!;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
