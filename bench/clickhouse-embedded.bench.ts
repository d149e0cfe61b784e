/**
 * The clickhouse sink against embedded chDB: 1,000,000 rows × 6 columns (UInt64,
 * String, String, UInt64, String, DateTime; 160 MB of JSONEachRow), loaded by sluice
 * (`runPipeline`, the `clickhouse` sink with its defaults, through the embedded store)
 * and by chDB itself, `INSERT INTO … SELECT * FROM file('rows.jsonl', JSONEachRow, …)`
 * on a file of the same rows, in the same chDB session, into two tables of the same
 * definition. Target: sluice's rows/s at least 0.5 × chDB's own.
 *
 * The sink sends these rows as TabSeparated (its format for tables of scalar columns,
 * see sinks/clickhouse/README.md); the reference tool reads the JSONEachRow file, as
 * the comparison asks.
 *
 * value: sluice rows/s (the whole run: open, create table, 1M rows, close).
 * baseline: chDB's `INSERT … SELECT FROM file()` rows/s.
 * source_s: the part of sluice's time its source takes to make the rows (measured alone,
 *   best of two), which the reference tool does not pay: it reads rows made before.
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
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { openEmbeddedStore } from '../runtime/clickhouse/embedded-store.ts';
import { quoteIdentifier, quoteString } from '../runtime/clickhouse/store.ts';
import { createTableSql } from '../runtime/clickhouse/table.ts';
import { checkTable, sourceSeconds, SCHEMA, sluiceLoad, tableOf, writeRowsFile } from './clickhouse-rows.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

const BENCH = 'clickhouse-embedded';
const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 2);
const PAGE = 1000;
const IN_FLIGHT = Number(process.env.BENCH_MAX_IN_FLIGHT ?? 100);
const TARGET = 0.5;
const MAX_ROWS = process.env.BENCH_MAX_ROWS ? Number(process.env.BENCH_MAX_ROWS) : undefined;



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



try {
  note(`${BENCH}: ${ROWS} rows × 6 columns into chDB (ClickHouse ${version}); best of ${REPEAT}`);
  await writeRowsFile(file, ROWS);
  note(`${BENCH}: wrote ${file} (${((await fs.stat(file)).size / 1e6).toFixed(1)} MB)`);
  let base = Infinity;
  let ours = Infinity;
  let sums: string | undefined;
  for (let r = 0; r < REPEAT; r++) {
    for (const who of ['chdb', 'sluice'] as const) {
      const table = `${who}_${r}`;
      await store.command(createTableSql(tableOf(table), database, features));
      const seconds = who === 'chdb' ? await chdbFile(table) : await sluiceLoad({ bench: BENCH, store, table, rows: ROWS, page: PAGE, maxInFlight: IN_FLIGHT, maxRows: MAX_ROWS, stateDir: path.join(tmp, 'state') });
      const got = await checkTable(BENCH, store, database, table, ROWS);
      if (sums !== undefined && got !== sums) fail(BENCH, `${table} holds other values than the first table (${got} vs ${sums})`);
      sums = got;
      note(`${BENCH}: ${who} run ${r + 1}: ${seconds.toFixed(2)} s, ${Math.round(ROWS / seconds)} rows/s`);
      if (who === 'chdb') base = Math.min(base, seconds);
      else ours = Math.min(ours, seconds);
    }
  }
  const source = Math.min(sourceSeconds(ROWS, PAGE), sourceSeconds(ROWS, PAGE));
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
    source_s: round(source, 2), // of sluice_s: the bench's source making the rows
    chdb_file_s: round(base, 2),
    engine: version,
    ...(MAX_ROWS ? { max_rows: MAX_ROWS } : {}),
  });
} finally {
  await store.close();
  await fs.rm(tmp, { recursive: true, force: true });
}
