/**
 * The values of a Berkeley DB Hash database (the format of rpm's `Packages` before
 * rpm 4.16, which ALT images carry), read page by page through a `BlockDevice`:
 * the meta page (magic 0x061561, page size, last page), hash pages (type 13, or 2 in
 * old files) with their key/data item pairs, data stored on the page (H_KEYDATA) or in
 * a chain of overflow pages (H_OFFPAGE → P_OVERFLOW pages).
 *
 * Compared with `@snyk/rpm-parser`'s reader (which needs the whole file in a Buffer):
 * this one reads on demand, also takes values stored on the page, bounds every chain
 * (no loops, no page past the file, a value no longer than it says and at most
 * `maxValue`), and checks the byte order (both little- and big-endian files).
 * Duplicate sets (H_DUPLICATE/H_OFFDUP, which rpm never writes in Packages) are skipped.
 *
 * @example
 * ```ts
 * for await (const { key, value } of bdbHashValues(device)) console.log(key.length, value.length);
 * ```
 */
import type { BlockDevice } from '../images/block-device.ts';
import { ImageError } from '../images/image-error.ts';

const HASH_MAGIC = 0x061561;
const P_HASH_UNSORTED = 2;
const P_OVERFLOW = 7;
const P_HASH = 13;
const H_KEYDATA = 1;
const H_OFFPAGE = 3;
const PAGE_HEADER = 26;

export async function isBdbHash(device: BlockDevice): Promise<boolean> {
  if (device.size < 512) return false;
  const b = await device.read(12, 4);
  return b.readUInt32LE(0) === HASH_MAGIC || b.readUInt32BE(0) === HASH_MAGIC;
}

export async function* bdbHashValues(device: BlockDevice, options: { maxValue?: number } = {}): AsyncGenerator<{ key: Buffer; value: Buffer }, void, undefined> {
  const fail = (what: string, at?: number) => new ImageError(device.name, 'berkeley-db', what, at);
  if (device.size < 512) throw fail('too small for a Berkeley DB file', 0);
  const meta = await device.read(0, 512);
  const le = meta.readUInt32LE(12) === HASH_MAGIC;
  if (!le && meta.readUInt32BE(12) !== HASH_MAGIC) throw fail('not a Berkeley DB hash database (magic 061561)', 12);
  const u32 = (b: Buffer, at: number) => (le ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const u16 = (b: Buffer, at: number) => (le ? b.readUInt16LE(at) : b.readUInt16BE(at));
  const pageSize = u32(meta, 20);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw fail(`page size ${pageSize} is out of range`, 20);
  if (meta[24] !== 0) throw fail('encrypted databases are not supported', 24);
  const lastPage = u32(meta, 32);
  const pages = Math.floor(device.size / pageSize);
  if (lastPage >= pages) throw fail(`the meta page says there are ${lastPage + 1} pages, the file holds ${pages} (truncated?)`, 32);
  const maxValue = options.maxValue ?? 256 * 2 ** 20;

  const page = async (n: number) => {
    if (n < 1 || n > lastPage) throw fail(`page ${n} is out of range (1–${lastPage})`);
    return device.read(n * pageSize, pageSize);
  };

  const overflow = async (first: number, length: number, at: number): Promise<Buffer> => {
    if (length > maxValue) throw fail(`a value of ${length} bytes is larger than allowed (${maxValue})`, at);
    const out = Buffer.alloc(length);
    let have = 0;
    let next = first;
    const seen = new Set<number>();
    while (have < length) {
      if (next === 0 || seen.has(next)) throw fail(`overflow chain ends early or loops (${have} of ${length} bytes)`, at);
      seen.add(next);
      const p = await page(next);
      if (p[25] !== P_OVERFLOW) throw fail(`page ${next} in an overflow chain is of type ${p[25]}, not overflow`, next * pageSize + 25);
      const onPage = u16(p, 22); // for overflow pages, hf_offset is the number of bytes on the page
      if (onPage > pageSize - PAGE_HEADER) throw fail(`overflow page ${next} claims ${onPage} bytes`, next * pageSize + 22);
      const take = Math.min(onPage, length - have);
      p.copy(out, have, PAGE_HEADER, PAGE_HEADER + take);
      have += take;
      next = u32(p, 16);
    }
    return out;
  };

  const item = async (p: Buffer, n: number, i: number, end: number): Promise<Buffer | undefined> => {
    const start = u16(p, PAGE_HEADER + i * 2);
    const at = n * pageSize + start;
    if (start < PAGE_HEADER || start >= end || end > pageSize) throw fail(`hash page ${n}: item ${i} lies outside its page`, at);
    const type = p[start]!;
    if (type === H_KEYDATA) return Buffer.from(p.subarray(start + 1, end));
    if (type === H_OFFPAGE) {
      if (start + 12 > pageSize) throw fail(`hash page ${n}: off-page item ${i} runs past its page`, at);
      return overflow(u32(p, start + 4), u32(p, start + 8), at);
    }
    return undefined; // duplicates: not written by rpm
  };

  for (let n = 1; n <= lastPage; n++) {
    const p = await page(n);
    const type = p[25];
    if (type !== P_HASH && type !== P_HASH_UNSORTED) continue;
    const entries = u16(p, 20);
    if (PAGE_HEADER + entries * 2 > pageSize) throw fail(`hash page ${n} claims ${entries} items`, n * pageSize + 20);
    // items are stored from the end of the page down: item i ends where item i-1 starts
    let end = pageSize;
    for (let i = 0; i + 1 < entries; i += 2) {
      const keyStart = u16(p, PAGE_HEADER + i * 2);
      const key = await item(p, n, i, end);
      const valueStart = u16(p, PAGE_HEADER + (i + 1) * 2);
      const value = await item(p, n, i + 1, keyStart);
      end = valueStart;
      if (key && value) yield { key, value };
    }
  }
}
