import { describe, expect, it } from 'vitest';
import { jsonEachRowChunks, RowEncodingError } from '../../runtime/clickhouse/store.ts';
import { linesToChunks, NOT_TABULAR, tabSeparatedEncoder } from '../../runtime/clickhouse/tab-separated.ts';

const COLUMNS = [
  ['s', 'String'],
  ['i', 'Int32'],
  ['u', 'UInt64'],
  ['f', 'Float64'],
  ['d', 'Date'],
  ['t', 'DateTime'],
  ['t3', "DateTime64(3, 'UTC')"],
  ['b', 'Bool'],
  ['ns', 'Nullable(String)'],
  ['lc', 'LowCardinality(String)'],
] as const;

const AT = new Date('2024-03-05T06:07:08.123Z');

function row(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { s: 'plain', i: -5, u: 18446744073709551615n, f: 0.5, d: AT, t: AT, t3: AT, b: true, ns: null, lc: 'x', ...overrides };
}

async function jsonOf(rows: Record<string, unknown>[], types: Map<string, string>): Promise<string> {
  let text = '';
  for await (const chunk of jsonEachRowChunks(rows, { columns: [...types.keys()], columnTypes: async () => types })) text += chunk.toString('utf8');
  return text;
}

describe('TabSeparated encoder', () => {
  const encoder = tabSeparatedEncoder(COLUMNS)!;

  it('writes each type as ClickHouse reads it: Dates by column type, bigints exact, \\N for null', () => {
    expect(encoder.columns).toEqual(COLUMNS.map(([c]) => c));
    expect(encoder.encodeLine(row())).toBe(
      ['plain', '-5', '18446744073709551615', '0.5', '2024-03-05', String(Math.floor(AT.getTime() / 1000)), `${Math.floor(AT.getTime() / 1000)}.123`, 'true', '\\N', 'x'].join('\t') + '\n',
    );
    expect(encoder.encodeLine(row({ f: NaN }))).toContain('\tnan\t');
    expect(encoder.encodeLine(row({ f: -Infinity }))).toContain('\t-inf\t');
    expect(encoder.encodeLine(row({ u: '123', i: 7n, b: 0 }))).toMatch(/^plain\t7\t123\t.*\tfalse\t/);
  });

  it('escapes tabs, newlines, carriage returns and backslashes, so a string never breaks the line', () => {
    const line = encoder.encodeLine(row({ s: 'a\tb\nc\rd\\e', ns: '\\N' }));
    expect(line.split('\t')).toHaveLength(COLUMNS.length);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    expect(line.startsWith('a\\tb\\nc\\rd\\\\e\t')).toBe(true);
    // the text "\N" is not NULL
    expect(line).toContain('\t\\\\N\t');
  });

  it('leaves to JSONEachRow what TabSeparated cannot say: undefined (the column default), null outside Nullable, objects, numbers in text columns', () => {
    for (const bad of [{ i: undefined }, { s: null }, { s: 12 }, { u: 'twelve' }, { s: { a: 1 } }, { i: [1] }, { i: Infinity }]) {
      expect(() => encoder.encodeLine(row(bad)), JSON.stringify(bad)).toThrow(expect.toSatisfy((e: unknown) => e === NOT_TABULAR));
    }
  });

  it('an invalid Date or a row that is not an object is a RowEncodingError naming the column', () => {
    expect(() => encoder.encodeLine(row({ t: new Date(NaN) }))).toThrow(RowEncodingError);
    expect(() => encoder.encodeLine(row({ t: new Date(NaN) }))).toThrow(/column "t": invalid Date/);
    expect(() => encoder.encodeLine(42)).toThrow(/a row must be an object, got number/);
  });

  it('a line decoded back writes the same JSONEachRow as the row it came from', async () => {
    const types = new Map<string, string>(COLUMNS.map(([c, t]) => [c, t]));
    const rows = [row(), row({ s: 'a\tb\\c\nd ✓ 日本', f: NaN, ns: 'text', u: 5, i: 2 ** 31 - 1, b: false }), row({ f: 1e21, t: 1_700_000_000, d: '2020-01-02' })];
    const decoded = rows.map((r) => encoder.decodeLine(encoder.encodeLine(r)));
    expect(await jsonOf(decoded, types)).toBe(await jsonOf(rows, types));
  });

  it('has no encoder for tables with composite columns (they go as JSONEachRow)', () => {
    expect(tabSeparatedEncoder([['a', 'Array(String)']])).toBeUndefined();
    expect(tabSeparatedEncoder([['m', 'Map(String, UInt8)'], ['s', 'String']])).toBeUndefined();
    expect(tabSeparatedEncoder([['t', 'Tuple(UInt8, String)']])).toBeUndefined();
    expect(tabSeparatedEncoder([])).toBeUndefined();
    expect(tabSeparatedEncoder([['e', "Enum8('a' = 1, 'b' = 2)"], ['x', 'Nullable(Decimal(10, 2))'], ['id', 'UUID']])).toBeDefined();
  });

  it('chunks end at line boundaries and hold every byte', () => {
    const lines = Array.from({ length: 5000 }, (_, i) => encoder.encodeLine(row({ s: `row ${i} ✓` })));
    const chunks = linesToChunks(lines, 4096);
    expect(chunks.length).toBeGreaterThan(10);
    for (const c of chunks) expect(c[c.length - 1]).toBe(10);
    expect(Buffer.concat(chunks).toString('utf8')).toBe(lines.join(''));
    expect(Buffer.concat([...encoder.encodeRows(Array.from({ length: 5000 }, (_, i) => row({ s: `row ${i} ✓` })), 4096)])).toEqual(Buffer.concat(chunks));
  });
});
