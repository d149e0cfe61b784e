/**
 * A schedule that triggers a mirror sync in the running daemon: a daemon (the real
 * CLI, the test broker and ClickHouse server) with the password of the project in its
 * environment, a local rsync daemon upstream, a schedule added through the admin API
 * in the old tool's named-field form; the sync runs (trigger `schedule`), its history
 * row and files land, and "sync now" through the API runs it too (trigger `api`).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { Broker, names, testStore, type Names } from '../daemon/support.ts';
import { addUser, api, basic, scheduleEnv, startAdminDaemon, until, type AdminDaemon } from '../scheduler/support.ts';
import { startRsyncDaemon, type RsyncDaemon } from './rsync-daemon.ts';

const PASSWORD = 'sched-sync-s3cret';
let n: Names;
let broker: Broker;
let store: ClickHouseStore;
let dropDb: () => Promise<void>;
let rsyncd: RsyncDaemon;
let daemon: AdminDaemon;
let dest: string;
const OPERATOR = basic('ops', 'ops-password-1');
const ADMIN = basic('root', 'root-password-1');

beforeAll(async () => {
  n = names('msync');
  broker = await Broker.open();
  ({ store, drop: dropDb } = await testStore(n));
  rsyncd = await startRsyncDaemon({ mirrorproj: PASSWORD });
  await writeFile(path.join(rsyncd.root, 'README'), 'a mirror\n');
  dest = await mkdtemp(path.join(os.tmpdir(), 'sluice-sched-mirror-'));
  const env = scheduleEnv(n, { SLUICE_RSYNC_PASSWORD_MIRRORPROJ: PASSWORD });
  for (const [user, role, pw] of [['root', 'admin', 'root-password-1'], ['ops', 'operator', 'ops-password-1']] as const) {
    const r = await addUser(env, user, role, pw);
    expect(r.code, r.stderr).toBe(0);
  }
  daemon = await startAdminDaemon(env);
}, 180_000);

afterAll(async () => {
  if (daemon) {
    daemon.kill('SIGTERM');
    expect((await daemon.exited).code, daemon.log()).toBe(0);
  }
  await rsyncd?.stop();
  await broker?.cleanup(n);
  await broker?.close();
  await dropDb?.();
  await rm(dest, { recursive: true, force: true });
}, 120_000);

describe('a schedule in the running daemon', () => {
  it('triggers the sync; the history row and the files land; "sync now" runs it too', async () => {
    const params = { project: 'mirrorproj', host: `127.0.0.1:${rsyncd.port}`, module: rsyncd.module, dest, delete: 'delete-delay' };
    const added = await api(daemon.admin, 'POST', '/api/schedules', ADMIN, { id: 'mirrorproj', pipeline: 'mirror-sync', params, cron: { second: '*/3' } });
    expect(added.status, JSON.stringify(added.body)).toBe(201);
    expect(added.body).toMatchObject({ expression: '*/3 * * * * * *', overlap: 'skip' });
    const history = await until('a scheduled sync in mirror_syncs', async () => {
      const rows = await store.query<{ run_id: string; ok: number; files_transferred: string }>('SELECT run_id, ok, files_transferred FROM mirror_syncs');
      return rows.length ? rows : undefined;
    }, 90_000);
    expect(history[0]).toMatchObject({ ok: 1, files_transferred: '1' });
    // the run record's last save comes after its sinks flushed: wait for it
    const run = await until('the scheduled run to be recorded as finished', async () => {
      const rows = await store.query<{ trigger: string; trigger_id: string; status: string }>(`SELECT trigger, trigger_id, status FROM sluice_runs FINAL WHERE id = '${history[0]!.run_id}'`);
      return rows[0] && rows[0].status !== 'running' ? rows : undefined;
    }, 60_000);
    expect(run[0]).toMatchObject({ trigger: 'schedule', status: 'succeeded' });
    const due = /^schedule:mirrorproj:(\d{4}-\d\d-\d\dT\d\d:\d\d:(\d\d)\.000Z)$/.exec(run[0]!.trigger_id);
    expect(due, run[0]!.trigger_id).not.toBeNull();
    expect(Number(due![2]) % 3).toBe(0);
    expect(await readFile(path.join(dest, 'mirrorproj', 'README'), 'utf8')).toBe('a mirror\n');

    // pause it (an operator may), then "sync now"
    const off = await api(daemon.admin, 'POST', '/api/schedules/mirrorproj/disable', OPERATOR);
    expect(off.status).toBe(200);
    await writeFile(path.join(rsyncd.root, 'NEW'), 'new file\n');
    const now = await api<{ triggerId: string }>(daemon.admin, 'POST', '/api/schedules/mirrorproj/runs', OPERATOR);
    expect(now.status, JSON.stringify(now.body)).toBe(202);
    const done = await until('the "sync now" run', async () => {
      const runs = await api<{ status: string; trigger: string }[]>(daemon.admin, 'GET', `/api/runs?trigger=${encodeURIComponent(now.body.triggerId)}`, OPERATOR);
      return runs.body.find((r) => r.status === 'succeeded');
    }, 60_000);
    expect(done.trigger).toBe('api');
    expect(await readFile(path.join(dest, 'mirrorproj', 'NEW'), 'utf8')).toBe('new file\n');
    // the password is nowhere in what the API or the log shows
    const everything = JSON.stringify((await api(daemon.admin, 'GET', '/api/runs?pipeline=mirror-sync', OPERATOR)).body)
      + JSON.stringify((await api(daemon.admin, 'GET', '/api/schedules', OPERATOR)).body) + daemon.log();
    expect(everything).not.toContain(PASSWORD);
  });
});
