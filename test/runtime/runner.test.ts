import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { delay, filter, mergeMap, from, map, of, pipe } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { FatalError, PermanentError, TransientError } from '../../runtime/errors.ts';
import { definePipeline, item, type Sink } from '../../runtime/pipeline.ts';
import { JsonlRunStore } from '../../runtime/run-record.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { createLogger } from '../../runtime/log.ts';

const quiet = createLogger({ level: 'silent' });
const tempState = () => mkdtemp(path.join(os.tmpdir(), 'sluice-runner-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A sink that keeps what it was given, optionally slowly, and can fail on demand. */
function memorySink<R>(name: string, options: { delayMs?: number; maxRecords?: number; fail?: (records: readonly R[], attempt: number) => Error | undefined } = {}) {
  const written: R[] = [];
  const batches: number[] = [];
  const sink: Sink<R> = {
    name,
    kind: 'memory',
    batch: { maxRecords: options.maxRecords ?? 10, maxDelayMs: 20 },
    write: async (records, ctx) => {
      if (options.delayMs) await sleep(options.delayMs);
      const error = options.fail?.(records, ctx.attempt);
      if (error) throw error;
      written.push(...records);
      batches.push(records.length);
    },
  };
  return { sink, written, batches };
}

describe('runner flow control', () => {
  it('a slow sink holds the source back: never more than maxInFlight items pulled and unacknowledged', async () => {
    let pulled = 0;
    let acked = 0;
    let maxOutstanding = 0;
    const slow = memorySink<number>('slow', { delayMs: 15, maxRecords: 4 });
    const pipeline = definePipeline({
      name: 'flow',
      description: 'test',
      params: z.object({}),
      source: async function* () {
        for (let i = 0; i < 200; i++) {
          pulled++;
          maxOutstanding = Math.max(maxOutstanding, pulled - acked);
          yield item(`n${i}`, i, { ack: () => { acked++; } });
        }
      },
      sinks: () => [slow.sink],
    });
    const record = await runPipeline({ pipeline, maxInFlight: 8, stateDir: await tempState(), log: quiet });
    expect(record.status).toBe('succeeded');
    expect(slow.written).toHaveLength(200);
    expect(acked).toBe(200);
    expect(maxOutstanding).toBeLessThanOrEqual(8);
    // with 8 in flight the sink can never get a batch larger than 8 records of 1 per item
    expect(Math.max(...slow.batches)).toBeLessThanOrEqual(8);
  });

  it('acknowledges an item only after every record it produced is in every sink (fan-out and filter)', async () => {
    const fast = memorySink<{ item: number; part: number }>('fast', { maxRecords: 3 });
    const slow = memorySink<{ item: number; part: number }>('slow', { delayMs: 10, maxRecords: 5 });
    const violations: string[] = [];
    const ackCount = new Map<number, number>();
    const pipeline = definePipeline({
      name: 'fanout',
      description: 'test',
      params: z.object({}),
      source: function* () {
        for (let i = 0; i < 30; i++) {
          yield item(`i${i}`, i, {
            ack: () => {
              ackCount.set(i, (ackCount.get(i) ?? 0) + 1);
              // item i makes parts 0..i%5, minus odd parts
              const expected = Array.from({ length: (i % 5) + 1 }, (_, p) => p).filter((p) => p % 2 === 0);
              for (const s of [fast, slow]) {
                const have = s.written.filter((r) => r.item === i).map((r) => r.part).sort();
                if (JSON.stringify(have) !== JSON.stringify(expected)) violations.push(`item ${i} acked with ${s.sink.name}=${have}`);
              }
            },
          });
        }
      },
      transform: () => (source) => source.pipe(
        mergeMap((i) => from(Array.from({ length: (i % 5) + 1 }, (_, part) => ({ item: i, part })))),
        mergeMap(async (r) => { await sleep(r.part); return r; }),
        filter((r) => r.part % 2 === 0),
      ),
      sinks: () => [fast.sink, slow.sink],
    });
    const record = await runPipeline({ pipeline, maxInFlight: 4, stateDir: await tempState(), log: quiet });
    expect(record.status).toBe('succeeded');
    expect(violations).toEqual([]);
    expect([...ackCount.values()].every((n) => n === 1)).toBe(true);
    expect(ackCount.size).toBe(30);
    expect(fast.written.length).toBe(slow.written.length);
    expect(record.counts.recordsBySink).toEqual({ fast: fast.written.length, slow: slow.written.length });
  });

  it('an item whose records are all filtered out is still acknowledged', async () => {
    const sink = memorySink<number>('s');
    const acked: string[] = [];
    const pipeline = definePipeline({
      name: 'filtered',
      description: 'test',
      params: z.object({}),
      source: () => [1, 2, 3, 4].map((n) => item(`n${n}`, n, { ack: () => { acked.push(`n${n}`); } })),
      transform: () => filter((n: number) => n % 2 === 0),
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, stateDir: await tempState(), log: quiet });
    expect(acked.sort()).toEqual(['n1', 'n2', 'n3', 'n4']);
    expect(sink.written.sort()).toEqual([2, 4]);
    expect(record.counts.records).toBe(2);
  });
});

function failingPipeline(onError: 'fail' | 'skip' | 'dead-letter', sink: Sink<{ n: number }>, nacks: string[] = []) {
  return definePipeline({
    name: `policy-${onError}`,
    description: 'test',
    params: z.object({}),
    onError,
    source: async function* () {
      for (let n = 0; n < 10; n++) yield item(`file-${n}.rpm`, n, { nack: (_e, requeue) => { nacks.push(`file-${n}.rpm:${requeue}`); } });
    },
    transform: () => map((n: number) => {
      if (n === 3) throw new PermanentError('bad magic at offset 0', { item: `file-${n}.rpm`, hint: 'the file is not an RPM' });
      return { n };
    }),
    sinks: () => [sink],
  });
}

describe('error policies', () => {
  it('skip: the failing item is skipped and named, every other item is written', async () => {
    const sink = memorySink<{ n: number }>('s');
    const nacks: string[] = [];
    const record = await runPipeline({ pipeline: failingPipeline('skip', sink.sink, nacks), stateDir: await tempState(), log: quiet });
    expect(record.status).toBe('succeeded');
    expect(sink.written.map((r) => r.n).sort((a, b) => a - b)).toEqual([0, 1, 2, 4, 5, 6, 7, 8, 9]);
    expect(record.counts.skipped).toBe(1);
    expect(record.errors[0]).toMatchObject({ item: 'file-3.rpm', kind: 'permanent', component: 'transform' });
    expect(record.errors[0]!.message).toContain('bad magic at offset 0');
    expect(nacks).toEqual(['file-3.rpm:false']);
  });

  it('dead-letter: the item and its error go to a JSON-lines file', async () => {
    const state = await tempState();
    const sink = memorySink<{ n: number }>('s');
    const record = await runPipeline({ pipeline: failingPipeline('dead-letter', sink.sink), stateDir: state, log: quiet });
    expect(record.status).toBe('succeeded');
    expect(sink.written).toHaveLength(9);
    const dir = path.join(state, 'dead-letter', 'policy-dead-letter');
    const [file] = await readdir(dir);
    expect(file).toBe(`${record.id}.jsonl`);
    const letters = (await readFile(path.join(dir, file!), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ item: 'file-3.rpm', component: 'transform', errorKind: 'permanent', runId: record.id });
    expect(letters[0].error).toContain('bad magic');
  });

  it('dead-letter: records a sink rejects for good are dead-lettered with the record itself', async () => {
    const state = await tempState();
    const sink = memorySink<{ n: number }>('db', {
      maxRecords: 1,
      fail: (records) => (records.some((r) => r.n === 5) ? new PermanentError('Unknown column bogus') : undefined),
    });
    const pipeline = definePipeline({
      name: 'sink-reject',
      description: 'test',
      params: z.object({}),
      onError: 'dead-letter',
      source: () => Array.from({ length: 8 }, (_, n) => item(`row-${n}`, { n })),
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, stateDir: state, log: quiet });
    expect(sink.written.map((r) => r.n).sort()).toEqual([0, 1, 2, 3, 4, 6, 7]);
    const text = await readFile(path.join(state, 'dead-letter', 'sink-reject', `${record.id}.jsonl`), 'utf8');
    const letter = JSON.parse(text.trim());
    expect(letter).toMatchObject({ item: 'row-5', component: 'db', record: { n: 5 } });
    expect(letter.error).toContain('Unknown column bogus');
  });

  it("a sink's encode: the lane holds, sizes, writes and splits encoded values; dead letters get them decoded; a record encode refuses fails alone", async () => {
    const state = await tempState();
    const written: string[][] = [];
    const sink: Sink<{ n: number }> = {
      name: 'lines',
      kind: 'memory',
      batch: {
        maxRecords: 4,
        maxBytes: 1000,
        maxDelayMs: 20,
        encode: ((r: { n: number }) => {
          if (r.n === 9) throw new PermanentError('nine cannot be encoded');
          return `n=${r.n}`;
        }) as (record: never) => unknown,
        decode: ((line: string) => ({ n: Number(line.slice(2)), decoded: true })) as (encoded: never) => unknown,
        sizeOf: ((line: string) => line.length) as (record: never) => number,
      },
      write: async (records) => {
        const lines = records as unknown as string[];
        if (lines.some((l) => typeof l !== 'string')) throw new FatalError('not encoded');
        if (lines.includes('n=5')) throw new PermanentError('five is rejected');
        written.push([...lines]);
      },
    };
    const pipeline = definePipeline({
      name: 'encoded-sink',
      description: 'test',
      params: z.object({}),
      onError: 'dead-letter',
      source: () => Array.from({ length: 12 }, (_, n) => item(`row-${n}`, { n })),
      sinks: () => [sink],
    });
    const record = await runPipeline({ pipeline, stateDir: state, log: quiet });
    expect(record.status).toBe('succeeded');
    expect(written.flat().sort()).toEqual(['n=0', 'n=1', 'n=10', 'n=11', 'n=2', 'n=3', 'n=4', 'n=6', 'n=7', 'n=8']);
    expect(Math.max(...written.map((b) => b.length))).toBeLessThanOrEqual(4);
    const letters = (await readFile(path.join(state, 'dead-letter', 'encoded-sink', `${record.id}.jsonl`), 'utf8'))
      .trim().split('\n').map((l) => JSON.parse(l)).sort((a, b) => a.item.localeCompare(b.item));
    expect(letters).toHaveLength(2);
    // rejected by write: the held line, decoded
    expect(letters[0]).toMatchObject({ item: 'row-5', component: 'lines', record: { n: 5, decoded: true } });
    expect(letters[0].error).toContain('five is rejected');
    // refused by encode: the record as it came
    expect(letters[1]).toMatchObject({ item: 'row-9', component: 'lines', record: { n: 9 } });
    expect(letters[1].record.decoded).toBeUndefined();
    expect(letters[1].error).toContain('nine cannot be encoded');
  });

  it('fail: the run fails, names the item, and stops pulling', async () => {
    const sink = memorySink<{ n: number }>('s');
    const record = await runPipeline({ pipeline: failingPipeline('fail', sink.sink), maxInFlight: 1, stateDir: await tempState(), log: quiet });
    expect(record.status).toBe('failed');
    expect(record.errors[0]).toMatchObject({ item: 'file-3.rpm' });
    expect(record.counts.items).toBeLessThan(10);
    // what was accepted before the failure is still written
    expect(sink.written.map((r) => r.n)).toEqual([0, 1, 2]);
  });

  it('an error item from the source gets the policy without running the transform', async () => {
    const sink = memorySink<number>('s');
    const pipeline = definePipeline({
      name: 'source-error',
      description: 'test',
      params: z.object({}),
      onError: 'skip',
      source: () => [item('a', 1), item('b', 2, { error: new PermanentError('b: permission denied') }), item('c', 3)],
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, stateDir: await tempState(), log: quiet });
    expect(sink.written.sort()).toEqual([1, 3]);
    expect(record.errors.map((e) => e.item)).toEqual(['b']);
  });
});

describe('fatal errors', () => {
  it('a fatal sink error stops the run at once, whatever the policy, and hands the items back', async () => {
    let writes = 0;
    const requeued: string[] = [];
    const sink = memorySink<number>('db', { maxRecords: 1, fail: () => (writes++, new FatalError('table sluice.rows is gone')) });
    const pipeline = definePipeline({
      name: 'fatal-sink',
      description: 'test',
      params: z.object({}),
      onError: 'dead-letter',
      source: () => Array.from({ length: 200 }, (_, n) => item(`n${n}`, n, { nack: (_e, requeue) => { if (requeue) requeued.push(`n${n}`); } })),
      sinks: () => [sink.sink],
    });
    const state = await tempState();
    const record = await runPipeline({ pipeline, maxInFlight: 4, stateDir: state, log: quiet });
    expect(record.status).toBe('failed');
    expect(record.errors[0]).toMatchObject({ kind: 'fatal' });
    expect(record.errors[0]!.message).toContain('table sluice.rows is gone');
    // no splitting into per-row failures, nothing dead-lettered, few items pulled
    expect(record.counts.deadLettered).toBe(0);
    expect(record.counts.items).toBeLessThan(20);
    expect(writes).toBeLessThan(20);
    expect(requeued.length).toBeGreaterThan(0);
  });
});

describe('retries', () => {
  it('a transient sink failure is retried with backoff; nothing lost, nothing written twice', async () => {
    let failures = 0;
    const sink = memorySink<number>('flaky', {
      maxRecords: 100,
      fail: (_r, attempt) => (attempt <= 2 ? (failures++, new TransientError('connection reset')) : undefined),
    });
    const pipeline = definePipeline({
      name: 'retry-sink',
      description: 'test',
      params: z.object({}),
      source: () => Array.from({ length: 50 }, (_, i) => i),
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, retry: { initialDelayMs: 5, maxDelayMs: 20 }, stateDir: await tempState(), log: quiet });
    expect(record.status).toBe('succeeded');
    expect(failures).toBeGreaterThanOrEqual(2);
    expect(sink.written.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(record.counts.retries).toBe(failures);
  });

  it('a transient transform error is retried; a permanent one is not', async () => {
    const calls = new Map<string, number>();
    const sink = memorySink<string>('s');
    const pipeline = definePipeline({
      name: 'retry-transform',
      description: 'test',
      params: z.object({}),
      onError: 'skip',
      source: () => ['flaky', 'broken', 'fine'].map((id) => item(id, id)),
      transform: () => map((id: string) => {
        const n = (calls.get(id) ?? 0) + 1;
        calls.set(id, n);
        if (id === 'flaky' && n < 3) throw new TransientError('503 from server', { retryAfterMs: 10 });
        if (id === 'broken') throw new PermanentError('404');
        return id;
      }),
      sinks: () => [sink.sink],
    });
    const started = Date.now();
    const record = await runPipeline({ pipeline, retry: { initialDelayMs: 1, maxDelayMs: 2 }, stateDir: await tempState(), log: quiet });
    expect(calls.get('flaky')).toBe(3);
    expect(calls.get('broken')).toBe(1);
    expect(sink.written.sort()).toEqual(['fine', 'flaky']);
    expect(record.counts.skipped).toBe(1);
    // Retry-After (10 ms) is honoured over the smaller backoff, twice
    expect(Date.now() - started).toBeGreaterThanOrEqual(18);
  });

  it('gives up after the bounded attempts and applies the policy', async () => {
    let attempts = 0;
    const sink = memorySink<number>('down', { fail: () => (attempts++, new TransientError('ECONNREFUSED')) });
    const pipeline = definePipeline({
      name: 'retry-exhausted',
      description: 'test',
      params: z.object({}),
      onError: 'skip',
      source: () => [1],
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, retry: { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 2 }, stateDir: await tempState(), log: quiet });
    expect(attempts).toBe(3);
    expect(record.counts.skipped).toBe(1);
  });
});

describe('run records and params', () => {
  it('records each run with params, trigger, status and counts', async () => {
    const state = await tempState();
    const sink = memorySink<number>('s');
    const pipeline = definePipeline({
      name: 'recorded',
      description: 'test',
      params: z.object({ count: z.number().int().default(3) }),
      source: ({ params }) => Array.from({ length: params.count }, (_, i) => i),
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, params: { count: 5 }, stateDir: state, log: quiet });
    const stored = await new JsonlRunStore(state).get(record.id);
    expect(stored).toMatchObject({ pipeline: 'recorded', params: { count: 5 }, trigger: 'cli', status: 'succeeded' });
    expect(stored!.counts.items).toBe(5);
    expect(stored!.endedAt).toBeTruthy();
  });

  it('rejects unknown and invalid params before anything runs, naming the param', async () => {
    let pulled = false;
    const pipeline = definePipeline({
      name: 'params',
      description: 'test',
      params: z.object({ root: z.string(), depth: z.number().int().default(1) }),
      source: () => { pulled = true; return [] as number[]; },
      sinks: () => [],
    });
    const state = await tempState();
    await expect(runPipeline({ pipeline, params: { root: 'x', rooot: 'y' }, stateDir: state, log: quiet }))
      .rejects.toThrow('unknown param "rooot"; valid params: root, depth');
    await expect(runPipeline({ pipeline, params: { root: 'x', depth: 'deep' }, stateDir: state, log: quiet }))
      .rejects.toThrow(/invalid param "depth"/);
    await expect(runPipeline({ pipeline, params: {}, stateDir: state, log: quiet }))
      .rejects.toThrow('invalid param "root": required, but not given');
    expect(pulled).toBe(false);
    expect(await new JsonlRunStore(state).list()).toEqual([]);
  });
});

describe('stopping', () => {
  it('a graceful stop stops pulling, flushes what was accepted and records the run as interrupted', async () => {
    const stop = new AbortController();
    const sink = memorySink<number>('s', { maxRecords: 1000 });
    let pulled = 0;
    const pipeline = definePipeline({
      name: 'stoppable',
      description: 'test',
      params: z.object({}),
      source: async function* () {
        for (let i = 0; ; i++) {
          pulled++;
          if (i === 20) stop.abort(new Error('stopped by SIGTERM'));
          yield i;
          await sleep(1);
        }
      },
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, signal: stop.signal, stateDir: await tempState(), log: quiet });
    expect(record.status).toBe('interrupted');
    expect(pulled).toBeLessThan(25);
    // everything pulled before the stop was flushed to the sink
    expect(sink.written.length).toBe(record.counts.items);
    expect(sink.written.length).toBeGreaterThanOrEqual(20);
  });
});

describe('syncTransform: one subscription for the run', () => {
  it('attributes each record to its item, acks after the write, and counts filtered items', async () => {
    const sink = memorySink<{ n: number; copy: number }>('s', { maxRecords: 7 });
    const acked: number[] = [];
    const violations: string[] = [];
    const pipeline = definePipeline({
      name: 'sync-fast',
      description: 'test',
      params: z.object({}),
      syncTransform: true,
      source: () => Array.from({ length: 100 }, (_, n) => item(`n${n}`, n, {
        ack: () => {
          acked.push(n);
          const expected = n % 3 === 0 ? 0 : 2;
          const have = sink.written.filter((r) => r.n === n).length;
          if (have !== expected) violations.push(`item ${n} acked with ${have} of ${expected} records written`);
        },
      })),
      transform: () => pipe(
        filter((n: number) => n % 3 !== 0),
        mergeMap((n: number) => [{ n, copy: 0 }, { n, copy: 1 }]),
      ),
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, maxInFlight: 10, stateDir: await tempState(), log: quiet });
    expect(record.status).toBe('succeeded');
    expect(violations).toEqual([]);
    expect(acked).toHaveLength(100);
    expect(sink.written).toHaveLength(2 * 66);
    expect(record.counts.records).toBe(2 * 66);
  });

  it('an error fails only its item and the transform goes on for the next ones', async () => {
    const sink = memorySink<number>('s');
    const pipeline = definePipeline({
      name: 'sync-error',
      description: 'test',
      params: z.object({}),
      syncTransform: true,
      onError: 'skip',
      source: () => [1, 2, 3, 4, 5].map((n) => item(`n${n}`, n)),
      transform: () => map((n: number) => {
        if (n === 3) throw new PermanentError('three is bad');
        return n * 10;
      }),
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, stateDir: await tempState(), log: quiet });
    expect(sink.written.sort((a, b) => a - b)).toEqual([10, 20, 40, 50]);
    expect(record.errors.map((e) => e.item)).toEqual(['n3']);
    expect(record.counts.skipped).toBe(1);
  });

  it('an asynchronous operator under syncTransform fails the run with a message saying so', async () => {
    const sink = memorySink<number>('s');
    const pipeline = definePipeline({
      name: 'sync-misused',
      description: 'test',
      params: z.object({}),
      syncTransform: true,
      source: () => [1, 2, 3],
      transform: () => mergeMap((n: number) => of(n).pipe(delay(1))),
      sinks: () => [sink.sink],
    });
    const record = await runPipeline({ pipeline, stateDir: await tempState(), log: quiet, stopGraceMs: 200 });
    expect(record.status).toBe('failed');
    expect(record.errors[0]!.message).toContain('remove syncTransform');
  });
});

describe('event loop', () => {
  it('a run whose source and sink never wait still lets timers fire (a timed stop is honoured)', async () => {
    const stop = new AbortController();
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 5);
    setTimeout(() => stop.abort(new Error('timed stop')), 100);
    const pipeline = definePipeline({
      name: 'busy',
      description: 'test',
      params: z.object({}),
      source: async function* () { for (let i = 0; ; i++) yield i; },
      sinks: () => [{ name: 'null', kind: 'null', write: () => undefined } satisfies Sink<number>],
    });
    const record = await runPipeline({ pipeline, signal: stop.signal, stateDir: await tempState(), log: quiet });
    clearInterval(timer);
    expect(record.status).toBe('interrupted');
    expect(ticks).toBeGreaterThan(3);
  });
});
