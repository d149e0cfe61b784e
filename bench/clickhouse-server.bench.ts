/**
 * The clickhouse sink against the ClickHouse server: 1,000,000 rows × 6 columns
 * (UInt64, String, String, UInt64, String, DateTime; 160 MB of JSONEachRow), loaded by
 * sluice (`runPipeline`, the `clickhouse` sink with its defaults, over HTTP) and by
 * `clickhouse-client --query "INSERT … FORMAT JSONEachRow" < file` over the native
 * protocol, into two tables of the same definition. Target: sluice's rows/s at least
 * 0.7 × clickhouse-client's, and the sluice run's peak RSS under 300 MiB.
 *
 * The sink sends these rows as TabSeparated (its format for tables of scalar columns,
 * see sinks/clickhouse/README.md); the reference tool reads the JSONEachRow file, as
 * the comparison asks.
 *
 * value: sluice rows/s (the whole run: open, create table, 1M rows, close).
 * baseline: clickhouse-client rows/s on the same rows, read from a file written first.
 * source_s: the part of sluice's time its source takes to make the rows (measured alone,
 *   best of two), which the reference tool does not pay: it reads rows made before.
 * ratio: value / baseline (≥ 0.7 meets the target).
 * peak_rss_mb: this process's peak RSS after the first sluice run, which comes before
 *   anything else (clickhouse-client is another process); the limit is 300 MiB.
 *
 * The rows: sluice's source makes them as it is pulled (pages of 1000 rows, one item
 * per page, like a paginated listing; `syncTransform`; `maxInFlight` pages in flight,
 * default 100: two of the sink's 50 000-row batches), with `Date` values for the
 * DateTime column; the file holds the same rows (the DateTime as Unix seconds, which
 * is what the sink sends).
 * Both tables must end with 1,000,000 rows and the same sums, or the bench fails.
 *
 * Env: SLUICE_TEST_CLICKHOUSE_URL and SLUICE_TEST_CLICKHOUSE_NATIVE_PORT (from
 * `scripts/services.sh`, read from .sluice/services/env when unset); BENCH_ROWS;
 * BENCH_REPEAT (default 2: best of each); BENCH_MAX_IN_FLIGHT. To find out where the time goes:
 * BENCH_MAX_ROWS (the sink's maxRows), BENCH_COMPRESSION=0 (open the store without
 * gzip; the CLI opens it with the default, gzip on).
 */
import { spawn } from 'node:child_process';
import { createReadStream, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { openServerStore } from '../runtime/clickhouse/server-store.ts';
import { quoteIdentifier } from '../runtime/clickhouse/store.ts';
import { createTableSql } from '../runtime/clickhouse/table.ts';
import { checkTable, sourceSeconds, sluiceLoad, tableOf, writeRowsFile } from './clickhouse-rows.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

const BENCH = 'clickhouse-server';
const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 2);
const PAGE = 1000;
const IN_FLIGHT = Number(process.env.BENCH_MAX_IN_FLIGHT ?? 100);
const TARGET = 0.7;
const RSS_LIMIT_MB = 300;
const MAX_ROWS = process.env.BENCH_MAX_ROWS ? Number(process.env.BENCH_MAX_ROWS) : undefined;
const COMPRESSION = process.env.BENCH_COMPRESSION === undefined ? undefined : process.env.BENCH_COMPRESSION !== '0';
const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

function serviceEnv(name: string): string {
  const value = process.env[name];
  if (value) return value;
  const file = path.join(process.env.SLUICE_SERVICES_DIR ?? path.join(ROOT, '.sluice', 'services'), 'env');
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    fail(BENCH, `${name} is not set and ${file} cannot be read: run scripts/services.sh`);
  }
  const m = new RegExp(`^${name}=(.*)$`, 'm').exec(text);
  if (!m) fail(BENCH, `no ${name} in ${file}`);
  return m[1]!.trim();
}



const url = serviceEnv('SLUICE_TEST_CLICKHOUSE_URL');
const nativePort = serviceEnv('SLUICE_TEST_CLICKHOUSE_NATIVE_PORT');
const database = `sluice_bench_${process.pid}`;
const store = await openServerStore({ url, database, ...(COMPRESSION === undefined ? {} : { compression: COMPRESSION }) });
const version = (await store.version()).text;
const features = await store.features();
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-bench-ch-'));
const file = path.join(tmp, 'rows.jsonl');

async function clickhouseClient(table: string): Promise<number> {
  const t0 = performance.now();
  const child = spawn('clickhouse-client', ['--port', nativePort, '--query', `INSERT INTO ${quoteIdentifier(database)}.${quoteIdentifier(table)} FORMAT JSONEachRow`], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  createReadStream(file).pipe(child.stdin);
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) fail(BENCH, `clickhouse-client exited with ${code}: ${stderr.trim()}`);
  return (performance.now() - t0) / 1000;
}



try {
  note(`${BENCH}: ${ROWS} rows × 6 columns into ClickHouse ${version} at ${url} (native port ${nativePort}); best of ${REPEAT}`);
  let base = Infinity;
  let ours = Infinity;
  let sums: string | undefined;
  // sluice goes first, before the file is written, so the peak RSS after its first run is its own
  let sluicePeakMb = 0;
  for (let r = 0; r < REPEAT; r++) {
    for (const who of ['sluice', 'client'] as const) {
      const table = `${who}_${r}`;
      if (who === 'client' && r === 0) {
        await writeRowsFile(file, ROWS);
        note(`${BENCH}: wrote ${file} (${((await fs.stat(file)).size / 1e6).toFixed(1)} MB)`);
      }
      await store.command(createTableSql(tableOf(table), database, features));
      const seconds = who === 'client' ? await clickhouseClient(table) : await sluiceLoad({ bench: BENCH, store, table, rows: ROWS, page: PAGE, maxInFlight: IN_FLIGHT, maxRows: MAX_ROWS, stateDir: path.join(tmp, 'state') });
      if (who === 'sluice' && r === 0) sluicePeakMb = peakRssMb();
      const got = await checkTable(BENCH, store, database, table, ROWS);
      if (sums !== undefined && got !== sums) fail(BENCH, `${table} holds other values than the first table (${got} vs ${sums})`);
      sums = got;
      note(`${BENCH}: ${who} run ${r + 1}: ${seconds.toFixed(2)} s, ${Math.round(ROWS / seconds)} rows/s`);
      if (who === 'client') base = Math.min(base, seconds);
      else ours = Math.min(ours, seconds);
    }
  }
  const source = Math.min(sourceSeconds(ROWS, PAGE), sourceSeconds(ROWS, PAGE));
  const value = ROWS / ours;
  const baseline = ROWS / base;
  const rss = sluicePeakMb;
  if (rss > RSS_LIMIT_MB) note(`${BENCH}: peak RSS ${rss} MiB is over the ${RSS_LIMIT_MB} MiB limit`);
  await report({
    bench: BENCH,
    value: Math.round(value),
    unit: 'rows/s',
    baseline: Math.round(baseline),
    ratio: round(value / baseline), // ≥ 0.7 meets the target
    target: TARGET,
    peak_rss_mb: rss,
    rss_limit_mb: RSS_LIMIT_MB,
    rows: ROWS,
    sluice_s: round(ours, 2),
    source_s: round(source, 2), // of sluice_s: the bench's source making the rows
    clickhouse_client_s: round(base, 2),
    server: version,
    ...(MAX_ROWS ? { max_rows: MAX_ROWS } : {}),
    ...(COMPRESSION === undefined ? {} : { compression: COMPRESSION }),
  });
} finally {
  await store.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(database)}`).catch(() => undefined);
  await store.close();
  await fs.rm(tmp, { recursive: true, force: true });
}
