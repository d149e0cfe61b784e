/**
 * mirror-sync end to end against a real rsync daemon on 127.0.0.1 (module + secrets
 * file) and the test ClickHouse server: first sync, incremental sync, deletions, a
 * wrong password (clear error, the secret nowhere), an unreachable host. Each sync is
 * a real run of the pipeline (runPipeline), its rows read back from ClickHouse and its
 * metrics from the registry.
 */
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mirrorSync from '../../pipelines/mirror-sync.ts';
import { openServerStore } from '../../runtime/clickhouse/server-store.ts';
import { quoteIdentifier, type ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { createLogger } from '../../runtime/log.ts';
import type { RunRecord } from '../../runtime/run-record.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { serverUrl, uniqueName } from '../clickhouse-sink/stores.ts';
import { freePort, startRsyncDaemon, type RsyncDaemon } from './rsync-daemon.ts';

const PASSWORD = 'pa55-Wörd-s3cret';
const PROJECT = 'proj';
let daemon: RsyncDaemon;
let store: ClickHouseStore;
let database: string;
let tmp: string;
let dest: string;
let stateDir: string;
const registry = new Registry();
const lines: string[] = [];
const log = createLogger({ level: 'debug', write: (line) => { lines.push(line); } });

beforeAll(async () => {
  daemon = await startRsyncDaemon({ [PROJECT]: PASSWORD, other: 'other-password' });
  database = uniqueName('sluice_test_rsync');
  store = await openServerStore({ url: serverUrl(), database });
  tmp = await mkdtemp(path.join(os.tmpdir(), 'sluice-mirror-'));
  dest = path.join(tmp, 'mirror');
  stateDir = path.join(tmp, '.sluice');
  await mkdir(path.join(daemon.root, 'sub'), { recursive: true });
  await writeFile(path.join(daemon.root, 'a.txt'), 'hello\n');
  await writeFile(path.join(daemon.root, 'sub', 'b.txt'), 'world!!\n');
  await writeFile(path.join(daemon.root, 'sub', 'big.bin'), Buffer.alloc(300_000, 7));
  await symlink('a.txt', path.join(daemon.root, 'link'));
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
  await store?.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(database)}`).catch(() => undefined);
  await store?.close();
  await rm(tmp, { recursive: true, force: true });
});

async function sync(params: Record<string, unknown> = {}, env: Record<string, string | undefined> = { SLUICE_RSYNC_PASSWORD_PROJ: PASSWORD }): Promise<RunRecord> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await runPipeline({
      pipeline: mirrorSync,
      params: { project: PROJECT, host: `127.0.0.1:${daemon.port}`, module: daemon.module, dest, ...params },
      stateDir,
      log,
      registry,
      openStore: () => Promise.resolve(store),
      keepStoreOpen: true,
    });
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

interface History { ok: number; exit_code: number; exit_meaning: string; error: string; files_transferred: string; files_created: string; files_deleted: string; bytes_received: string; total_size: string }
async function history(runId: string): Promise<History> {
  const rows = await store.query<History>(`SELECT ok, exit_code, exit_meaning, error, files_transferred, files_created, files_deleted, bytes_received, total_size FROM mirror_syncs WHERE run_id = '${runId}'`);
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

async function changed(runId: string): Promise<Record<string, string>> {
  const rows = await store.query<{ path: string; change: string; type: string; size: string }>(`SELECT path, change, type, size FROM mirror_sync_files WHERE run_id = '${runId}' ORDER BY path`);
  return Object.fromEntries(rows.map((r) => [r.path, `${r.change} ${r.type} ${r.size}`]));
}

async function metric(name: string): Promise<number | undefined> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values as { labels: Record<string, string>; value: number }[] | undefined)?.find((v) => v.labels.project === PROJECT)?.value;
}

describe('mirror-sync against a local rsync daemon', () => {
  it('first sync: copies the module, one record per file, a history row, metrics', async () => {
    const run = await sync();
    expect(run.status, JSON.stringify(run.errors)).toBe('succeeded');
    expect(await readFile(path.join(dest, PROJECT, 'sub', 'b.txt'), 'utf8')).toBe('world!!\n');
    expect((await stat(path.join(dest, PROJECT, 'sub', 'big.bin'))).size).toBe(300_000);
    const files = await changed(run.id);
    expect(Object.keys(files).sort()).toEqual(['a.txt', 'link', 'sub/', 'sub/b.txt', 'sub/big.bin']);
    expect(files).toMatchObject({ 'a.txt': 'created file 6', link: 'created symlink 5', 'sub/b.txt': 'created file 8', 'sub/big.bin': 'created file 300000' });
    expect(files['sub/']).toMatch(/^created dir \d+$/);
    const h = await history(run.id);
    expect(h).toMatchObject({ ok: 1, exit_code: 0, exit_meaning: 'success', error: '', files_transferred: '3', files_created: '5', files_deleted: '0', total_size: '300019' });
    expect(Number(h.bytes_received)).toBeGreaterThan(0);
    expect(await metric('sluice_mirror_syncs_total')).toBe(1);
    expect(await metric('sluice_mirror_sync_failures_total')).toBe(0);
    expect(await metric('sluice_mirror_sync_files_transferred_total')).toBe(3);
    expect(await metric('sluice_mirror_sync_last_exit_code')).toBe(0);
    expect(await metric('sluice_mirror_sync_last_success_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 600);
  });

  it('incremental sync: only what changed upstream', async () => {
    await writeFile(path.join(daemon.root, 'a.txt'), 'hello again\n');
    await writeFile(path.join(daemon.root, 'sub', 'new.txt'), 'new\n');
    const run = await sync();
    expect(run.status).toBe('succeeded');
    const files = await changed(run.id);
    expect(files['a.txt']).toBe('updated file 12');
    expect(files['sub/new.txt']).toBe('created file 4');
    expect(files['sub/big.bin']).toBeUndefined();
    expect(files['sub/b.txt']).toBeUndefined();
    expect(await history(run.id)).toMatchObject({ ok: 1, files_transferred: '2', files_created: '1' });
    expect(await readFile(path.join(dest, PROJECT, 'a.txt'), 'utf8')).toBe('hello again\n');

    const again = await sync();
    expect(Object.keys(await changed(again.id)).filter((p) => p !== './')).toEqual([]);
    expect(await history(again.id)).toMatchObject({ ok: 1, files_transferred: '0' });
    expect(await metric('sluice_mirror_syncs_total')).toBe(3);
  });

  it('deletions: without a delete mode files stay; with one they go, recorded as deleted', async () => {
    await rm(path.join(daemon.root, 'sub', 'b.txt'));
    const kept = await sync();
    expect(kept.status).toBe('succeeded');
    await stat(path.join(dest, PROJECT, 'sub', 'b.txt'));
    const run = await sync({ delete: 'delete-after' });
    expect(run.status).toBe('succeeded');
    expect((await changed(run.id))['sub/b.txt']).toBe('deleted unknown 0');
    expect(await history(run.id)).toMatchObject({ ok: 1, files_deleted: '1' });
    await expect(stat(path.join(dest, PROJECT, 'sub', 'b.txt'))).rejects.toThrow(/ENOENT/);
  });

  it('a wrong password: a clear error, the failed sync in the history, and the secret nowhere', async () => {
    const wrong = 'WRONG-secret-value-42';
    const before = lines.length;
    const run = await sync({}, { SLUICE_RSYNC_PASSWORD_PROJ: wrong });
    expect(run.status).toBe('failed');
    const error = run.errors.map((e) => e.message).join('\n');
    expect(error).toMatch(/rsync rsync:\/\/proj@127\.0\.0\.1:\d+\/mirror\/: authentication failed for user "proj" \(wrong password or user\)/);
    expect(run.errors[0]!.kind).toBe('permanent');
    const h = await history(run.id);
    expect(h).toMatchObject({ ok: 0, exit_code: 5, exit_meaning: 'error starting client-server protocol' });
    expect(h.error).toMatch(/authentication failed/);
    expect(await metric('sluice_mirror_sync_failures_total')).toBe(1);
    expect(await metric('sluice_mirror_sync_last_exit_code')).toBe(5);
    const everything = JSON.stringify(run) + JSON.stringify(h) + lines.slice(before).join('') + (await registry.metrics());
    for (const secret of [wrong, PASSWORD]) expect(everything).not.toContain(secret);
  });

  it('no password given for a module that needs one says so', async () => {
    const run = await sync({}, { SLUICE_RSYNC_PASSWORD_PROJ: undefined });
    expect(run.status).toBe('failed');
    expect(run.errors[0]!.message).toMatch(/authentication failed .*the module needs a password and none was given/);
  });

  it('a password file works as well', async () => {
    const file = path.join(tmp, 'proj.password');
    await writeFile(file, `${PASSWORD}\n`, { mode: 0o600 });
    const run = await sync({ passwordFile: file }, { SLUICE_RSYNC_PASSWORD_PROJ: undefined });
    expect(run.status, JSON.stringify(run.errors)).toBe('succeeded');
  });

  it('an unreachable host: a transient error naming the host, a failed history row', async () => {
    const port = await freePort();
    const run = await sync({ host: `127.0.0.1:${port}`, connectTimeoutSeconds: 5 });
    expect(run.status).toBe('failed');
    expect(run.errors[0]!.kind).toBe('transient');
    expect(run.errors[0]!.message).toMatch(new RegExp(`rsync rsync://proj@127\\.0\\.0\\.1:${port}/mirror/ failed with exit 10 \\(error in socket I/O\\): .*failed to connect to 127\\.0\\.0\\.1.*Connection refused`));
    expect(await history(run.id)).toMatchObject({ ok: 0, exit_code: 10 });
  });

  it('a host the pipeline may not reach is refused before rsync starts (no widening by params)', async () => {
    const run = await runPipeline({
      pipeline: { ...mirrorSync, permissions: { run: ['rsync'], net: ['127.0.0.1:1'], write: [dest] } },
      params: { project: PROJECT, host: `127.0.0.1:${daemon.port}`, module: daemon.module, dest },
      stateDir, log, registry, openStore: () => Promise.resolve(store), keepStoreOpen: true,
    });
    expect(run.status).toBe('failed');
    expect(run.errors[0]!.message).toMatch(/network access to 127\.0\.0\.1:\d+ is not allowed/);
  });
});
