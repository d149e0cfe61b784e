/**
 * What the two ClickHouse benchmarks (clickhouse-server, clickhouse-embedded) share: the
 * 6-column table, the rows (made as the source is pulled, or written to a JSONEachRow
 * file for the reference tool), the sluice load through `runPipeline`, and the check
 * that a table holds every row.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { mergeMap } from 'rxjs';
import { z } from 'zod';
import { quoteIdentifier } from '../runtime/clickhouse/store.ts';
import type { ClickHouseStore } from '../runtime/clickhouse/store.ts';
import { defineTable, type RowOf } from '../runtime/clickhouse/table.ts';
import { createLogger } from '../runtime/log.ts';
import { definePipeline, item } from '../runtime/pipeline.ts';
import { runPipeline } from '../runtime/runner.ts';
import { clickhouse } from '../sinks/clickhouse/index.ts';
import { fail } from './report.ts';

export const tableOf = (name: string) =>
  defineTable(name, {
    columns: { id: 'UInt64', name: 'String', version: 'String', size: 'UInt64', sha256: 'String', ts: 'DateTime' },
    orderBy: ['id'],
  });
export type Row = RowOf<ReturnType<typeof tableOf>>;
export const SCHEMA = 'id UInt64, name String, version String, size UInt64, sha256 String, ts DateTime';

const T0 = 1_700_000_000;
export function row(i: number): Row {
  return {
    id: i,
    name: `package-${i}`,
    version: `1.${i % 100}.${i % 7}`,
    size: (i * 37) % 1_000_003,
    sha256: ((i * 2654435761) % 4294967296).toString(16).padStart(64, '0'),
    ts: new Date((T0 + i) * 1000),
  };
}

/** The same rows as JSONEachRow (DateTime as Unix seconds), for the reference tool. */
export async function writeRowsFile(file: string, rows: number): Promise<void> {
  const out = createWriteStream(file);
  let text = '';
  for (let i = 0; i < rows; i++) {
    const r = row(i);
    text += JSON.stringify({ ...r, ts: T0 + i }) + '\n';
    if (text.length > 1 << 20) {
      if (!out.write(text)) await once(out, 'drain');
      text = '';
    }
  }
  out.end(text);
  await once(out, 'close');
}

export interface SluiceLoad {
  bench: string;
  store: ClickHouseStore;
  table: string;
  rows: number;
  /** rows per source item */
  page: number;
  maxInFlight: number;
  /** the sink's maxRows, when set */
  maxRows?: number;
  stateDir: string;
}

/** Load the rows with sluice (pages of rows as items, `syncTransform`); seconds taken. */
export async function sluiceLoad(o: SluiceLoad): Promise<number> {
  const def = tableOf(o.table);
  const pipeline = definePipeline({
    name: o.bench,
    description: `bench: ${o.rows} rows into ClickHouse`,
    params: z.object({}),
    source: function* () {
      for (let first = 0; first < o.rows; first += o.page) {
        const page: Row[] = [];
        for (let i = first; i < Math.min(o.rows, first + o.page); i++) page.push(row(i));
        yield item(`page-${first}`, page);
      }
    },
    transform: () => mergeMap((page: Row[]) => page),
    syncTransform: true,
    sinks: () => [clickhouse(def, o.maxRows ? { maxRows: o.maxRows } : {})],
    // items are pages of rows: 100 pages of 1000 in flight is two of the sink's 50 000-row batches
    maxInFlight: o.maxInFlight,
  });
  const t0 = performance.now();
  const run = await runPipeline({ pipeline, stateDir: o.stateDir, log: createLogger({ level: 'warn' }), openStore: async () => o.store, keepStoreOpen: true });
  const seconds = (performance.now() - t0) / 1000;
  if (run.status !== 'succeeded') fail(o.bench, `sluice run ${run.status}: ${run.errors.map((e) => e.message).join('; ')}`);
  return seconds;
}

/**
 * Seconds the source alone takes to make the rows (pages built and dropped, no
 * pipeline): part of sluice's time in the comparison (clickhouse-client and chDB read
 * rows made before the clock starts), reported beside it so the sink's own share shows.
 */
export function sourceSeconds(rows: number, page: number): number {
  const t0 = performance.now();
  let sink = 0;
  for (let first = 0; first < rows; first += page) {
    const made: Row[] = [];
    for (let i = first; i < Math.min(rows, first + page); i++) made.push(row(i));
    sink += made.length;
  }
  if (sink !== rows) throw new Error('source made the wrong number of rows');
  return (performance.now() - t0) / 1000;
}

/** Fails the bench unless `table` holds every row; returns sums to compare tables by. */
export async function checkTable(bench: string, store: ClickHouseStore, database: string, table: string, rows: number): Promise<string> {
  const found = await store.query<{ n: string; s: string; t: string }>(
    `SELECT count() AS n, sum(size) AS s, sum(toUInt64(ts)) AS t FROM ${quoteIdentifier(database)}.${quoteIdentifier(table)}`,
  );
  const r = found[0]!;
  if (Number(r.n) !== rows) fail(bench, `${table} has ${r.n} rows, not ${rows}`);
  return `${r.s}/${r.t}`;
}
