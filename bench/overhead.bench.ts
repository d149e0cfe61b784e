/**
 * Runner overhead: 5 million small records through map + filter into a null sink, against
 * a hand-written `for await` loop doing the same work on the same generator. Target:
 * sluice's throughput is at least half the loop's (ratio ≥ 0.5 meets it).
 *
 * value: sluice throughput in source records/s, best of the `maxInFlight` values tried.
 * baseline: the `for await` loop's throughput, measured first in the same process.
 * ratio: value / baseline.
 * cpu_ratio (extra): the same ratio from CPU time (user + system) instead of wall time,
 *   steadier when other processes share the machine.
 *
 * Both paths must let the same number of records through the filter, or the bench exits
 * non-zero.
 *
 * Each sluice run has a time budget (`BENCH_BUDGET_S`, default 50 s) so the whole bench
 * stays under about 3 minutes on a slow runner: past it the source ends early (it checks
 * the clock itself: a timer or an AbortSignal.timeout would not fire, because a run over
 * a synchronous sink never yields to the event loop), the run completes normally, its
 * throughput is the items it finished over the time it took, and it is listed in
 * `partial_max_in_flight`. The records a partial run wrote are still checked: exactly the
 * ones the filter keeps among the items pulled.
 *
 * `BENCH_QUICK=1`: 500,000 records. `BENCH_RECORDS` and `BENCH_MAX_IN_FLIGHT` (comma
 * separated) override the size and the values tried.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { filter, map, pipe } from 'rxjs';
import { z } from 'zod';
import { createLogger } from '../runtime/log.ts';
import { definePipeline, type Sink } from '../runtime/pipeline.ts';
import { runPipeline } from '../runtime/runner.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

const BENCH = 'overhead';
const QUICK = process.env.BENCH_QUICK === '1';
const RECORDS = Number(process.env.BENCH_RECORDS ?? (QUICK ? 500_000 : 5_000_000));
const MAX_IN_FLIGHT = (process.env.BENCH_MAX_IN_FLIGHT ?? '64,256,1024').split(',').map(Number);
const BUDGET_S = Number(process.env.BENCH_BUDGET_S ?? 50);
const TARGET = 0.5;

interface Small {
  i: number;
  name: string;
}

/** `n` small records, or fewer if the clock passes `deadline` (checked every 1024 records). */
async function* smalls(n: number, deadline = Infinity): AsyncGenerator<Small> {
  for (let i = 0; i < n; i++) {
    if ((i & 1023) === 0 && performance.now() > deadline) return;
    yield { i, name: 'x' + i };
  }
}

interface Doubled extends Small {
  double: number;
}

// the work, shared by both paths
const addDouble = (r: Small): Doubled => ({ ...r, double: r.i * 2 });
const keep = (r: Doubled) => r.double % 3 !== 0;

/** CPU seconds (user + system, all threads) used since `start`. */
const cpuSince = (start: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1e6;
};

async function loop(): Promise<{ count: number; seconds: number; cpu: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let count = 0;
  for await (const r of smalls(RECORDS)) {
    const m = addDouble(r);
    if (keep(m)) count++;
  }
  return { count, seconds: (performance.now() - t0) / 1000, cpu: cpuSince(cpu0) };
}

/** How many of the first `items` source records the filter keeps: those with i % 3 !== 0. */
const keptAmongFirst = (items: number) => items - Math.ceil(items / 3);

interface SluiceRun {
  count: number;
  seconds: number;
  /** items finished (all of them unless the budget stopped the run) */
  items: number;
  partial: boolean;
  cpu: number;
}

let deadline = Infinity;
async function sluice(maxInFlight: number, stateDir: string): Promise<SluiceRun> {
  let count = 0;
  const nullSink: Sink<Doubled> = {
    name: 'null',
    kind: 'null',
    batch: { maxRecords: 1000 },
    write: (records) => { count += records.length; },
  };
  const pipeline = definePipeline({
    name: BENCH,
    description: 'bench: small records through map + filter into a null sink',
    params: z.object({}),
    source: () => smalls(RECORDS, deadline),
    transform: () => pipe(map(addDouble), filter(keep)),
    // map and filter emit synchronously: the documented fast path (one subscription per run)
    syncTransform: true,
    sinks: () => [nullSink],
    maxInFlight,
  });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  deadline = t0 + BUDGET_S * 1000;
  const run = await runPipeline({ pipeline, stateDir, log: createLogger({ level: 'warn' }) });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSince(cpu0);
  const what = `sluice run (maxInFlight ${maxInFlight})`;
  if (run.status !== 'succeeded') fail(BENCH, `${what} ${run.status}: ${run.errors.map((e) => e.message).join('; ')}`);
  const items = run.counts.itemsDone;
  const partial = items < RECORDS;
  if (count !== keptAmongFirst(items)) fail(BENCH, `${what} wrote ${count} records for the first ${items} items, expected ${keptAmongFirst(items)}`);
  return { count, seconds, items, partial, cpu };
}

const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-bench-overhead-'));
note(`${BENCH}: ${RECORDS} records; maxInFlight ${MAX_IN_FLIGHT.join(', ')}`);

const base = await loop();
const baseRate = RECORDS / base.seconds;
const baseCpuRate = RECORDS / base.cpu;
note(`${BENCH}: for-await loop ${base.seconds.toFixed(2)} s (cpu ${base.cpu.toFixed(2)} s), ${Math.round(baseRate)} records/s, ${base.count} kept`);

let best: { maxInFlight: number; rate: number; cpuRate: number } | undefined;
const tried: Record<string, number> = {};
const partials: number[] = [];
for (const maxInFlight of MAX_IN_FLIGHT) {
  const r = await sluice(maxInFlight, stateDir);
  if (!r.partial && r.count !== base.count) fail(BENCH, `sluice (maxInFlight ${maxInFlight}) wrote ${r.count} records, the loop kept ${base.count}`);
  if (r.partial) partials.push(maxInFlight);
  const rate = r.items / r.seconds;
  const cpuRate = r.items / r.cpu;
  tried[maxInFlight] = Math.round(rate);
  note(`${BENCH}: sluice maxInFlight ${maxInFlight}: ${r.items} items in ${r.seconds.toFixed(2)} s${r.partial ? ` (stopped at the ${BUDGET_S} s budget)` : ''} (cpu ${r.cpu.toFixed(2)} s), ` +
    `${Math.round(rate)} records/s (${(rate / baseRate).toFixed(3)}x loop; by cpu ${(cpuRate / baseCpuRate).toFixed(3)}x)`);
  if (!best || rate > best.rate) best = { maxInFlight, rate, cpuRate };
}
await fs.rm(stateDir, { recursive: true, force: true });
if (!best) fail(BENCH, 'no maxInFlight value to try (BENCH_MAX_IN_FLIGHT is empty)');

await report({
  bench: BENCH,
  value: Math.round(best.rate),
  unit: 'records/s',
  baseline: Math.round(baseRate),
  ratio: round(best.rate / baseRate), // ≥ 0.5 meets the target
  target: TARGET,
  peak_rss_mb: peakRssMb(),
  max_in_flight: best.maxInFlight,
  cpu_ratio: round(best.cpuRate / baseCpuRate),
  records_per_s_by_max_in_flight: tried,
  partial_max_in_flight: partials,
  budget_s: BUDGET_S,
  records: RECORDS,
  kept: base.count,
  quick: QUICK,
});
