/**
 * Just enough of the SQLite file format to read the rows of one table: the header,
 * `sqlite_schema` (page 1) to find the table's root page, the table B-tree (interior
 * and leaf pages), records with their serial types, and overflow page chains. Used for
 * rpm's `rpmdb.sqlite` (`Packages(hnum INTEGER PRIMARY KEY, blob BLOB)`).
 *
 * Why ours rather than sql.js (what `@snyk/rpm-parser` uses): sql.js loads the whole
 * database into WebAssembly memory (rpmdbs are tens of MB, and this one sits inside a
 * squashfs inside an ISO); this reads pages on demand through a `BlockDevice`, with
 * every page number, cell offset and payload length checked, and no dependency.
 *
 * Limits: a WAL file beside the database is not applied (rpm checkpoints on close;
 * an image holds a closed database). Pages in a loop, cells out of their page, a
 * payload longer than `maxPayload` (default 256 MiB): an `ImageError` naming the file
 * and the offset.
 *
 * @example
 * ```ts
 * for await (const row of sqliteRows(device, 'Packages')) console.log(row.rowid, row.values[1]);
 * ```
 */
import type { BlockDevice } from '../images/block-device.ts';
import { ImageError } from '../images/image-error.ts';

export type SqliteValue = null | number | bigint | string | Buffer;

export interface SqliteRow {
  readonly rowid: bigint;
  readonly values: SqliteValue[];
}

const MAGIC = 'SQLite format 3\0';

export async function isSqlite(device: BlockDevice): Promise<boolean> {
  return device.size >= 100 && (await device.read(0, 16)).toString('latin1') === MAGIC;
}

export async function* sqliteRows(device: BlockDevice, table: string, options: { maxPayload?: number } = {}): AsyncGenerator<SqliteRow, void, undefined> {
  const fail = (what: string, at?: number) => new ImageError(device.name, 'sqlite', what, at);
  if (!(await isSqlite(device))) throw fail('not an SQLite 3 database (no "SQLite format 3" header)', 0);
  const header = await device.read(0, 100);
  let pageSize = header.readUInt16BE(16);
  if (pageSize === 1) pageSize = 65536;
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw fail(`page size ${pageSize} is not a power of two from 512 to 65536`, 16);
  const reserved = header[20]!;
  const usable = pageSize - reserved;
  if (usable < 480) throw fail(`usable page size ${usable} is too small`, 20);
  if (header.readUInt32BE(44) > 4) throw fail(`schema format ${header.readUInt32BE(44)} is not supported`, 44);
  const pages = Math.floor(device.size / pageSize);
  const maxPayload = options.maxPayload ?? 256 * 2 ** 20;

  const page = async (n: number): Promise<Buffer> => {
    if (n < 1 || n > pages) throw fail(`page ${n} is out of range (1–${pages}; truncated?)`, (n - 1) * pageSize);
    return device.read((n - 1) * pageSize, pageSize);
  };

  const payloadOf = async (buf: Buffer, pos: number, pageAt: number): Promise<{ payload: Buffer; rowid: bigint }> => {
    const [length, a] = varint(buf, pos, fail, pageAt);
    const [rowid, b] = varint(buf, a, fail, pageAt);
    if (length > BigInt(maxPayload)) throw fail(`a record of ${length} bytes is larger than allowed (${maxPayload})`, pageAt + pos);
    const p = Number(length);
    // how much is on this page (sqlite's formula for table leaves)
    const x = usable - 35;
    let local = p;
    if (p > x) {
      const m = Math.floor(((usable - 12) * 32) / 255) - 23;
      const k = m + ((p - m) % (usable - 4));
      local = k <= x ? k : m;
    }
    if (b + local > buf.length) throw fail('a record runs past its page', pageAt + b);
    const parts: Buffer[] = [buf.subarray(b, b + local)];
    let have = local;
    if (have < p) {
      if (b + local + 4 > buf.length) throw fail('overflow pointer runs past its page', pageAt + b + local);
      let next = buf.readUInt32BE(b + local);
      const seen = new Set<number>();
      while (have < p) {
        if (next === 0 || seen.has(next)) throw fail('overflow chain ends early or loops', pageAt + b + local);
        seen.add(next);
        const o = await page(next);
        const take = Math.min(p - have, usable - 4);
        parts.push(o.subarray(4, 4 + take));
        have += take;
        next = o.readUInt32BE(0);
      }
    }
    return { payload: Buffer.concat(parts), rowid };
  };

  async function* walk(root: number): AsyncGenerator<SqliteRow, void, undefined> {
    const stack = [root];
    const seen = new Set<number>();
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (seen.has(n)) throw fail(`B-tree page ${n} is reached twice (a loop)`, (n - 1) * pageSize);
      seen.add(n);
      const buf = await page(n);
      const base = n === 1 ? 100 : 0;
      const at = (n - 1) * pageSize;
      const kind = buf[base]!;
      const cells = buf.readUInt16BE(base + 3);
      const headerSize = kind === 0x05 || kind === 0x02 ? 12 : 8;
      if (base + headerSize + cells * 2 > usable) throw fail(`page ${n} claims ${cells} cells, more than fit`, at + base + 3);
      const pointer = (i: number) => {
        const p = buf.readUInt16BE(base + headerSize + i * 2);
        if (p < base + headerSize || p >= usable) throw fail(`page ${n}: cell ${i} points outside its page`, at + base + headerSize + i * 2);
        return p;
      };
      if (kind === 0x05) {
        // interior table page: left children in key order, then the right-most one
        const children: number[] = [];
        for (let i = 0; i < cells; i++) children.push(buf.readUInt32BE(pointer(i)));
        children.push(buf.readUInt32BE(base + 8));
        for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]!);
      } else if (kind === 0x0d) {
        for (let i = 0; i < cells; i++) {
          const { payload, rowid } = await payloadOf(buf, pointer(i), at);
          yield { rowid, values: record(payload, fail, at) };
        }
      } else {
        throw fail(`page ${n} has type ${kind}, not a table B-tree page`, at + base);
      }
    }
  }

  // sqlite_schema: type, name, tbl_name, rootpage, sql
  let root: number | undefined;
  for await (const row of walk(1)) {
    if (row.values[0] === 'table' && typeof row.values[1] === 'string' && row.values[1].toLowerCase() === table.toLowerCase()) {
      root = Number(row.values[3]);
      break;
    }
  }
  if (root === undefined) throw fail(`there is no table ${table}`);
  yield* walk(root);
}

function varint(buf: Buffer, pos: number, fail: (w: string, at?: number) => ImageError, at: number): [bigint, number] {
  let v = 0n;
  for (let i = 0; i < 9; i++) {
    if (pos + i >= buf.length) throw fail('a varint runs past its page', at + pos);
    const b = buf[pos + i]!;
    if (i === 8) return [(v << 8n) | BigInt(b), pos + 9];
    v = (v << 7n) | BigInt(b & 0x7f);
    if (!(b & 0x80)) return [v, pos + i + 1];
  }
  return [v, pos + 9];
}

function record(payload: Buffer, fail: (w: string, at?: number) => ImageError, at: number): SqliteValue[] {
  const [headerSize, first] = varint(payload, 0, fail, at);
  const hs = Number(headerSize);
  if (hs > payload.length) throw fail('a record header is longer than its record', at);
  const types: bigint[] = [];
  let p = first;
  while (p < hs) {
    const [t, next] = varint(payload, p, fail, at);
    types.push(t);
    p = next;
  }
  const values: SqliteValue[] = [];
  let d = hs;
  const need = (n: number) => {
    if (d + n > payload.length) throw fail('a record value runs past its record', at);
  };
  for (const t of types) {
    const n = Number(t);
    if (n === 0) values.push(null);
    else if (n >= 1 && n <= 6) {
      const size = [0, 1, 2, 3, 4, 6, 8][n]!;
      need(size);
      let v = 0n;
      for (let i = 0; i < size; i++) v = (v << 8n) | BigInt(payload[d + i]!);
      if (payload[d]! & 0x80) v -= 1n << BigInt(size * 8);
      values.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
      d += size;
    } else if (n === 7) {
      need(8);
      values.push(payload.readDoubleBE(d));
      d += 8;
    } else if (n === 8 || n === 9) values.push(n - 8);
    else if (n >= 12) {
      const size = Math.floor((n - (n % 2 === 0 ? 12 : 13)) / 2);
      need(size);
      const bytes = payload.subarray(d, d + size);
      values.push(n % 2 === 0 ? Buffer.from(bytes) : bytes.toString('utf8'));
      d += size;
    } else throw fail(`a record has the reserved serial type ${n}`, at);
  }
  return values;
}
