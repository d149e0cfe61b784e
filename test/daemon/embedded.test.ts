/**
 * A daemon on the embedded store (chDB, one process per directory): `npm run query`
 * and `pipeline runs` go through the daemon's read-only query endpoint instead of
 * failing on the lock; writes are refused there; a second daemon on the same store
 * refuses to start with a clear message.
 */
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunRecord } from '../../runtime/run-record.ts';
import { readDaemonFile } from '../../runtime/daemon/daemon-file.ts';
import { baseEnv, Broker, cli, names, startDaemon, type DaemonProcess, type Names } from './support.ts';

let n: Names;
let broker: Broker;
let daemon: DaemonProcess;
let env: NodeJS.ProcessEnv;
let stateDir: string;

beforeAll(async () => {
  n = names('embedded');
  broker = await Broker.open();
  stateDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-daemon-embedded-'));
  env = baseEnv(n, { SLUICE_STATE_DIR: stateDir });
  delete env.SLUICE_CLICKHOUSE_URL;
  delete env.SLUICE_CLICKHOUSE_DATABASE;
  daemon = await startDaemon(env, [], { stateDir });
}, 180_000);

afterAll(async () => {
  if (daemon && daemon.child.exitCode === null) {
    daemon.kill('SIGTERM');
    await daemon.exited;
  }
  await broker?.cleanup(n);
  await broker?.close();
}, 120_000);

describe('while the daemon holds the embedded store', () => {
  it('query and pipeline runs go through its read-only query endpoint', async () => {
    const r = await cli(['fire', 'flaky', '--param', 'items=2', '--id', `${n.id}-1`, '--wait'], env);
    expect(r.code, r.stderr).toBe(0);

    const q = await cli(['query', `SELECT trigger, trigger_id, status FROM sluice_runs FINAL WHERE trigger_id = '${n.id}-1'`, '--format', 'json', '--state-dir', stateDir], env);
    expect(q.code, q.stderr).toBe(0);
    expect(JSON.parse(q.stdout)).toEqual([{ trigger: 'amqp', trigger_id: `${n.id}-1`, status: 'succeeded' }]);
    const table = await cli(['query', 'SELECT count() AS runs FROM sluice_runs FINAL', '--state-dir', stateDir], env);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/│ +1 │/);

    const runs = await cli(['pipeline', 'runs', '--format', 'json', '--state-dir', stateDir], env);
    expect(runs.code, runs.stderr).toBe(0);
    const list = JSON.parse(runs.stdout) as RunRecord[];
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ pipeline: 'flaky', trigger: 'amqp', triggerId: `${n.id}-1`, status: 'succeeded' });
  });

  it('refuses writes and reaching outside the store there', async () => {
    for (const [sql, message] of [
      ['DROP TABLE sluice_runs', /only read-only statements .* not DROP/],
      ["INSERT INTO sluice_runs (id) VALUES ('x')", /not INSERT/],
      ["SELECT 1 INTO OUTFILE '/tmp/sluice-should-not-exist.csv'", /INTO OUTFILE is not allowed/],
      ["SELECT * FROM file('/etc/passwd', 'LineAsString')", /readonly|READONLY/],
      ['SELECT 1; DROP TABLE sluice_runs', /one statement at a time/],
    ] as const) {
      const r = await cli(['query', sql, '--state-dir', stateDir], env);
      expect(r.code, sql).toBe(1);
      expect(r.stderr, sql).toMatch(message);
      expect(r.stderr, sql).toContain('through the sluice daemon');
    }
    const still = await cli(['query', 'SELECT count() AS n FROM sluice_runs', '--format', 'csv', '--state-dir', stateDir], env);
    expect(still.stdout.trim().split('\n')[1]).not.toBe('0');
    // the endpoint wants the token from daemon.json
    const file = readDaemonFile(stateDir)!;
    const anon = await fetch(`${file.url}/query`, { method: 'POST', body: 'SELECT 1' });
    expect(anon.status).toBe(401);
  });

  it('a second daemon on the same store refuses to start, saying why', async () => {
    const second = await startDaemon(env, [], { stateDir, expectFailure: true });
    const exit = await second.exited;
    expect(exit.code).toBe(1);
    expect(second.log()).toContain(`another sluice daemon (pid ${daemon.child.pid}) already uses the embedded store at ${path.join(stateDir, 'clickhouse')}`);
    expect(second.log()).toMatch(/SLUICE_CLICKHOUSE_URL/);
    expect(second.log().trim().split('\n')).toHaveLength(1);
    expect(daemon.child.exitCode).toBeNull();
  });

  it('SIGTERM: exits 0 and removes daemon.json; the store opens directly again', async () => {
    daemon.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
    expect(existsSync(path.join(stateDir, 'daemon.json'))).toBe(false);
    const q = await cli(['query', 'SELECT count() AS n FROM sluice_runs FINAL', '--format', 'csv', '--state-dir', stateDir], env);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout.trim().split('\n')).toEqual(['"n"', '1']);
  });
});
