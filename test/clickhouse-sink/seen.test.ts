import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { from, lastValueFrom, mergeMap, of, pipe, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createTableSql, defineTable } from '../../runtime/clickhouse/table.ts';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { definePipeline, item } from '../../runtime/pipeline.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { seen } from '../../operators/seen.ts';
import { clickhouse } from '../../sinks/clickhouse/index.ts';
import { counts, embeddedBackend, quiet, serverBackend, SpyStore, uniqueName, type Backend } from './stores.ts';

const tempState = () => mkdtemp(path.join(os.tmpdir(), 'sluice-seen-'));

function packagesTable() {
  return defineTable(uniqueName('packages'), {
    columns: { sha256: 'String', name: 'String', size: 'UInt64' },
    orderBy: ['sha256'],
  });
}

const hash = (i: number) => `h${String(i).padStart(5, '0')}`;

/** The lookups `seen` made: the number of keys in each IN list. */
function lookups(spy: SpyStore): number[] {
  return spy.queries
    .filter((q) => /^SELECT DISTINCT .* IN \(/.test(q))
    .map((q) => (q.slice(q.indexOf(' IN (') + 5).match(/'h\d+'/g) ?? []).length);
}

const backends: [string, () => Promise<Backend>][] = [
  ['server (ClickHouse 18.16)', serverBackend],
  ['embedded (chDB)', embeddedBackend],
];

describe.each(backends)('seen on %s', (_label, open) => {
  let backend: Backend;
  beforeAll(async () => { backend = await open(); });
  afterAll(async () => { await backend?.cleanup(); });

  it('a re-run skips the keys already stored, looking them up in bounded batches shared across items', async () => {
    const table = packagesTable();
    const pkg = (i: number) => ({ sha256: hash(i), name: `pkg-${i}`, size: i });
    // yesterday: every third package was loaded
    const yesterday = Array.from({ length: 3000 }, (_, i) => i).filter((i) => i % 3 === 0).map(pkg);
    const load = async (packages: ReturnType<typeof pkg>[], store: SpyStore, maxInFlight: number) =>
      runPipeline({
        pipeline: definePipeline({
          name: 'seen-load',
          description: 'test',
          params: z.object({}),
          source: () => packages.map((p) => item(p.sha256, p)),
          transform: (ctx) => pipe(seen(ctx, { table, keyColumn: 'sha256', keyOf: (p) => p.sha256, batchSize: 100, maxWaitMs: 20 })),
          sinks: () => [clickhouse(table, { maxRows: 500, maxDelayMs: 20 })],
          maxInFlight,
        }),
        stateDir: await tempState(),
        log: quiet,
        openStore: async () => store,
        keepStoreOpen: true,
      });
    const first = new SpyStore(backend.store);
    expect((await load(yesterday, first, 64)).status).toBe('succeeded');
    expect((await counts(backend.store, table.name, 'sha256')).rows).toBe(1000);

    const spy = new SpyStore(backend.store);
    const today = Array.from({ length: 3000 }, (_, i) => pkg(i));
    const run = await load(today, spy, 256);
    expect(run.status).toBe('succeeded');
    // only the 2000 new ones reached the sink
    expect(run.counts.recordsBySink[`clickhouse:${table.name}`]).toBe(2000);
    expect(await counts(backend.store, table.name, 'sha256')).toEqual({ rows: 3000, distinct: 3000, final: 3000, inserted: 3000 });
    const sizes = lookups(spy);
    process.stderr.write(`[seen ${backend.name}] 3000 keys in ${sizes.length} queries, largest ${Math.max(...sizes)} keys\n`);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(3000); // every key asked once
    expect(Math.max(...sizes)).toBeLessThanOrEqual(100); // never more than batchSize per query
    expect(sizes.length).toBeGreaterThanOrEqual(30);
    expect(sizes.length).toBeLessThanOrEqual(90); // keys of concurrent items share queries: not one per key
  });

  it('keeps the order of the values of one item, and asks once for a key that repeats', async () => {
    const table = packagesTable();
    await backend.store.command(createTableSql(table, backend.store.database, await backend.store.features()));
    await backend.store.insert(table.name, Array.from({ length: 1000 }, (_, i) => i).filter((i) => i % 7 === 0).map((i) => ({ sha256: hash(i), name: 'x', size: i })));
    const spy = new SpyStore(backend.store);
    const all = Array.from({ length: 1000 }, (_, i) => i);
    // 5 and 7 again while their first lookup still waits for its batch: asked once
    const values = [...all.slice(0, 100), 5, 7, 5, ...all.slice(100)];
    const out = await lastValueFrom(
      of(values).pipe(
        mergeMap((ns) => from(ns)),
        seen(spy, { table: table.name, keyColumn: 'sha256', keyOf: (i: number) => hash(i), batchSize: 250, maxWaitMs: 5 }),
        toArray(),
      ),
    );
    expect(out).toEqual(values.filter((i) => i % 7 !== 0));
    const sizes = lookups(spy);
    expect(sizes).toEqual([250, 250, 250, 250]);
  });

  it('a missing table is a fatal error naming it', async () => {
    const out = lastValueFrom(of('a').pipe(seen(backend.store, { table: 'no_such_table', keyColumn: 'k', keyOf: (s: string) => s }), toArray()));
    await expect(out).rejects.toMatchObject({ kind: 'fatal', message: expect.stringMatching(/seen: table no_such_table does not exist/) });
  });
});

describe('seen without a store', () => {
  it('values wait for their key, so a slow lookup does not reorder them', async () => {
    let calls = 0;
    const fake = {
      kind: 'server', description: 'fake', database: 'db',
      version: async () => ({ major: 1, minor: 0, patch: 0, text: '1' }),
      features: async () => { throw new Error('unused'); },
      command: async () => undefined,
      queryText: async () => '',
      insert: async () => undefined,
      close: async () => undefined,
      query: async <T,>(sql: string): Promise<T[]> => {
        calls++;
        await new Promise((r) => setTimeout(r, calls === 1 ? 60 : 1));
        return (sql.includes("'b'") ? [{ k: 'b' }] : []) as T[];
      },
    } as unknown as ClickHouseStore;
    const keys = ['a', 'b', 'c', 'd'];
    // batchSize 1: four queries, the first one slow
    const out = await lastValueFrom(of(...keys).pipe(seen(fake, { table: 't', keyColumn: 'k', keyOf: (s: string) => s, batchSize: 1, maxConcurrentQueries: 4 }), toArray()));
    expect(out).toEqual(['a', 'c', 'd']);
    expect(calls).toBe(4);
  });
});
