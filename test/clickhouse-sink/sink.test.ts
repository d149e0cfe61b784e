import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { mergeMap } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { quoteIdentifier, type ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { defineTable, type RowOf } from '../../runtime/clickhouse/table.ts';
import { TransientError } from '../../runtime/errors.ts';
import { definePipeline, item } from '../../runtime/pipeline.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { clickhouse } from '../../sinks/clickhouse/index.ts';
import { counts, embeddedBackend, optimizeFinal, quiet, serverBackend, SpyStore, uniqueName, type Backend } from './stores.ts';

const tempState = () => mkdtemp(path.join(os.tmpdir(), 'sluice-chsink-'));

function eventsTable(name = uniqueName('events')) {
  return defineTable(name, {
    columns: { key: 'String', n: 'UInt32', big: 'UInt64', at: 'DateTime', day: 'Date', tags: 'Array(String)', v: 'UInt64' },
    orderBy: ['key'],
    versionColumn: 'v',
  });
}
type Event = RowOf<ReturnType<typeof eventsTable>>;

const AT = new Date('2024-03-05T06:07:08.999Z');
function event(i: number): Event {
  return { key: `k${String(i).padStart(6, '0')}`, n: i, big: 18446744073709551615n - BigInt(i), at: AT, day: AT, tags: [`t${i % 3}`, 'x"y\\z'], v: 1 };
}

async function deadLetters(stateDir: string, pipeline: string): Promise<{ error: string; record: Record<string, unknown>; errorKind: string }[]> {
  const dir = path.join(stateDir, 'dead-letter', pipeline);
  const files = await readdir(dir).catch(() => []);
  const lines: string[] = [];
  for (const f of files) lines.push(...(await readFile(path.join(dir, f), 'utf8')).trim().split('\n').filter(Boolean));
  return lines.map((l) => JSON.parse(l));
}

function load(store: ClickHouseStore, table: ReturnType<typeof eventsTable>, records: Event[], options: { maxRows?: number; onError?: 'fail' | 'dead-letter'; retry?: { maxAttempts?: number; initialDelayMs?: number } } = {}) {
  const pipeline = definePipeline({
    name: 'chsink',
    description: 'test',
    params: z.object({}),
    source: () => records.map((r) => item(r.key, r)),
    sinks: () => [clickhouse(table, { maxRows: options.maxRows ?? 100, maxDelayMs: 20 })],
    onError: options.onError ?? 'fail',
  });
  return async (stateDir: string) =>
    runPipeline({ pipeline, stateDir, log: quiet, openStore: async () => store, keepStoreOpen: true, retry: { initialDelayMs: 20, ...options.retry } });
}

const backends: [string, () => Promise<Backend>][] = [
  ['server (ClickHouse 18.16)', serverBackend],
  ['embedded (chDB)', embeddedBackend],
];

describe.each(backends)('clickhouse sink on %s', (_label, open) => {
  let backend: Backend;
  beforeAll(async () => { backend = await open(); });
  afterAll(async () => { await backend?.cleanup(); });

  it('creates the table, inserts every row, and reads back the same values (Date, bigint, arrays, escapes)', async () => {
    const table = eventsTable();
    const records = Array.from({ length: 1000 }, (_, i) => event(i));
    // a field the table does not have is left out, not an error
    (records[0] as Event & { extra?: string }).extra = 'not a column';
    const run = await load(backend.store, table, records)(await tempState());
    expect(run.status).toBe('succeeded');
    expect(run.counts.recordsBySink[`clickhouse:${table.name}`]).toBe(1000);
    const t = `${quoteIdentifier(backend.store.database)}.${quoteIdentifier(table.name)}`;
    const rows = await backend.store.query<Record<string, unknown>>(
      `SELECT key, n, big, toUnixTimestamp(at) AS at, toString(day) AS day, tags, v FROM ${t} ORDER BY key`,
    );
    expect(rows).toHaveLength(1000);
    expect(rows[0]).toEqual({ key: 'k000000', n: 0, big: '18446744073709551615', at: Math.floor(AT.getTime() / 1000), day: '2024-03-05', tags: ['t0', 'x"y\\z'], v: '1' });
    expect(rows[999]).toMatchObject({ key: 'k000999', n: 999, big: '18446744073709550616' });
    const c = await counts(backend.store, table.name, 'key');
    expect(c).toEqual({ rows: 1000, distinct: 1000, final: 1000, inserted: 1000 });
  });

  it('a row with a value of the wrong type is dead-lettered with the server message; the rest of its batch is written', async () => {
    const table = eventsTable();
    const records = Array.from({ length: 200 }, (_, i) => event(i));
    records[37] = { ...records[37]!, n: 'not a number' as unknown as number };
    const stateDir = await tempState();
    const run = await load(backend.store, table, records, { maxRows: 100, onError: 'dead-letter' })(stateDir);
    expect(run.status).toBe('succeeded');
    expect(run.counts.deadLettered).toBe(1);
    expect(run.counts.recordsBySink[`clickhouse:${table.name}`]).toBe(199);
    const letters = await deadLetters(stateDir, 'chsink');
    expect(letters).toHaveLength(1);
    expect(letters[0]!.errorKind).toBe('permanent');
    expect(letters[0]!.record).toMatchObject({ key: 'k000037', n: 'not a number' });
    // the server's own words: 18.16 "Cannot parse input: expected …", chDB the same plus the code name
    expect(letters[0]!.error).toMatch(/Cannot parse input|Cannot parse|CANNOT_PARSE/);
    expect(letters[0]!.error).toContain(table.name);
    const c = await counts(backend.store, table.name, 'key');
    expect(c).toEqual({ rows: 199, distinct: 199, final: 199, inserted: 199 });
    const missing = await backend.store.query(`SELECT key FROM ${quoteIdentifier(backend.store.database)}.${quoteIdentifier(table.name)} WHERE key = 'k000037'`);
    expect(missing).toEqual([]);
  });

  it('an insert whose answer is lost is retried; the table ends with one row per key', async () => {
    // the first insert goes through, then the "connection" drops: the engine must retry a
    // batch the server already has (what a timeout or a reset after commit looks like)
    const spy = new SpyStore(backend.store);
    spy.afterInsert = (n) => {
      if (n === 1) throw new TransientError('socket hang up (after the server committed the insert)');
    };
    const table = eventsTable();
    const records = Array.from({ length: 300 }, (_, i) => event(i));
    const run = await load(spy, table, records, { maxRows: 100 })(await tempState());
    expect(run.status).toBe('succeeded');
    expect(run.counts.retries).toBe(1);
    const c = await counts(backend.store, table.name, 'key');
    expect(c.distinct).toBe(300);
    expect(c.final).toBe(300);
    const features = await backend.store.features();
    process.stderr.write(`[lost answer ${backend.name}] batches ${spy.insertSizes.join(',')}; rows inserted ${c.inserted}, count() ${c.rows}, uniqExact ${c.distinct}, FINAL ${c.final}\n`);
    const tokens = spy.insertSettings.map((s) => s.insert_deduplication_token);
    if (features.insertDeduplicationToken) {
      // the retry carried the same token as the attempt that went through: the server dropped it
      expect(tokens[0]).toMatch(/^sluice-[0-9a-f]{64}$/);
      expect(tokens[1]).toBe(tokens[0]);
      expect(new Set(tokens).size).toBe(tokens.length - 1);
      expect(c.inserted).toBe(300);
      expect(c.rows).toBe(300);
    } else {
      // 18.16: no insert deduplication for non-replicated tables; the duplicate batch is
      // stored and collapses by key (FINAL now, merges later)
      expect(tokens.every((t) => t === undefined)).toBe(true);
      expect(c.inserted).toBe(300 + spy.insertSizes[0]!);
      expect((await optimizeFinal(backend.store, table.name, 'key')).rows).toBe(300);
    }
  });

  it('a column dropped while the run goes on fails the run (a FatalError: every row would fail)', async () => {
    const table = eventsTable();
    let dropped = false;
    const pipeline = definePipeline({
      name: 'chsink-drift',
      description: 'test',
      params: z.object({}),
      source: async function* () {
        for (let i = 0; i < 400; i++) {
          if (i === 200) {
            // the first batches are in: take a column away under the sink
            await backend.store.command(`ALTER TABLE ${quoteIdentifier(backend.store.database)}.${quoteIdentifier(table.name)} DROP COLUMN tags`);
            dropped = true;
          }
          yield item(`e${i}`, event(i));
        }
      },
      sinks: () => [clickhouse(table, { maxRows: 50, maxDelayMs: 10 })],
      maxInFlight: 50,
    });
    const run = await runPipeline({ pipeline, stateDir: await tempState(), log: quiet, openStore: async () => backend.store, keepStoreOpen: true, retry: { initialDelayMs: 10 } });
    expect(dropped).toBe(true);
    expect(run.status).toBe('failed');
    const fatal = run.errors.find((e) => e.kind === 'fatal');
    expect(fatal?.message).toMatch(/clickhouse sink: .*tags/);
    expect(fatal?.message).toMatch(/migrate/);
  });

  it('a table missing a column of the definition fails the run on open, naming the column', async () => {
    const name = uniqueName('drifted');
    await backend.store.command(`CREATE TABLE ${quoteIdentifier(backend.store.database)}.${quoteIdentifier(name)} (key String, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY key`);
    const run = await load(backend.store, eventsTable(name), [event(1)])(await tempState());
    expect(run.status).toBe('failed');
    expect(run.errors.map((e) => e.message).join('\n')).toMatch(/lacks columns n, big, at, day, tags .*migrate/);
  });
});

describe('clickhouse sink batches', () => {
  it('never inserts more than maxRows rows, and a batch written again by a re-run is dropped where the server deduplicates', async () => {
    const backend = await embeddedBackend();
    try {
      const table = eventsTable();
      const records = Array.from({ length: 250 }, (_, i) => event(i));
      // one item carrying all the rows: batch boundaries are the same on every run
      const pipeline = definePipeline({
        name: 'chsink-batches',
        description: 'test',
        params: z.object({}),
        source: () => [item('all', records)],
        transform: () => mergeMap((rows: Event[]) => rows),
        sinks: () => [clickhouse(table, { maxRows: 100 })],
      });
      const first = new SpyStore(backend.store);
      const run1 = await runPipeline({ pipeline, stateDir: await tempState(), log: quiet, openStore: async () => first, keepStoreOpen: true });
      expect(run1.status).toBe('succeeded');
      expect(first.insertSizes).toEqual([100, 100, 50]);
      const second = new SpyStore(backend.store);
      const run2 = await runPipeline({ pipeline, stateDir: await tempState(), log: quiet, openStore: async () => second, keepStoreOpen: true });
      expect(run2.status).toBe('succeeded');
      expect(second.insertSettings.map((s) => s.insert_deduplication_token)).toEqual(first.insertSettings.map((s) => s.insert_deduplication_token));
      // the same batches again: chDB recognises every one by its token, nothing is added
      expect(await counts(backend.store, table.name, 'key')).toEqual({ rows: 250, distinct: 250, final: 250, inserted: 250 });
    } finally {
      await backend.cleanup();
    }
  });
});
