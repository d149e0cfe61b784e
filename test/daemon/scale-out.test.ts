/**
 * Scale-out: three daemon processes consume one queue and write to the ClickHouse
 * server (the embedded store is single-process). 300 triggers; one daemon is killed
 * with SIGKILL in the middle of its runs. Its unacked messages go back to the queue and
 * are run by the others; every trigger ends with its rows exactly once in the store
 * (rows are keyed by trigger: the killed run's partial rows and the rerun's collapse,
 * counted with FINAL), nothing is dead-lettered, nothing is left in the queue.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { baseEnv, Broker, names, sleep, startDaemon, testStore, unackedOf, type DaemonProcess, type Names } from './support.ts';

const TRIGGERS = 300;
const ROWS = 6;

let n: Names;
let broker: Broker;
let store: ClickHouseStore;
let dropDb: () => Promise<void>;
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  n = names('scale');
  broker = await Broker.open();
  ({ store, drop: dropDb } = await testStore(n));
});

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) d.kill('SIGKILL');
  await broker?.cleanup(n);
  await broker?.close();
  await dropDb?.();
}, 120_000);

const scalar = async (sql: string) => Number(Object.values((await store.query<Record<string, string>>(sql))[0]!)[0]);

describe('three daemons on one queue, one killed with SIGKILL mid-run', () => {
  it(`run ${TRIGGERS} triggers, each exactly once in the store`, async () => {
    const env = baseEnv(n, { SLUICE_DAEMON_CONCURRENCY: '4' });
    // started one after the other: three tsx start-ups at once on a busy machine is slow
    for (let i = 0; i < 3; i++) daemons.push(await startDaemon(env));
    const [victim, ...survivors] = daemons as [DaemonProcess, DaemonProcess, DaemonProcess];

    const keys = Array.from({ length: TRIGGERS }, (_, i) => `${n.id}-${String(i).padStart(3, '0')}`);
    await broker.publishMany(n.exchange, keys.map((key) => ({
      routingKey: 'run.rows',
      body: JSON.stringify({ pipeline: 'rows', params: { key, rows: ROWS, perPage: 2, delayMs: 100 }, id: key }),
      options: { messageId: key, contentType: 'application/json' },
    })));

    // kill the victim while it has runs going (started, not yet settled)
    const started = (log: string) => [...log.matchAll(/rows \(trigger ([^,\s)]+)\): started/g)].map((m) => m[1]!);
    const finished = (log: string) => [...log.matchAll(/rows \(trigger ([^,\s)]+)[^)\n]*\): (?:succeeded|failed)/g)].map((m) => m[1]!);
    let inFlight: string[] = [];
    for (let i = 0; i < 2400; i++) {
      const log = victim.log();
      const done = new Set(finished(log));
      inFlight = started(log).filter((k) => !done.has(k));
      if (finished(log).length >= 3 && inFlight.length >= 1) break;
      await sleep(25);
    }
    expect(inFlight.length, victim.log()).toBeGreaterThan(0);
    victim.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');
    // runs it had in flight at the kill (it may have started more between the look and the kill)
    const settledByVictim = new Set(finished(victim.log()));
    const killedRuns = started(victim.log()).filter((k) => !settledByVictim.has(k));
    expect(killedRuns.length).toBeGreaterThan(0);

    // wait for every trigger to have a succeeded run and the queue to be empty
    for (let i = 0; ; i++) {
      const done = await scalar(`SELECT uniqExact(trigger_id) FROM sluice_runs FINAL WHERE status = 'succeeded' AND trigger_id LIKE '${n.id}-%'`).catch(() => 0);
      if (done === TRIGGERS) break;
      if (i > 2400) throw new Error(`only ${done} of ${TRIGGERS} triggers succeeded after 4 minutes:\n${survivors.map((d) => d.log().slice(-3000)).join('\n---\n')}`);
      await sleep(100);
    }
    for (let i = 0; i < 100; i++) {
      if ((await broker.count(n.queue)).messages === 0 && (await unackedOf(survivors[0].child.pid!)) + (await unackedOf(survivors[1].child.pid!)) === 0) break;
      await sleep(100);
    }
    expect((await broker.count(n.queue)).messages).toBe(0);
    expect((await broker.count(n.dead)).messages).toBe(0);

    // exactly once in the store
    expect(await scalar(`SELECT count() FROM daemon_rows FINAL`)).toBe(TRIGGERS * ROWS);
    expect(await scalar(`SELECT uniqExact(key, n) FROM daemon_rows`)).toBe(TRIGGERS * ROWS);
    expect(await scalar(`SELECT uniqExact(key) FROM daemon_rows`)).toBe(TRIGGERS);
    const perKey = await store.query<{ key: string; c: string }>(`SELECT key, count() AS c FROM daemon_rows FINAL GROUP BY key HAVING c != ${ROWS}`);
    expect(perKey).toEqual([]);

    // the killed daemon's messages were redelivered and run again by the others
    for (const key of killedRuns) {
      const runs = await store.query<{ status: string }>(`SELECT status FROM sluice_runs FINAL WHERE trigger_id = '${key}'`);
      expect(runs.map((r) => r.status), key).toContain('succeeded');
      expect(runs.map((r) => r.status), key).not.toContain('failed');
      const rerunBy = survivors.filter((d) => new RegExp(`rows \\(trigger ${key}[,)][^\\n]*: succeeded`).test(d.log()));
      expect(rerunBy, key).toHaveLength(1);
      // it came back redelivered and was queued again with its redelivery count
      expect(survivors.some((d) => d.log().includes(`message ${key} was redelivered (1 time`)), key).toBe(true);
      expect(await scalar(`SELECT count() FROM daemon_rows FINAL WHERE key = '${key}'`), key).toBe(ROWS);
    }
    // the work was shared
    for (const d of survivors) expect(d.log()).toMatch(/succeeded in \d+ ms, acked/);
    const succeeded = await scalar(`SELECT count() FROM sluice_runs FINAL WHERE status = 'succeeded' AND trigger_id LIKE '${n.id}-%'`);
    expect(succeeded).toBeGreaterThanOrEqual(TRIGGERS);
    expect(succeeded).toBeLessThanOrEqual(TRIGGERS + killedRuns.length);

    for (const d of survivors) d.kill('SIGTERM');
    for (const d of survivors) expect((await d.exited).code).toBe(0);
  }, 600_000);
});
