/**
 * Bounded memory: 2 GiB of ~1 KiB records from a lazy source into a sink that accepts
 * 5,000 records/s for the first 60 s and then as fast as it can. The runner's flow
 * control must hold the source back while the sink is slow, so the peak RSS stays under
 * 256 MiB whatever the size of the source.
 *
 * value: peak RSS of this process in MiB (the kernel's high-water mark, `maxRSS`).
 * baseline: the RSS right after startup, before the run (modules loaded, nothing pulled).
 *   We chose it over "the same generator drained by a plain for-await loop into the same
 *   throttled consumer" for simplicity: it shows how much the run itself adds.
 * target: 256 MiB. Lower is better, so ratio = value / target, and ratio ≤ 1 meets the
 *   target (unlike throughput benchmarks, where ratio ≥ target meets it).
 *
 * The bench also checks that every record arrived exactly once (count, sum of indexes,
 * bytes) and exits non-zero if not.
 *
 * `BENCH_QUICK=1`: 200,000 records and a 10 s slow phase, for a smoke run.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { createLogger } from '../runtime/log.ts';
import { definePipeline, type Sink } from '../runtime/pipeline.ts';
import { runPipeline } from '../runtime/runner.ts';
import { fail, note, peakRssMb, report, round, rssMb } from './report.ts';

const BENCH = 'bounded-memory';
const QUICK = process.env.BENCH_QUICK === '1';
const PAYLOAD_BYTES = 1024;
/** 2 GiB of 1 KiB payloads */
const RECORDS = QUICK ? 200_000 : (2 * 1024 ** 3) / PAYLOAD_BYTES;
const SLOW_RATE = 5_000; // records/s
const SLOW_MS = QUICK ? 10_000 : 60_000;
const TARGET_MB = 256;

interface Rec {
  readonly i: number;
  readonly payload: string;
}

/** Records made one at a time as they are pulled: each payload is a fresh 1 KiB string. */
async function* records(n: number): AsyncGenerator<Rec> {
  const scratch = Buffer.alloc(PAYLOAD_BYTES, 'abcdefghijklmnopqrstuvwxyz0123456789');
  for (let i = 0; i < n; i++) {
    scratch.write(`${i}:`, 0, 'latin1');
    yield { i, payload: scratch.toString('latin1') };
  }
}

const baselineMb = rssMb();
const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-bench-memory-'));

// what the sink saw, checked at the end
let written = 0;
let indexSum = 0;
let payloadChars = 0;

const runStart = performance.now();
let admitted = 0;
const sink: Sink<Rec> = {
  name: 'throttled',
  kind: 'null',
  batch: { maxRecords: 500, maxDelayMs: 100 },
  write: async (batch) => {
    const now = performance.now();
    if (now - runStart < SLOW_MS) {
      // 5,000 records/s: this batch may be accepted once the records before it and it
      // fit into the time since the start
      admitted += batch.length;
      const due = runStart + (admitted / SLOW_RATE) * 1000;
      if (due > now) await sleep(due - now);
    }
    for (const r of batch) {
      indexSum += r.i;
      payloadChars += r.payload.length;
    }
    written += batch.length;
  },
};

const pipeline = definePipeline({
  name: BENCH,
  description: 'bench: 2 GiB of 1 KiB records into a slow, then fast sink',
  params: z.object({}),
  source: () => records(RECORDS),
  sinks: () => [sink],
});

// sample RSS so the log shows when memory grew (the reported peak is the kernel's)
let sampledPeakMb = 0;
let slowPhasePeakMb = 0;
let heapPeakMb = 0;
let heapTotalPeakMb = 0;
let externalPeakMb = 0;
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  const rss = m.rss / 1024 ** 2;
  sampledPeakMb = Math.max(sampledPeakMb, rss);
  heapPeakMb = Math.max(heapPeakMb, m.heapUsed / 1024 ** 2);
  heapTotalPeakMb = Math.max(heapTotalPeakMb, m.heapTotal / 1024 ** 2);
  externalPeakMb = Math.max(externalPeakMb, m.external / 1024 ** 2);
  if (performance.now() - runStart < SLOW_MS) slowPhasePeakMb = Math.max(slowPhasePeakMb, rss);
}, 50);
const progress = setInterval(() => {
  const s = (performance.now() - runStart) / 1000;
  note(`${BENCH}: ${s.toFixed(0)} s, ${written} of ${RECORDS} records written, rss ${rssMb()} MiB`);
}, 5_000);

note(`${BENCH}: ${RECORDS} records of ${PAYLOAD_BYTES} B; sink at ${SLOW_RATE}/s for ${SLOW_MS / 1000} s, then unthrottled; baseline rss ${baselineMb} MiB`);
let slowPhaseWritten = -1;
const phaseMark = setTimeout(() => { slowPhaseWritten = written; }, SLOW_MS);
const run = await runPipeline({ pipeline, stateDir, log: createLogger({ level: 'warn' }) });
const seconds = (performance.now() - runStart) / 1000;
clearInterval(sampler);
clearInterval(progress);
clearTimeout(phaseMark);
await fs.rm(stateDir, { recursive: true, force: true });

const expectedIndexSum = (RECORDS * (RECORDS - 1)) / 2;
const problems: string[] = [];
if (run.status !== 'succeeded') problems.push(`run ${run.status}: ${run.errors.map((e) => e.message).join('; ')}`);
if (written !== RECORDS) problems.push(`sink got ${written} records, expected ${RECORDS}`);
if (indexSum !== expectedIndexSum) problems.push(`sum of record indexes ${indexSum}, expected ${expectedIndexSum} (records lost or repeated)`);
if (payloadChars !== RECORDS * PAYLOAD_BYTES) problems.push(`sink saw ${payloadChars} payload bytes, expected ${RECORDS * PAYLOAD_BYTES}`);
if (run.counts.recordsBySink[sink.name] !== RECORDS) problems.push(`run record says ${run.counts.recordsBySink[sink.name]} records written`);
if (problems.length) fail(BENCH, problems.join('; '));

const peak = peakRssMb();
note(`${BENCH}: done in ${seconds.toFixed(1)} s; peak rss ${peak} MiB (sampled ${round(sampledPeakMb, 1)}, slow phase ${round(slowPhasePeakMb, 1)}), heap used peak ${round(heapPeakMb, 1)} MiB, heap total peak ${round(heapTotalPeakMb, 1)} MiB`);
await report({
  bench: BENCH,
  value: peak,
  unit: 'MiB',
  baseline: baselineMb,
  ratio: round(peak / TARGET_MB), // ≤ 1 meets the target (lower is better)
  target: TARGET_MB,
  peak_rss_mb: peak,
  records: RECORDS,
  source_mib: round((RECORDS * PAYLOAD_BYTES) / 1024 ** 2, 1),
  duration_s: round(seconds, 1),
  slow_phase_s: SLOW_MS / 1000,
  slow_phase_records: slowPhaseWritten,
  slow_phase_peak_rss_mb: round(slowPhasePeakMb, 1),
  sampled_peak_rss_mb: round(sampledPeakMb, 1),
  heap_used_peak_mb: round(heapPeakMb, 1),
  heap_total_peak_mb: round(heapTotalPeakMb, 1),
  external_peak_mb: round(externalPeakMb, 1),
  quick: QUICK,
});
