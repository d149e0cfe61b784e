/**
 * A crash mid-package: the CLI loading 400 packages is SIGKILLed (no flush, no
 * goodbye) while it writes, on the test ClickHouse server (so the test can watch the
 * tables while the child runs). Then: every package the store marks as stored has all
 * its rows; the re-run loads what is missing, and at the end every package has all its
 * rows, once per key.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import { openServerStore } from '../../runtime/clickhouse/server-store.ts';
import { quoteIdentifier, type ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { scalar, serverUrl, uniqueName } from '../clickhouse-sink/stores.ts';
import { ROOT, tempDir, writeVariants } from './support.ts';

const COUNT = 400;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let store: ClickHouseStore;
let database: string;

beforeAll(async () => {
  dir = await tempDir('crash');
  database = uniqueName('sluice_test_altrepo_crash');
  store = await openServerStore({ url: serverUrl(), database });
});
afterAll(async () => {
  await store?.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(database)}`).catch(() => undefined);
  await store?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function cli(repo: string, env: Record<string, string> = { SLUICE_CLICKHOUSE_URL: serverUrl(), SLUICE_CLICKHOUSE_DATABASE: database, SLUICE_STATE_DIR: path.join(dir, 'state') }, onStderr?: (text: string) => void) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), 'pipeline', 'altrepo-repo',
      '--param', `path=${repo}`, '--param', 'branch=crash', '--param', 'date=2024-01-02',
      // small writes: many boundaries between a package's rows and its marker to be killed at
      '--param', 'batchRows=200', '--param', 'readers=2', '--max-in-flight', '32'],
    { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    onStderr?.(stderr);
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
  return { done, kill: () => child.kill('SIGKILL') };
}

const serverTable = (name: string) => `${quoteIdentifier(database)}.${quoteIdentifier(name)}`;

/** Per marked package: the rows its marker announces, and the rows there are (once per key). */
async function completeness(store: ClickHouseStore, t: (name: string) => string): Promise<{ marked: number; incomplete: string[]; unmarked: number }> {
  const markers = await store.query<{ h: string; rows: number }>(`SELECT toString(pkg_hash) AS h, rows FROM ${t('package_hash')} FINAL`);
  const have = new Map<string, number>();
  for (const table of ['packages', 'package_files', 'package_depends', 'package_changelog']) {
    for (const r of await store.query<{ h: string; n: string }>(`SELECT toString(pkg_hash) AS h, count() AS n FROM ${t(table)} FINAL GROUP BY pkg_hash`)) {
      have.set(r.h, (have.get(r.h) ?? 0) + Number(r.n));
    }
  }
  const marked = new Set(markers.map((m) => m.h));
  return {
    marked: markers.length,
    incomplete: markers.filter((m) => have.get(m.h) !== Number(m.rows)).map((m) => `${m.h}: ${have.get(m.h) ?? 0} of ${m.rows} rows`),
    unmarked: [...have.keys()].filter((h) => !marked.has(h)).length,
  };
}

it('on the server: SIGKILL mid-run, then run again: no marked package misses a row, and in the end none is missing', async () => {
  const repo = path.join(dir, 'repo');
  writeVariants(repo, 'sluice-gz-1.2.3-alt1.x86_64.rpm', COUNT);
  const t = serverTable;

  const first = cli(repo);
  for (let tries = 0; ; tries++) {
    await sleep(50);
    // kill when packages have rows but no marker yet: the moment a crash must not spoil
    const marked = await scalar(store, `SELECT count() AS n FROM ${t('package_hash')}`).catch(() => 0);
    const started = await scalar(store, `SELECT uniqExact(pkg_hash) AS n FROM ${t('packages')}`).catch(() => 0);
    if (marked >= 40 && started > marked) break;
    expect(tries, 'the first run marked no 40 packages within 120 s').toBeLessThan(2400);
  }
  first.kill();
  const killed = await first.done;
  expect(killed.signal).toBe('SIGKILL');

  const atKill = await completeness(store, t);
  expect(atKill.incomplete, 'marked packages with missing rows after the kill').toEqual([]);
  expect(atKill.marked).toBeGreaterThanOrEqual(40);
  expect(atKill.marked).toBeLessThan(COUNT);
  process.stderr.write(`[altrepo crash, server] killed with ${atKill.marked} packages marked and ${atKill.unmarked} with rows but no marker\n`);

  const second = await cli(repo).done;
  expect(second.code, second.stderr).toBe(0);
  const end = await completeness(store, t);
  expect(end).toEqual({ marked: COUNT, incomplete: [], unmarked: 0 });
  expect(await scalar(store, `SELECT count() AS n FROM ${t('packages')} FINAL`)).toBe(COUNT);
  expect(await scalar(store, `SELECT count() AS n FROM ${t('repository_state')} FINAL`)).toBe(COUNT);
}, 300_000);

it('on embedded chDB: SIGKILL mid-run (timed: the store is locked while the child runs), then run again: the same', async () => {
  const repo = path.join(dir, 'repo-embedded');
  writeVariants(repo, 'sluice-gz-1.2.3-alt1.x86_64.rpm', COUNT);
  const stateDir = path.join(dir, 'state-embedded');
  const env = { SLUICE_CLICKHOUSE_URL: '', SLUICE_STATE_DIR: stateDir };
  const look = async <T>(fn: (s: ClickHouseStore, t: (name: string) => string) => Promise<T>): Promise<T> => {
    const s = await openEmbeddedStore({ dir: path.join(stateDir, 'clickhouse') });
    try {
      return await fn(s, (name) => `${quoteIdentifier(s.database)}.${quoteIdentifier(name)}`);
    } finally {
      await s.close();
    }
  };
  let reading: () => void = () => undefined;
  const started = new Promise<void>((resolve) => { reading = resolve; });
  const first = cli(repo, env, (text) => { if (text.includes('reading it as a flat directory')) reading(); });
  await Promise.race([started, first.done]);
  await sleep(2500);
  first.kill();
  const killed = await first.done;
  const atKill = await look((s, t) => completeness(s, t));
  expect(atKill.incomplete, 'marked packages with missing rows after the kill').toEqual([]);
  process.stderr.write(`[altrepo crash, embedded] ${killed.signal === 'SIGKILL' ? 'killed' : `ended (${killed.code}) before the kill`} with ${atKill.marked} of ${COUNT} packages marked and ${atKill.unmarked} with rows but no marker\n`);

  const second = await cli(repo, env).done;
  expect(second.code, second.stderr).toBe(0);
  expect(await look((s, t) => completeness(s, t))).toEqual({ marked: COUNT, incomplete: [], unmarked: 0 });
  expect(await look((s, t) => scalar(s, `SELECT count() AS n FROM ${t('packages')} FINAL`))).toBe(COUNT);
}, 300_000);
