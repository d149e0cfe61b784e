/**
 * The sink's TabSeparated path against both real backends: the same rows written by the
 * sink (as TabSeparated lines) and by `store.insert` (JSONEachRow) must read back the
 * same; rows only JSONEachRow can write turn their batch into JSONEachRow; bad rows are
 * dead-lettered as rows, with the server's message, and cost nothing else.
 */
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { mergeMap } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createTableSql, defineTable, type RowOf } from '../../runtime/clickhouse/table.ts';
import { quoteIdentifier } from '../../runtime/clickhouse/store.ts';
import { definePipeline, item } from '../../runtime/pipeline.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { clickhouse } from '../../sinks/clickhouse/index.ts';
import { embeddedBackend, quiet, serverBackend, SpyStore, uniqueName, type Backend } from './stores.ts';

function scalarTable(name: string) {
  return defineTable(name, {
    columns: {
      key: 'String',
      text: 'String',
      i: 'Int32',
      big: 'UInt64',
      f: 'Float64',
      day: 'Date',
      at: 'DateTime',
      at3: 'DateTime64(3)',
      flag: 'Bool',
      maybe: 'Nullable(String)',
      n: 'UInt32',
    },
    orderBy: ['key'],
  });
}
type Row = RowOf<ReturnType<typeof scalarTable>>;

const AT = new Date('2024-03-05T06:07:08.250Z');
const TRICKY = ['a\tb', 'line\nbreak', 'cr\rlf', 'back\\slash', '\\N', '', 'unicode ✓ 日本 😀', "quote ' and \" both"];

function rowAt(i: number): Row {
  return {
    key: `k${String(i).padStart(5, '0')}`,
    text: TRICKY[i % TRICKY.length]!,
    i: i % 2 ? -i : i,
    big: 18446744073709551615n - BigInt(i),
    f: i % 5 === 0 ? NaN : i / 8,
    day: AT,
    at: new Date(AT.getTime() + i * 1000),
    at3: new Date(AT.getTime() + i),
    flag: i % 2 === 0,
    maybe: i % 3 === 0 ? null : `m${i}`,
    n: i,
  };
}

const tempState = () => mkdtemp(path.join(os.tmpdir(), 'sluice-chsink-tsv-'));

async function deadLetters(stateDir: string, pipeline: string): Promise<{ error: string; record: Record<string, unknown> }[]> {
  const dir = path.join(stateDir, 'dead-letter', pipeline);
  const lines: string[] = [];
  for (const f of await readdir(dir).catch(() => [])) lines.push(...(await readFile(path.join(dir, f), 'utf8')).trim().split('\n').filter(Boolean));
  return lines.map((l) => JSON.parse(l));
}

function run(store: SpyStore, table: ReturnType<typeof scalarTable>, rows: Row[], stateDir: string) {
  const pipeline = definePipeline({
    name: 'chsink-tsv',
    description: 'test',
    params: z.object({}),
    // pages of 50 rows: the item's data is let go of once transformed, its rows live on as lines
    source: function* () {
      for (let i = 0; i < rows.length; i += 50) yield item(`page-${i}`, rows.slice(i, i + 50));
    },
    transform: () => mergeMap((page: Row[]) => page),
    sinks: () => [clickhouse(table, { maxRows: 100, maxDelayMs: 20 })],
    onError: 'dead-letter',
  });
  return runPipeline({ pipeline, stateDir, log: quiet, openStore: async () => store, keepStoreOpen: true, retry: { initialDelayMs: 20 } });
}

const backends: [string, () => Promise<Backend>][] = [
  ['server (ClickHouse 18.16)', serverBackend],
  ['embedded (chDB)', embeddedBackend],
];

describe.each(backends)('clickhouse sink, TabSeparated, on %s', (_label, open) => {
  let backend: Backend;
  beforeAll(async () => { backend = await open(); });
  afterAll(async () => { await backend?.cleanup(); });

  const dump = (table: string) =>
    backend.store.queryText(`SELECT * FROM ${quoteIdentifier(backend.store.database)}.${quoteIdentifier(table)} ORDER BY key`, 'TSV');

  it('rows written as TabSeparated read back exactly as the same rows written as JSONEachRow', async () => {
    const viaSink = scalarTable(uniqueName('tsv'));
    const viaJson = scalarTable(uniqueName('json'));
    const rows = Array.from({ length: 640 }, (_, i) => rowAt(i));
    const spy = new SpyStore(backend.store);
    const record = await run(spy, viaSink, rows, await tempState());
    expect(record.status).toBe('succeeded');
    expect(spy.insertFormats.length).toBeGreaterThanOrEqual(7);
    expect(new Set(spy.insertFormats)).toEqual(new Set(['TabSeparated']));
    expect(spy.insertSizes.reduce((a, b) => a + b, 0)).toBe(640);

    await backend.store.command(createTableSql(viaJson, backend.store.database, await backend.store.features()));
    await backend.store.insert(viaJson.name, rows as unknown as Record<string, unknown>[], { columns: Object.keys(viaJson.columns) });
    const [a, b] = [await dump(viaSink.name), await dump(viaJson.name)];
    expect(a.trim().split('\n')).toHaveLength(640);
    expect(a).toBe(b);
    // the literal text \N is not NULL, and a tab stays inside its value
    const texts = await backend.store.query<{ text: string; maybe: string | null }>(
      `SELECT text, maybe FROM ${quoteIdentifier(backend.store.database)}.${quoteIdentifier(viaSink.name)} WHERE key IN ('k00004', 'k00000', 'k00001') ORDER BY key`,
    );
    expect(texts).toEqual([{ text: 'a\tb', maybe: null }, { text: 'line\nbreak', maybe: 'm1' }, { text: '\\N', maybe: 'm4' }]);
  });

  it('a batch with a row only JSONEachRow can write (an undefined value: the column default) goes as JSONEachRow, with the same values', async () => {
    const viaSink = scalarTable(uniqueName('mixed'));
    const rows = Array.from({ length: 200 }, (_, i) => rowAt(i));
    // rows 100..199 are one batch: one of them leaves `n` out
    delete (rows[150] as Partial<Row>).n;
    const spy = new SpyStore(backend.store);
    const record = await run(spy, viaSink, rows, await tempState());
    expect(record.status).toBe('succeeded');
    expect(spy.insertFormats).toEqual(['TabSeparated', 'JSONEachRow']);
    const t = `${quoteIdentifier(backend.store.database)}.${quoteIdentifier(viaSink.name)}`;
    expect(await backend.store.query(`SELECT n, text, maybe, toUnixTimestamp(at) AS at FROM ${t} WHERE key IN ('k00149', 'k00150') ORDER BY key`)).toEqual([
      { n: 149, text: TRICKY[149 % TRICKY.length], maybe: 'm149', at: Math.floor(AT.getTime() / 1000) + 149 },
      { n: 0, text: TRICKY[150 % TRICKY.length], maybe: null, at: Math.floor(AT.getTime() / 1000) + 150 },
    ]);
    expect(await backend.store.query(`SELECT count() AS c FROM ${t}`)).toEqual([{ c: '200' }]);
  });

  it('a value the server rejects and a Date that is invalid are dead-lettered as rows with their reasons; every other row is written', async () => {
    const viaSink = scalarTable(uniqueName('bad'));
    const rows = Array.from({ length: 300 }, (_, i) => rowAt(i));
    rows[42] = { ...rows[42]!, day: 'not a date' as unknown as Date };
    rows[250] = { ...rows[250]!, at: new Date(NaN) };
    const stateDir = await tempState();
    const record = await run(new SpyStore(backend.store), viaSink, rows, stateDir);
    expect(record.status).toBe('succeeded');
    expect(record.counts.deadLettered).toBe(2);
    const letters = (await deadLetters(stateDir, 'chsink-tsv')).sort((x, y) => String(x.record.key).localeCompare(String(y.record.key)));
    expect(letters.map((l) => l.record.key)).toEqual(['k00042', 'k00250']);
    expect(letters[0]!.record).toMatchObject({ key: 'k00042', day: 'not a date', text: rows[42]!.text, n: 42 });
    expect(letters[0]!.error).toMatch(/Cannot parse|CANNOT_PARSE/);
    expect(letters[0]!.error).toContain(viaSink.name);
    expect(letters[1]!.error).toMatch(/column "at": invalid Date/);
    expect(letters[1]!.error).toContain(viaSink.name);
    const t = `${quoteIdentifier(backend.store.database)}.${quoteIdentifier(viaSink.name)}`;
    expect(await backend.store.query(`SELECT count() AS c, countIf(key IN ('k00042', 'k00250')) AS bad FROM ${t}`)).toEqual([{ c: '298', bad: '0' }]);
  });
});
