/**
 * Schedules in running daemons (child processes of the real CLI, the test broker and
 * the test ClickHouse server): two daemons fire each due time once; a schedule does
 * not overlap its own runs (skip, or queue one); schedules survive a restart, and a
 * due time missed while no daemon ran is run once (or skipped, per schedule).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileCron } from '../../runtime/scheduler/cron.ts';
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
let c: AdminDaemon | undefined;
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
  for (const d of [a, b, c]) {
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

/** Runs never overlap: each starts once the one before ended (times to the second on old servers). */
function sequential(runs: Run[]): boolean {
  for (let i = 1; i < runs.length; i++) {
    if (runs[i - 1]!.ended_at === null || runs[i]!.started_at < runs[i - 1]!.ended_at!) return false;
  }
  return true;
}

async function stopSchedule(id: string): Promise<void> {
  const r = await api(a.admin, 'DELETE', `/api/schedules/${id}`, ADMIN);
  expect(r.status).toBe(204);
  await until(`the runs of ${id} to end`, async () => (await runsOf(id)).every((x) => x.status !== 'running'), 30_000);
  for (const f of await firesOf(id)) claimQueues.add(`${n.queue}.claim.${id}.${f.due_ms}`);
}

describe('jitter', () => {
  it('delays a due time by a fixed fraction of the jitter, the same on every daemon', async () => {
    const r = await api<{ nextDue: string }>(a.admin, 'POST', '/api/schedules', ADMIN, { id: 'jittered', pipeline: 'nap', cron: '0 0 1 1 *', jitter: 3600, enabled: true });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const onB = await until('daemon b to see it', async () => (await api<{ nextDue?: string }>(b.admin, 'GET', '/api/schedules/jittered', ADMIN)).body.nextDue);
    expect(onB).toBe(r.body.nextDue);
    const due = compileCron('0 0 1 1 *').next(new Date())!.getTime();
    const delay = Date.parse(r.body.nextDue) - due;
    expect(delay).toBeGreaterThanOrEqual(0);
    expect(delay).toBeLessThan(3_600_000);
    expect((await api(a.admin, 'DELETE', '/api/schedules/jittered', ADMIN)).status).toBe(204);
  });
});

describe('no overlapping runs of one schedule', () => {
  it('overlap: skip — due times while the run goes on are skipped and counted', async () => {
    const r = await api(a.admin, 'POST', '/api/schedules', ADMIN, { id: 'slow-skip', pipeline: 'nap', params: { ms: 2500, label: 'skip' }, cron: '* * * * * *', overlap: 'skip' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    await until('3 runs and a skip', async () => {
      const runs = (await runsOf('slow-skip')).filter((x) => x.status === 'succeeded');
      const fires = await firesOf('slow-skip');
      return runs.length >= 3 && fires.some((f) => f.outcome === 'skipped');
    }, 90_000);
    await stopSchedule('slow-skip');
    const runs = await runsOf('slow-skip');
    expect(sequential(runs), JSON.stringify(runs)).toBe(true);
    const fires = await firesOf('slow-skip');
    expect(fires.filter((f) => f.outcome === 'skipped').length).toBeGreaterThan(0);
    expect(fires.filter((f) => f.outcome === 'queued')).toEqual([]);
  });

  it('overlap: queue — one run waits for the running one and starts when it ends', async () => {
    const r = await api(a.admin, 'POST', '/api/schedules', ADMIN, { id: 'slow-queue', pipeline: 'nap', params: { ms: 2500, label: 'queue' }, cron: '* * * * * *', overlap: 'queue' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const queuedThenFired = async () => {
      const metrics = await Promise.all([a, b].map(async (d) => (await fetch(`${d.url}/metrics`)).text()));
      const queued = metrics.reduce((sum, m) => sum + Number(/sluice_scheduler_fires_total\{schedule="slow-queue",outcome="queued"\} (\d+)/.exec(m)?.[1] ?? 0), 0);
      const runs = (await runsOf('slow-queue')).filter((x) => x.status === 'succeeded');
      return queued >= 2 && runs.length >= 3;
    };
    await until('queued runs that ran', queuedThenFired, 90_000);
    await stopSchedule('slow-queue');
    const runs = await runsOf('slow-queue');
    expect(sequential(runs), JSON.stringify(runs)).toBe(true);
    // a queued due time runs under its own trigger id, once
    const fired = (await firesOf('slow-queue')).filter((f) => f.outcome === 'fired');
    const ids = runs.map((x) => x.trigger_id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const f of fired.slice(0, -1)) expect(ids).toContain(f.trigger_id);
  });
});

describe('restarts', () => {
  it('schedules survive; a due time missed while no daemon ran runs once (run-once) or not at all (skip)', async () => {
    for (const [id, missed] of [['m-once', 'run-once'], ['m-skip', 'skip']] as const) {
      const r = await api(a.admin, 'POST', '/api/schedules', ADMIN, { id, pipeline: 'nap', params: { label: id }, cron: '*/5 * * * * *', missed });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    await until('a first run of each', async () => (await runsOf('m-once')).length > 0 && (await runsOf('m-skip')).length > 0, 60_000);
    for (const d of [a, b]) d.kill('SIGTERM');
    for (const d of [a, b]) expect((await d.exited).code, d.log()).toBe(0);
    const stoppedAt = Date.now();
    await sleep(16_000); // three due times pass with no daemon
    const spawnAt = Date.now();
    // a short grace period: what passed before the scheduler started counts as missed
    c = await startAdminDaemon({ ...env, SLUICE_SCHEDULER_GRACE: '200ms' });
    const listed = await api<{ id: string; missed: string }[]>(c.admin, 'GET', '/api/schedules', ADMIN);
    expect(listed.body.map((s) => s.id)).toEqual(expect.arrayContaining(['m-once', 'm-skip']));
    const byC = async (id: string) => (await firesOf(id)).filter((f) => f.daemon.endsWith(`:${c!.child.pid}`));
    await until('the first decisions of the restarted daemon', async () => (await byC('m-once')).length > 0 && (await byC('m-skip')).length > 0, 30_000);
    for (const id of ['m-once', 'm-skip']) {
      const r = await api(c.admin, 'DELETE', `/api/schedules/${id}`, ADMIN);
      expect(r.status).toBe(204);
    }
    const cron = compileCron('*/5 * * * * *');
    const dues = (from: number, to: number) => {
      const out: number[] = [];
      for (let t = cron.next(new Date(from)); t && t.getTime() <= to; t = cron.next(t)) out.push(t.getTime());
      return out;
    };
    expect(dues(stoppedAt, spawnAt).length).toBeGreaterThanOrEqual(3);
    const inGap = (f: { due_ms: string }, to: number) => Number(f.due_ms) > stoppedAt && Number(f.due_ms) <= to;
    // run-once: the restarted daemon's first decision fired the latest due time, and none of the older ones ran
    const first = (await byC('m-once'))[0]!;
    expect(first.outcome).toBe('fired');
    expect(Number(first.due_ms)).toBeGreaterThanOrEqual(Math.max(...dues(stoppedAt, spawnAt)));
    const ran = (await firesOf('m-once')).filter((f) => inGap(f, Number(first.due_ms)) && f.outcome === 'fired');
    expect(ran, JSON.stringify(await firesOf('m-once'))).toEqual([first]);
    // skip: none of the due times of the gap ran; the latest is recorded as missed
    const skipFired = (await firesOf('m-skip')).filter((f) => inGap(f, spawnAt) && f.outcome === 'fired');
    expect(skipFired).toEqual([]);
    // (unless a due time fell within the short grace period of the first look: that one fires as usual)
    const firstSkip = (await byC('m-skip'))[0]!;
    expect(firstSkip.outcome === 'missed' || Number(firstSkip.due_ms) > spawnAt, JSON.stringify(firstSkip)).toBe(true);
    for (const id of ['m-once', 'm-skip']) for (const f of await firesOf(id)) claimQueues.add(`${n.queue}.claim.${id}.${f.due_ms}`);
  });
});
