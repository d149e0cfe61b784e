/**
 * AMQP trigger overhead: what running a pipeline through the daemon costs on top of
 * running it in-process. Target: ≤ 2 ms per run at p50.
 *
 * Two daemons (`sluice serve`, child processes) consume one queue; both write their run
 * records to the ClickHouse server of scripts/services.sh (two daemons cannot share the
 * embedded store). A small pipeline (3 records into a null sink) is triggered 1,000
 * times by a client like `fire --wait`: publish with confirms, wait for the result on a
 * reply queue; two triggers outstanding at a time (one per daemon), so the latency is
 * the path's, not queueing. Then the same 1,000 triggers at once, for throughput.
 *
 * Baseline, in the same run: the same pipeline run 1,000 times in this process with
 * `runPipeline`, two at a time, with the same run store (run records in the same
 * ClickHouse server), so both sides do the same store work.
 *
 * value: the p50 of the trigger path's own cost, ms: for each trigger, its
 *   trigger-to-done latency (publish → result received) minus the wall time the daemon
 *   spent in the run (`runMs` in the result; it includes the run-record writes). Paired
 *   per trigger, so the store's latency (tens of ms on a busy 18.16 server, and noisy)
 *   cancels out instead of swamping a few milliseconds.
 * baseline: p50 in-process run time, ms (what the same run costs without AMQP).
 * ratio: value / baseline.
 * Extra: p50/p99 latency, `p50_difference_ms` (p50 latency − baseline p50: the unpaired,
 * noisier estimate of the same overhead), `amqp_round_trip_p50_ms` (a bare amqplib echo
 * process on the same broker: the floor any broker-triggered run pays on this machine),
 * runs per second (closed loop, burst, in-process), the daemons' peak RSS.
 *
 * `BENCH_QUICK=1`: 200 triggers. `BENCH_TRIGGERS` overrides the count.
 * Needs RabbitMQ on 127.0.0.1:5672 (or `SLUICE_TEST_AMQP_URL`) and the test ClickHouse
 * server (`SLUICE_TEST_CLICKHOUSE_URL`, or `.sluice/services/env` from scripts/services.sh).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import amqp, { type ConsumeMessage } from 'amqplib';
import { Registry } from 'prom-client';
import { ClickHouseRunStore } from '../runtime/clickhouse/run-store.ts';
import { openServerStore } from '../runtime/clickhouse/server-store.ts';
import { quoteIdentifier } from '../runtime/clickhouse/store.ts';
import { createLogger } from '../runtime/log.ts';
import { loadPipeline } from '../runtime/pipeline-loader.ts';
import { runPipeline } from '../runtime/runner.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

const BENCH = 'amqp-trigger';
const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const QUICK = process.env.BENCH_QUICK === '1';
const TRIGGERS = Number(process.env.BENCH_TRIGGERS ?? (QUICK ? 200 : 1000));
const WARMUP = 50;
const OUTSTANDING = 2;
const TARGET_MS = 2;
const AMQP_URL = process.env.SLUICE_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

function clickhouseUrl(): string {
  if (process.env.SLUICE_TEST_CLICKHOUSE_URL) return process.env.SLUICE_TEST_CLICKHOUSE_URL;
  try {
    const m = /^SLUICE_TEST_CLICKHOUSE_URL=(.*)$/m.exec(readFileSync(path.join(ROOT, '.sluice', 'services', 'env'), 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    // below
  }
  return fail(BENCH, 'no ClickHouse server: run scripts/services.sh (or set SLUICE_TEST_CLICKHOUSE_URL)');
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** The small pipeline, written where both the daemons and this process load it from. */
async function writePipeline(dir: string): Promise<void> {
  const runtime = (f: string) => pathToFileURL(path.join(ROOT, 'runtime', f)).href;
  await fs.writeFile(path.join(dir, 'tiny.ts'), `
import { z } from 'zod';
import { definePipeline, item, type Sink } from '${runtime('pipeline.ts')}';
const discard: Sink<{ n: number; key: string }> = { name: 'discard', kind: 'null', write: () => undefined };
export default definePipeline({
  name: 'tiny',
  description: 'three records into a null sink',
  params: z.object({ key: z.string().default('k') }),
  source: ({ params }) => [0, 1, 2].map((n) => item(params.key + '#' + n, { n, key: params.key })),
  sinks: () => [discard],
});
`);
}

async function main(): Promise<void> {
  const id = `sluicebench-${randomBytes(4).toString('hex')}`;
  const queue = `${id}.q`;
  const exchange = `${id}.x`;
  const database = `sluice_bench_${id.slice(-8)}`;
  const chUrl = clickhouseUrl();
  // under the project, so the pipeline file finds zod in node_modules
  await fs.mkdir(path.join(ROOT, '.sluice'), { recursive: true });
  const dir = await fs.mkdtemp(path.join(ROOT, '.sluice', 'bench-amqp-'));
  const pipelines = path.join(dir, 'pipelines');
  await fs.mkdir(pipelines);
  await writePipeline(pipelines);
  process.env.SLUICE_PIPELINES_DIR = pipelines;

  const store = await openServerStore({ url: chUrl, database });
  // Nagle off, as in sluice's own connections (a small publish must not wait for an ACK)
  const model = await amqp.connect(AMQP_URL, { noDelay: true });
  model.on('error', () => undefined);
  const daemons: { child: ChildProcess; port: number }[] = [];
  const cleanup = async () => {
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGTERM');
    await Promise.all(daemons.map((d) => new Promise((r) => (d.child.exitCode !== null ? r(null) : d.child.once('close', r)))));
    for (const q of [queue, `${queue}.retry`, `${queue}.dead`]) {
      const ch = await model.createChannel();
      ch.on('error', () => undefined);
      await ch.deleteQueue(q).catch(() => undefined);
      await ch.close().catch(() => undefined);
    }
    for (const x of [exchange, `${queue}.dlx`]) {
      const ch = await model.createChannel();
      ch.on('error', () => undefined);
      await ch.deleteExchange(x).catch(() => undefined);
      await ch.close().catch(() => undefined);
    }
    await model.close().catch(() => undefined);
    await store.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(database)}`).catch(() => undefined);
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  };

  try {
    // ---- baseline: in-process runs, two at a time, run records in the same server ------
    const pipeline = await loadPipeline('tiny', pipelines);
    const runStore = new ClickHouseRunStore(store);
    const registry = new Registry();
    const log = createLogger({ level: 'warn' });
    const runOnce = async (key: string) => {
      const t0 = performance.now();
      const record = await runPipeline({ pipeline, params: { key }, trigger: 'cli', runStore, registry, log, stateDir: dir, openStore: () => Promise.resolve(store), keepStoreOpen: true });
      if (record.status !== 'succeeded') fail(BENCH, `baseline run ${record.id} ${record.status}`);
      return performance.now() - t0;
    };
    const closedLoop = async (n: number, one: (i: number) => Promise<number>): Promise<{ latencies: number[]; seconds: number }> => {
      const latencies: number[] = [];
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: OUTSTANDING }, async () => {
        while (next < n) {
          const i = next++;
          latencies.push(await one(i));
        }
      }));
      return { latencies, seconds: (performance.now() - t0) / 1000 };
    };
    note(`baseline: ${WARMUP} warm-up + ${TRIGGERS} in-process runs, ${OUTSTANDING} at a time`);
    await closedLoop(WARMUP, (i) => runOnce(`warm-${i}`));
    const base = await closedLoop(TRIGGERS, (i) => runOnce(`base-${i}`));
    const baseSorted = [...base.latencies].sort((a, b) => a - b);
    const baseP50 = percentile(baseSorted, 50);
    note(`baseline p50 ${round(baseP50, 2)} ms, p99 ${round(percentile(baseSorted, 99), 2)} ms, ${round(TRIGGERS / base.seconds, 1)} runs/s`);

    // ---- two daemons ----------------------------------------------------------------------
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), 'serve', '--state-dir', path.join(dir, `state-${i}`)], {
        cwd: ROOT,
        env: {
          ...process.env,
          SLUICE_PIPELINES_DIR: pipelines,
          SLUICE_AMQP_URL: AMQP_URL,
          SLUICE_DAEMON_QUEUE: queue,
          SLUICE_DAEMON_EXCHANGE: exchange,
          SLUICE_DAEMON_HTTP_PORT: String(port),
          SLUICE_DAEMON_CONCURRENCY: '4',
          SLUICE_CLICKHOUSE_URL: chUrl,
          SLUICE_CLICKHOUSE_DATABASE: database,
          SLUICE_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d) => { stderr += d; });
      daemons.push({ child, port });
      for (let t = 0; ; t++) {
        const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
        if (ok) break;
        if (child.exitCode !== null || t > 1200) fail(BENCH, `daemon ${i} did not start:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    // the client: confirmed publishes, results on an exclusive reply queue
    const pub = await model.createConfirmChannel();
    const sub = await model.createChannel();
    const reply = (await sub.assertQueue('', { exclusive: true, autoDelete: true, durable: false })).queue;
    const waiting = new Map<string, (result: { status: string; runMs?: number }) => void>();
    await sub.consume(reply, (m: ConsumeMessage | null) => {
      if (!m) return;
      const done = waiting.get(m.properties.correlationId as string);
      if (!done) return;
      const result = JSON.parse(m.content.toString()) as { status: string; runMs?: number };
      if (result.status === 'retrying') return;
      waiting.delete(m.properties.correlationId as string);
      done(result);
    }, { noAck: true });
    /** per trigger: latency, and latency minus the daemon's time in the run (the path's own cost) */
    const overheads: number[] = [];
    const trigger = async (key: string): Promise<number> => {
      const correlationId = randomUUID();
      const t0 = performance.now();
      const result = new Promise<{ status: string; runMs?: number }>((resolve) => waiting.set(correlationId, resolve));
      await new Promise<void>((resolve, reject) => {
        pub.publish(exchange, 'run.tiny', Buffer.from(JSON.stringify({ pipeline: 'tiny', params: { key }, id: key })), {
          persistent: true, correlationId, replyTo: reply, messageId: key, contentType: 'application/json',
          headers: { 'x-sluice-published-at': Date.now() },
        }, (err: unknown) => (err ? reject(err) : resolve()));
      });
      const { status, runMs } = await result;
      const latency = performance.now() - t0;
      if (status !== 'succeeded') fail(BENCH, `trigger ${key}: ${status}`);
      if (typeof runMs !== 'number') fail(BENCH, 'the daemon did not report runMs');
      overheads.push(latency - runMs);
      return latency;
    };

    note(`daemons: ${WARMUP} warm-up + ${TRIGGERS} triggers, ${OUTSTANDING} outstanding`);
    await closedLoop(WARMUP, (i) => trigger(`${id}-warm-${i}`));
    overheads.length = 0;
    const loop = await closedLoop(TRIGGERS, (i) => trigger(`${id}-${i}`));
    const sorted = [...loop.latencies].sort((a, b) => a - b);
    const p50 = percentile(sorted, 50);
    const p99 = percentile(sorted, 99);
    const pathSorted = overheads.splice(0).sort((a, b) => a - b);
    const overhead = percentile(pathSorted, 50);
    note(`through the daemons: p50 ${round(p50, 2)} ms, p99 ${round(p99, 2)} ms, ${round(TRIGGERS / loop.seconds, 1)} runs/s; the path's own cost p50 ${round(overhead, 2)} ms, p99 ${round(percentile(pathSorted, 99), 2)} ms`);

    note(`burst: ${TRIGGERS} triggers at once`);
    const tBurst = performance.now();
    await Promise.all(Array.from({ length: TRIGGERS }, (_, i) => trigger(`${id}-burst-${i}`)));
    const burstSeconds = (performance.now() - tBurst) / 1000;
    note(`burst: ${round(TRIGGERS / burstSeconds, 1)} runs/s`);

    // the floor under the path: a bare amqplib echo in another process, same broker, same client
    const floor = await echoRoundTrip(model, dir, Math.min(TRIGGERS, 500));
    note(`bare AMQP round trip (client → broker → echo process → broker → client): p50 ${round(floor, 2)} ms`);

    const daemonRss = daemons.map((d) => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${d.child.pid}/status`, 'utf8'));
        return m ? round(Number(m[1]) / 1024, 1) : null;
      } catch {
        return null;
      }
    });
    await report({
      bench: BENCH,
      value: round(overhead, 2),
      unit: 'ms',
      baseline: round(baseP50, 2),
      ratio: round(overhead / baseP50, 3),
      target: TARGET_MS,
      peak_rss_mb: peakRssMb(),
      daemon_peak_rss_mb: daemonRss,
      triggers: TRIGGERS,
      daemons: 2,
      outstanding: OUTSTANDING,
      overhead_p99_ms: round(percentile(pathSorted, 99), 2),
      amqp_round_trip_p50_ms: round(floor, 2),
      p50_difference_ms: round(p50 - baseP50, 2),
      p50_ms: round(p50, 2),
      p99_ms: round(p99, 2),
      baseline_p99_ms: round(percentile(baseSorted, 99), 2),
      runs_per_s: round(TRIGGERS / loop.seconds, 1),
      baseline_runs_per_s: round(TRIGGERS / base.seconds, 1),
      burst_runs_per_s: round(TRIGGERS / burstSeconds, 1),
      quick: QUICK,
    });
  } finally {
    await cleanup();
  }
}

/** p50 of publish → reply through an echo process that acks and answers at once: what any AMQP trigger costs on this machine. */
async function echoRoundTrip(model: amqp.ChannelModel, dir: string, n: number): Promise<number> {
  const queue = `sluicebench-echo-${randomBytes(4).toString('hex')}`;
  const file = path.join(dir, 'echo.mts');
  await fs.writeFile(file, `
import amqp from 'amqplib';
const c = await amqp.connect(${JSON.stringify(AMQP_URL)}, { noDelay: true });
const ch = await c.createConfirmChannel();
await ch.prefetch(4);
await ch.consume(${JSON.stringify(queue)}, (m) => {
  if (!m) return;
  ch.ack(m);
  ch.publish('', m.properties.replyTo, Buffer.from('{}'), { correlationId: m.properties.correlationId }, () => undefined);
});
process.stdout.write('ready\\n');
`);
  const ch = await model.createConfirmChannel();
  await ch.assertQueue(queue, { durable: true });
  const reply = (await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false })).queue;
  const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  const waiting = new Map<string, () => void>();
  await ch.consume(reply, (m) => { if (m) waiting.get(m.properties.correlationId as string)?.(); }, { noAck: true });
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = String(i);
    const t0 = performance.now();
    const got = new Promise<void>((r) => waiting.set(id, r));
    ch.publish('', queue, Buffer.from('{}'), { persistent: true, correlationId: id, replyTo: reply }, () => undefined);
    await got;
    lat.push(performance.now() - t0);
  }
  child.kill();
  await ch.deleteQueue(queue).catch(() => undefined);
  await ch.close().catch(() => undefined);
  return percentile(lat.sort((a, b) => a - b), 50);
}

main().then(() => process.exit(0), (err: unknown) => fail(BENCH, (err as Error)?.stack ?? String(err)));
