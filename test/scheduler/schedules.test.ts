/**
 * Schedules in running daemons (child processes of the real CLI, the test broker and
 * the test ClickHouse server): two daemons fire each due time once; a schedule does
 * not overlap its own runs (skip, or queue one); schedules survive a restart, and a
 * due time missed while no daemon ran is run once (or skipped, per schedule).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { Broker, names, testStore, type Names } from '../daemon/support.ts';
import { addUser, api, basic, scheduleEnv, sleep, startAdminDaemon, until, type AdminDaemon } from './support.ts';

let n: Names;
let broker: Broker;
let store: ClickHouseStore;
let dropDb: () => Promise<void>;
let env: NodeJS.ProcessEnv;
let a: AdminDaemon;
let b: AdminDaemon;
const ADMIN = basic('root', 'root-password-1');
const claimQueues = new Set<string>();

interface Run { id: string; status: string; trigger: string; trigger_id: string; started_at: string; ended_at: string | null }
async function runsOf(scheduleId: string): Promise<Run[]> {
  return store.query<Run>(`SELECT id, status, trigger, trigger_id, toString(started_at) AS started_at, toString(ended_at) AS ended_at FROM sluice_runs FINAL WHERE trigger_id LIKE 'schedule:${scheduleId}:%' ORDER BY started_at, id`);
}
async function firesOf(scheduleId: string): Promise<{ due_ms: string; outcome: string; trigger_id: string; daemon: string }[]> {
  return store.query(`SELECT due_ms, outcome, trigger_id, daemon FROM sluice_schedule_fires FINAL WHERE schedule_id = '${scheduleId}' ORDER BY due_ms`);
}

beforeAll(async () => {
  n = names('sched');
  broker = await Broker.open();
  ({ store, drop: dropDb } = await testStore(n));
  env = scheduleEnv(n);
  const added = await addUser(env, 'root', 'admin', 'root-password-1');
  expect(added.code, added.stderr).toBe(0);
  [a, b] = await Promise.all([startAdminDaemon(env), startAdminDaemon(env)]);
}, 180_000);

afterAll(async () => {
  for (const d of [a, b]) {
    if (!d) continue;
    d.kill('SIGTERM');
    const exit = await d.exited;
    expect(exit.code, d.log()).toBe(0);
  }
  const ch = await broker?.fresh();
  for (const q of claimQueues) await ch?.deleteQueue(q).catch(() => undefined);
  await broker?.cleanup(n);
  await broker?.close();
  await dropDb?.();
}, 120_000);

describe('schedules in two daemons', () => {
  it('each due time fires once, not once per daemon; the runs carry trigger "schedule"', async () => {
    const r = await api(a.admin, 'POST', '/api/schedules', ADMIN, { id: 'every2', pipeline: 'nap', params: { label: 'every2' }, cron: '*/2 * * * * *' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    // the other daemon sees it through the store
    await until('daemon b to list the schedule', async () => (await api(b.admin, 'GET', '/api/schedules/every2', ADMIN)).status === 200);
    await until('6 runs', async () => (await runsOf('every2')).filter((x) => x.status === 'succeeded').length >= 6, 90_000);
    const off = await api(a.admin, 'POST', '/api/schedules/every2/disable', ADMIN);
    expect(off.status).toBe(200);
    expect(off.body).toMatchObject({ id: 'every2', enabled: false });
    await sleep(3000);
    const runs = await runsOf('every2');
    const fires = (await firesOf('every2')).filter((f) => f.outcome === 'fired');
    const perTrigger = new Map<string, number>();
    for (const run of runs) perTrigger.set(run.trigger_id, (perTrigger.get(run.trigger_id) ?? 0) + 1);
    expect([...perTrigger.values()].every((c) => c === 1), JSON.stringify([...perTrigger])).toBe(true);
    expect(new Set(fires.map((f) => f.trigger_id))).toEqual(new Set(perTrigger.keys()));
    expect(runs.every((x) => x.trigger === 'schedule')).toBe(true);
    for (const f of fires) {
      expect(f.trigger_id).toBe(`schedule:every2:${new Date(Number(f.due_ms)).toISOString()}`);
      expect(Number(f.due_ms) % 2000).toBe(0);
      claimQueues.add(`${n.queue}.claim.every2.${f.due_ms}`);
    }
    // each daemon saw every due time; the other's firings count as claimed elsewhere
    const metrics = await Promise.all([a, b].map(async (d) => (await fetch(`${d.url}/metrics`)).text()));
    const fired = metrics.map((m) => Number(/sluice_scheduler_fires_total\{schedule="every2",outcome="fired"\} (\d+)/.exec(m)?.[1] ?? 0));
    expect(fired[0]! + fired[1]!).toBe(fires.length);
  });
});
