/**
 * GNU sparse members of PAX tars, expanded to their full content.
 *
 * A sparse file (a disk image, a database file with holes) is stored as its data
 * regions only, with a map of where they go. GNU tar writes three PAX variants
 * (`--sparse-version`) and one older GNU one:
 *
 * | variant                 | how it is marked                                | here |
 * | ----------------------- | ----------------------------------------------- | ---- |
 * | PAX 1.0 (the default with `--format=pax`) | `GNU.sparse.major=1`, map at the start of the data | expanded |
 * | PAX 0.1                 | `GNU.sparse.map=off,size,…` in the PAX header   | expanded |
 * | PAX 0.0                 | repeated `GNU.sparse.offset`/`numbytes` records | refused: the PAX parser keeps only the last record of a key, so the map is lost |
 * | old GNU (`--format=gnu`, the default of `tar --sparse`) | type flag `S`, map in the binary header | refused (see tar-entries.ts) |
 *
 * Refused members are error entries naming the member (never a silently short file);
 * `tar --format=pax --sparse` makes archives this reader expands.
 *
 * Expansion is streamed: holes come out as zero chunks of at most 64 KiB, counted as
 * produced bytes for the bomb limits (a 1 TB hole is a bomb like any other).
 */
import { PermanentError } from '../../runtime/errors.ts';
import { ByteReader } from '../decoders/byte-reader.ts';

export interface SparseRegion {
  readonly offset: number;
  readonly size: number;
}

export interface SparseMember {
  readonly version: '1.0' | '0.1';
  /** the member's real name (the header's is `…/GNUSparseFile.<pid>/<name>`) */
  readonly name: string | undefined;
  /** the size of the expanded file */
  readonly realSize: number;
  /** the map, for 0.1 (1.0 keeps it at the start of the data) */
  readonly map?: readonly SparseRegion[];
}

/** Largest map read from the start of a 1.0 member's data. */
const MAX_MAP_BYTES = 16 * 2 ** 20;
const HOLE_CHUNK = 64 * 1024;

/**
 * What a PAX header says about sparseness: undefined for an ordinary member, a
 * `SparseMember` to expand, or a string saying why it cannot be read.
 */
export function sparseMember(pax: Record<string, string> | null | undefined): SparseMember | string | undefined {
  if (!pax) return undefined;
  const keys = Object.keys(pax).filter((k) => k.startsWith('GNU.sparse.'));
  if (keys.length === 0) return undefined;
  const name = pax['GNU.sparse.name'];
  if (pax['GNU.sparse.major'] === '1' && pax['GNU.sparse.minor'] === '0') {
    const realSize = integer(pax['GNU.sparse.realsize']);
    if (realSize === undefined) return 'GNU sparse 1.0 member without a valid GNU.sparse.realsize';
    return { version: '1.0', name, realSize };
  }
  if (pax['GNU.sparse.map'] !== undefined) {
    const realSize = integer(pax['GNU.sparse.size']);
    if (realSize === undefined) return 'GNU sparse 0.1 member without a valid GNU.sparse.size';
    const numbers = pax['GNU.sparse.map'] === '' ? [] : pax['GNU.sparse.map'].split(',').map(integer);
    if (numbers.length % 2 !== 0 || numbers.some((n) => n === undefined)) return 'GNU sparse 0.1 member with a malformed GNU.sparse.map';
    const map: SparseRegion[] = [];
    for (let i = 0; i < numbers.length; i += 2) map.push({ offset: numbers[i]!, size: numbers[i + 1]! });
    return { version: '0.1', name, realSize, map };
  }
  if (pax['GNU.sparse.offset'] !== undefined || pax['GNU.sparse.numblocks'] !== undefined) {
    return 'GNU sparse 0.0 member (repeated GNU.sparse.offset/numbytes records), which this reader cannot map; re-create the archive with tar --format=pax --sparse-version=1.0';
  }
  return `GNU sparse member of an unknown version (${keys.join(', ')})`;
}

/**
 * The expanded content of a sparse member, from its stored data (`data`, exactly the
 * member's stored bytes). `onHole(n)` is told of each run of zeros produced (it may
 * throw to stop). Errors are PermanentErrors naming `what`.
 */
export function expandSparse(data: ByteReader, member: SparseMember, what: string, onHole: (n: number) => void): ReadableStream<Uint8Array> {
  let map: readonly SparseRegion[] | undefined = member.map;
  let checked = false;
  let region = 0;
  /** position in the expanded file */
  let pos = 0;
  /** bytes of the current region still to copy */
  let left = -1;
  const malformed = (why: string) => new PermanentError(`${what}: malformed GNU sparse member: ${why}`, { item: what, hint: 'the archive is damaged; GNU tar may still extract it' });

  return new ReadableStream<Uint8Array>(
    {
      pull: async (controller) => {
        if (!checked) {
          map ??= await readMap(data, malformed);
          checkMap(map, member.realSize, malformed);
          checked = true;
        }
        if (!map) throw malformed('no map');
        for (;;) {
          const next = map[region];
          const holeEnd = next ? next.offset : member.realSize;
          if (pos < holeEnd) {
            const n = Math.min(HOLE_CHUNK, holeEnd - pos);
            onHole(n);
            pos += n;
            controller.enqueue(new Uint8Array(n));
            return;
          }
          if (!next) {
            if (await data.read()) throw malformed('more data than the map accounts for');
            controller.close();
            return;
          }
          if (left === -1) left = next.size;
          if (left === 0) {
            region++;
            left = -1;
            continue;
          }
          const chunk = await data.read();
          if (!chunk) throw malformed('the data ends before the map says');
          const part = chunk.length > left ? chunk.subarray(0, left) : chunk;
          if (part.length < chunk.length) data.unread(chunk.subarray(part.length));
          left -= part.length;
          pos += part.length;
          controller.enqueue(part);
          return;
        }
      },
      cancel: (reason) => data.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/** The 1.0 map at the start of the data: decimal numbers, one a line (count, then offset/size pairs), padded to 512 bytes. */
async function readMap(data: ByteReader, malformed: (why: string) => Error): Promise<SparseRegion[]> {
  let text = '';
  let consumed = 0;
  const numbers: number[] = [];
  let count: number | undefined;
  while (count === undefined || numbers.length < 1 + 2 * count) {
    const nl = text.indexOf('\n');
    if (nl >= 0) {
      const value = integer(text.slice(0, nl));
      if (value === undefined) throw malformed(`bad number ${JSON.stringify(text.slice(0, nl).slice(0, 20))} in the map`);
      numbers.push(value);
      text = text.slice(nl + 1);
      if (numbers.length === 1) count = value;
      continue;
    }
    const chunk = await data.read();
    if (!chunk) throw malformed('the data ends inside the map');
    // keep the bytes after the map: they are the first region's data
    consumed += chunk.length;
    text += Buffer.from(chunk).toString('latin1');
    if (consumed > MAX_MAP_BYTES) throw malformed(`the map is larger than ${MAX_MAP_BYTES} bytes`);
  }
  // bytes of map text used, then padding to the next 512-byte boundary
  const used = consumed - text.length;
  const mapBytes = Math.ceil(used / 512) * 512;
  let rest = Buffer.from(text, 'latin1');
  const padding = mapBytes - used;
  if (rest.length >= padding) rest = rest.subarray(padding);
  else {
    let skip = padding - rest.length;
    rest = Buffer.alloc(0);
    while (skip > 0) {
      const chunk = await data.read();
      if (!chunk) throw malformed('the data ends inside the map padding');
      if (chunk.length > skip) {
        data.unread(chunk.subarray(skip));
        skip = 0;
      } else skip -= chunk.length;
    }
  }
  if (rest.length) data.unread(rest);
  const map: SparseRegion[] = [];
  for (let i = 0; i < count!; i++) map.push({ offset: numbers[1 + 2 * i]!, size: numbers[2 + 2 * i]! });
  return map;
}

function checkMap(map: readonly SparseRegion[], realSize: number, malformed: (why: string) => Error): void {
  let end = 0;
  for (const { offset, size } of map) {
    if (offset < end) throw malformed('map regions overlap or are out of order');
    if (offset + size > realSize) throw malformed('a map region lies past the end of the file');
    end = offset + size;
  }
}

function integer(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,16}$/.test(text.trim())) return undefined;
  const n = Number(text.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}
