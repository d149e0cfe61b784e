/**
 * The clickhouse sink against embedded chDB: 1,000,000 rows × 6 columns (UInt64,
 * String, String, UInt64, String, DateTime; 160 MB of JSONEachRow), loaded by sluice
 * (`runPipeline`, the `clickhouse` sink with its defaults, through the embedded store)
 * and by chDB itself, `INSERT INTO … SELECT * FROM file('rows.jsonl', JSONEachRow, …)`
 * on a file of the same rows, in the same chDB session, into two tables of the same
 * definition. Target: sluice's rows/s at least 0.5 × chDB's own.
 *
 * value: sluice rows/s (the whole run: open, create table, 1M rows, close).
 * baseline: chDB's `INSERT … SELECT FROM file()` rows/s.
 * ratio: value / baseline (≥ 0.5 meets the target).
 * peak_rss_mb: this process's peak RSS: chDB (≈700 MB mapped and used by the engine
 *   itself, whoever inserts) plus the sluice run.
 *
 * The rows: sluice's source makes them as it is pulled (pages of 1000 rows, one item
 * per page; `syncTransform`; `maxInFlight` pages in flight, default 100: two of the
 * sink's 50 000-row batches), with `Date` values for the DateTime column; the file
 * holds the same rows.
 * Both tables must end with 1,000,000 rows and the same sums, or the bench fails.
 *
 * Env: BENCH_ROWS; BENCH_REPEAT (default 2: best of each); BENCH_MAX_IN_FLIGHT; BENCH_MAX_ROWS (the sink's
 * maxRows, to find out where the time goes).
 */
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { mergeMap } from 'rxjs';
import { z } from 'zod';
import { openEmbeddedStore } from '../runtime/clickhouse/embedded-store.ts';
import { quoteIdentifier, quoteString } from '../runtime/clickhouse/store.ts';
import { createTableSql, defineTable, type RowOf } from '../runtime/clickhouse/table.ts';
import { createLogger } from '../runtime/log.ts';
import { definePipeline, item } from '../runtime/pipeline.ts';
import { runPipeline } from '../runtime/runner.ts';
import { clickhouse } from '../sinks/clickhouse/index.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

const BENCH = 'clickhouse-embedded';
const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 2);
const PAGE = 1000;
const IN_FLIGHT = Number(process.env.BENCH_MAX_IN_FLIGHT ?? 100);
const TARGET = 0.5;
const MAX_ROWS = process.env.BENCH_MAX_ROWS ? Number(process.env.BENCH_MAX_ROWS) : undefined;

const tableOf = (name: string) =>
  defineTable(name, {
    columns: { id: 'UInt64', name: 'String', version: 'String', size: 'UInt64', sha256: 'String', ts: 'DateTime' },
    orderBy: ['id'],
  });
type Row = RowOf<ReturnType<typeof tableOf>>;
const SCHEMA = 'id UInt64, name String, version String, size UInt64, sha256 String, ts DateTime';

const T0 = 1_700_000_000;
function row(i: number): Row {
  return {
    id: i,
    name: `package-${i}`,
    version: `1.${i % 100}.${i % 7}`,
    size: (i * 37) % 1_000_003,
    sha256: ((i * 2654435761) % 4294967296).toString(16).padStart(64, '0'),
    ts: new Date((T0 + i) * 1000),
  };
}

async function writeFile(file: string): Promise<void> {
  const out = createWriteStream(file);
  let text = '';
  for (let i = 0; i < ROWS; i++) {
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

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-bench-chdb-'));
const file = path.join(tmp, 'rows.jsonl');
const store = await openEmbeddedStore({ dir: path.join(tmp, 'clickhouse') });
const database = store.database;
const version = (await store.version()).text;
const features = await store.features();

async function chdbFile(table: string): Promise<number> {
  const t0 = performance.now();
  await store.command(`INSERT INTO ${quoteIdentifier(database)}.${quoteIdentifier(table)} SELECT * FROM file(${quoteString(file)}, JSONEachRow, ${quoteString(SCHEMA)})`);
  return (performance.now() - t0) / 1000;
}

async function sluice(table: string): Promise<number> {
  const def = tableOf(table);
  const pipeline = definePipeline({
    name: BENCH,
    description: 'bench: 1M rows into embedded ClickHouse',
    params: z.object({}),
    source: function* () {
      for (let first = 0; first < ROWS; first += PAGE) {
        const page: Row[] = [];
        for (let i = first; i < Math.min(ROWS, first + PAGE); i++) page.push(row(i));
        yield item(`page-${first}`, page);
      }
    },
    transform: () => mergeMap((page: Row[]) => page),
    syncTransform: true,
    sinks: () => [clickhouse(def, MAX_ROWS ? { maxRows: MAX_ROWS } : {})],
    // items are pages of 1000 rows: 100 in flight is two of the sink's 50 000-row batches
    maxInFlight: IN_FLIGHT,
  });
  const t0 = performance.now();
  const run = await runPipeline({ pipeline, stateDir: path.join(tmp, 'state'), log: createLogger({ level: 'warn' }), openStore: async () => store, keepStoreOpen: true });
  const seconds = (performance.now() - t0) / 1000;
  if (run.status !== 'succeeded') fail(BENCH, `sluice run ${run.status}: ${run.errors.map((e) => e.message).join('; ')}`);
  return seconds;
}

async function check(table: string): Promise<string> {
  const rows = await store.query<{ n: string; s: string; t: string }>(
    `SELECT count() AS n, sum(size) AS s, sum(toUInt64(ts)) AS t FROM ${quoteIdentifier(database)}.${quoteIdentifier(table)}`,
  );
  const r = rows[0]!;
  if (Number(r.n) !== ROWS) fail(BENCH, `${table} has ${r.n} rows, not ${ROWS}`);
  return `${r.s}/${r.t}`;
}

try {
  note(`${BENCH}: ${ROWS} rows × 6 columns into chDB (ClickHouse ${version}); best of ${REPEAT}`);
  await writeFile(file);
  note(`${BENCH}: wrote ${file} (${((await fs.stat(file)).size / 1e6).toFixed(1)} MB)`);
  let base = Infinity;
  let ours = Infinity;
  let sums: string | undefined;
  for (let r = 0; r < REPEAT; r++) {
    for (const who of ['chdb', 'sluice'] as const) {
      const table = `${who}_${r}`;
      await store.command(createTableSql(tableOf(table), database, features));
      const seconds = who === 'chdb' ? await chdbFile(table) : await sluice(table);
      const got = await check(table);
      if (sums !== undefined && got !== sums) fail(BENCH, `${table} holds other values than the first table (${got} vs ${sums})`);
      sums = got;
      note(`${BENCH}: ${who} run ${r + 1}: ${seconds.toFixed(2)} s, ${Math.round(ROWS / seconds)} rows/s`);
      if (who === 'chdb') base = Math.min(base, seconds);
      else ours = Math.min(ours, seconds);
    }
  }
  const value = ROWS / ours;
  const baseline = ROWS / base;
  await report({
    bench: BENCH,
    value: Math.round(value),
    unit: 'rows/s',
    baseline: Math.round(baseline),
    ratio: round(value / baseline), // ≥ 0.5 meets the target
    target: TARGET,
    peak_rss_mb: peakRssMb(),
    rows: ROWS,
    sluice_s: round(ours, 2),
    chdb_file_s: round(base, 2),
    engine: version,
    ...(MAX_ROWS ? { max_rows: MAX_ROWS } : {}),
  });
} finally {
  await store.close();
  await fs.rm(tmp, { recursive: true, force: true });
}
