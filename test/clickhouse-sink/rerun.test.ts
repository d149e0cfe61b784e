/**
 * A run killed in the middle (SIGKILL: no flush, no goodbye) and run again with the same
 * params must leave one row per key: through the CLI, in child processes, on both
 * backends.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import { openServerStore } from '../../runtime/clickhouse/server-store.ts';
import { quoteIdentifier, type ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { counts, optimizeFinal, ROOT, scalar, serverUrl, uniqueName } from './stores.ts';

const PIPELINES = path.join(ROOT, 'test/pipelines/clickhouse');
const ROWS = 30_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Child {
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  kill: () => void;
}

function cli(env: Record<string, string>, table: string): Child {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), 'pipeline', 'ch-load', '--quiet', '--param', `table=${table}`, '--param', `rows=${ROWS}`],
    { cwd: ROOT, env: { ...process.env, SLUICE_PIPELINES_DIR: PIPELINES, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  return {
    done: new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stderr }));
    }),
    kill: () => child.kill('SIGKILL'),
  };
}

describe('a killed run, run again', () => {
  it('on the server: every key once (FINAL, and after OPTIMIZE … FINAL)', async () => {
    const database = uniqueName('sluice_test_rerun');
    const table = 'ch_load';
    const store = await openServerStore({ url: serverUrl(), database });
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-rerun-'));
    const env = { SLUICE_CLICKHOUSE_URL: serverUrl(), SLUICE_CLICKHOUSE_DATABASE: database, SLUICE_STATE_DIR: stateDir };
    try {
      const first = cli(env, table);
      const t = `${quoteIdentifier(database)}.${quoteIdentifier(table)}`;
      for (let tries = 0; ; tries++) {
        await sleep(100);
        if ((await scalar(store, `SELECT count() AS n FROM ${t}`).catch(() => 0)) >= 5000) break;
        expect(tries, 'the first run wrote nothing within 60 s').toBeLessThan(600);
      }
      first.kill();
      const killed = await first.done;
      expect(killed.signal).toBe('SIGKILL');
      const partial = await counts(store, table, 'key');
      expect(partial.distinct).toBeGreaterThan(0);
      expect(partial.distinct).toBeLessThan(ROWS);

      const second = await cli(env, table).done;
      expect(second.code, second.stderr).toBe(0);
      const after = await counts(store, table, 'key');
      expect(after.distinct).toBe(ROWS);
      expect(after.final).toBe(ROWS);
      expect(await scalar(store, `SELECT count() AS n FROM ${t} FINAL WHERE key = 'k0000000' OR key = 'k${String(ROWS - 1).padStart(7, '0')}'`)).toBe(2);
      // 18.16 cannot deduplicate inserts: the first run's rows were stored twice (until merged)
      expect(after.inserted).toBe(ROWS + partial.inserted);
      expect((await optimizeFinal(store, table, 'key')).rows).toBe(ROWS);
      process.stderr.write(`[rerun server] killed after ${partial.rows} rows; after the re-run: rows inserted ${after.inserted}, count() ${after.rows}, uniqExact ${after.distinct}, FINAL ${after.final}\n`);
    } finally {
      await store.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(database)}`).catch(() => undefined);
      await store.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  }, 180_000);

  it('on embedded chDB: every key once (FINAL, and after OPTIMIZE … FINAL)', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-rerun-'));
    const table = 'ch_load';
    const env = { SLUICE_CLICKHOUSE_URL: '', SLUICE_STATE_DIR: stateDir };
    const look = async <T>(fn: (store: ClickHouseStore) => Promise<T>): Promise<T> => {
      // the child holds the directory while it runs: look only between runs
      const store = await openEmbeddedStore({ dir: path.join(stateDir, 'clickhouse') });
      try {
        return await fn(store);
      } finally {
        await store.close();
      }
    };
    try {
      const first = cli(env, table);
      // chDB's directory is locked by the child: kill it on time, then look
      await sleep(7000);
      first.kill();
      expect((await first.done).signal).toBe('SIGKILL');
      const partial = await look((s) => counts(s, table, 'key'));
      expect(partial.distinct).toBeGreaterThan(0);
      expect(partial.distinct).toBeLessThan(ROWS);

      const second = await cli(env, table).done;
      expect(second.code, second.stderr).toBe(0);
      const after = await look((s) => counts(s, table, 'key'));
      expect(after.distinct).toBe(ROWS);
      expect(after.final).toBe(ROWS);
      const optimized = await look((s) => optimizeFinal(s, table, 'key'));
      expect(optimized.rows).toBe(ROWS);
      process.stderr.write(`[rerun embedded] killed after ${partial.rows} rows; after the re-run: rows inserted ${after.inserted}, count() ${after.rows}, uniqExact ${after.distinct}, FINAL ${after.final}\n`);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  }, 180_000);
});
