/**
 * The ClickHouse server goes away for a few seconds in the middle of a run: the run
 * must succeed with every row written once.
 *
 * The outage is real: `scripts/services.sh clickhouse-stop`, three seconds, then
 * `clickhouse-start`. It is done to a ClickHouse server of this test's own (the same
 * script with its own SLUICE_SERVICES_DIR, so its own ports and data), so test files
 * running at the same time against the shared server are not hit by it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTable } from '../../runtime/clickhouse/table.ts';
import { definePipeline, item } from '../../runtime/pipeline.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { clickhouse } from '../../sinks/clickhouse/index.ts';
import { counts, optimizeFinal, quiet, ROOT, scalar, serverBackend, type Backend } from './stores.ts';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let servicesDir: string;
let backend: Backend;

function services(command: string) {
  return run('bash', [path.join(ROOT, 'scripts/services.sh'), command], {
    cwd: ROOT,
    env: { ...process.env, SLUICE_SERVICES_DIR: servicesDir },
    timeout: 120_000,
  });
}

beforeAll(async () => {
  servicesDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-chsink-outage-'));
  await services('clickhouse-start');
  const env = await readFile(path.join(servicesDir, 'env'), 'utf8');
  const url = /^SLUICE_TEST_CLICKHOUSE_URL=(.*)$/m.exec(env)![1]!.trim();
  backend = await serverBackend(url);
}, 180_000);

afterAll(async () => {
  await backend?.cleanup().catch(() => undefined);
  await services('stop').catch(() => undefined);
  await rm(servicesDir, { recursive: true, force: true });
}, 60_000);

/**
 * Load N rows at a steady pace; once some are written, take the server away with
 * `action`, wait three seconds after it is gone, start it again, and let the run finish.
 */
async function loadThroughOutage(tableName: string, action: 'clickhouse-stop' | 'clickhouse-kill', N: number) {
  const table = defineTable(tableName, {
    columns: { key: 'String', n: 'UInt32', at: 'DateTime' },
    orderBy: ['key'],
  });
  const acked: string[] = [];
  const pipeline = definePipeline({
    name: 'outage',
    description: 'test',
    params: z.object({}),
    // a steady trickle, 500 rows/s, so the outage lands in the middle
    source: async function* () {
      for (let i = 0; i < N; i++) {
        if (i % 10 === 0) await sleep(20);
        const key = `k${String(i).padStart(5, '0')}`;
        yield item(key, { key, n: i, at: new Date(1_700_000_000_000 + i * 1000) }, { ack: () => { acked.push(key); } });
      }
    },
    sinks: () => [clickhouse(table, { maxRows: 200, maxDelayMs: 100 })],
  });
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-chsink-'));
  // default retry settings: what a user gets
  const running = runPipeline({ pipeline, stateDir, log: quiet, openStore: async () => backend.store, keepStoreOpen: true });

  const t = `${backend.store.database}.${tableName}`;
  for (let tries = 0; ; tries++) {
    await sleep(100);
    if ((await scalar(backend.store, `SELECT count() AS n FROM ${t}`).catch(() => 0)) >= 1500) break;
    expect(tries).toBeLessThan(200);
  }
  const writtenBefore = await scalar(backend.store, `SELECT count() AS n FROM ${t}`);
  // clickhouse-stop returns once the process is gone: SIGTERM, and SIGKILL after 10 s
  // (18.16 goes on serving a client's keep-alive connection after SIGTERM while it is busy)
  await services(action);
  const ackedWhenDown = acked.length;
  await sleep(3000);
  // nothing is acknowledged while the server is away: the items wait for their rows
  const ackedWhileDown = acked.length - ackedWhenDown;
  await services('clickhouse-start');
  const record = await running;
  const c = await counts(backend.store, tableName, 'key');
  process.stderr.write(`[outage ${action}] rows before ${writtenBefore}; acked while down ${ackedWhileDown}; status ${record.status}, retries ${record.counts.retries}; ` +
    `rows inserted ${c.inserted}, count() ${c.rows}, uniqExact ${c.distinct}, FINAL ${c.final}; errors: ${record.errors.slice(0, 3).map((e) => e.message).join(' | ')}\n`);
  return { record, c, writtenBefore, ackedWhileDown, acked };
}

describe('clickhouse sink through a server outage', () => {
  for (const action of ['clickhouse-stop', 'clickhouse-kill'] as const) {
    it(`${action}: holds the batch while the server is away, retries, and ends with every row once by key`, async () => {
      const N = 12_000;
      const { record, c, writtenBefore, ackedWhileDown, acked } = await loadThroughOutage(action.replace('-', '_'), action, N);
      expect(record.status).toBe('succeeded');
      expect(writtenBefore).toBeLessThan(N);
      expect(record.counts.retries).toBeGreaterThan(0);
      expect(record.errors.some((e) => e.kind === 'transient')).toBe(true);
      expect(ackedWhileDown).toBe(0);
      expect(acked).toHaveLength(N);
      expect(c.distinct).toBe(N);
      expect(c.final).toBe(N);
      // an insert the server committed while its answer was lost is the only way to a
      // duplicate on 18.16 (it cannot deduplicate inserts): at most the batch in flight
      expect(c.inserted - N).toBeLessThanOrEqual(200);
      expect((await optimizeFinal(backend.store, action.replace('-', '_'), 'key')).rows).toBe(N);
    }, 120_000);
  }
});
