import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import pipeline from '../../pipelines/pv-archiver-samples.ts';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { classifyError } from '../../runtime/errors.ts';
import { HttpClient } from '../../runtime/http-client.ts';
import { createLogger } from '../../runtime/log.ts';
import { Permissions } from '../../runtime/permissions.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { parseTimeNs, pathSegment, PvArchiveAccess, toSample, type PvSample } from '../../sources/http/pv-archiver/archive-access.ts';
import { quoteBigIntegers, SampleArrayParser } from '../../sources/http/pv-archiver/sample-array-parser.ts';
import { startPvArchiver, type ModelChannel, type PvArchiverModel } from '../servers/pv-archiver.ts';

const T0 = 1_468_429_060_825_564_123n; // above 2^53: a double would round it
const SECOND = 1_000_000_000n;

function series(n: number, step = SECOND, start = T0): { time: bigint; value: number }[] {
  return Array.from({ length: n }, (_, i) => ({ time: start + BigInt(i) * step + BigInt(i % 7), value: i * 1.5 }));
}

function model(): PvArchiverModel {
  const channels: ModelChannel[] = [
    { name: 'MAG:Q1:Current', serverId: 's1', decimationLevels: [0, 30], samples: series(100) },
    { name: 'MAG:Q2:Current', serverId: 's1', samples: [{ time: T0, value: NaN }, { time: T0 + SECOND, value: Infinity }, { time: T0 + 2n * SECOND, value: -Infinity }, { time: T0 + 3n * SECOND, value: [1, 'NaN', 3] as never }] },
    { name: 'VAC:Gauge+1 Pressure', serverId: 's1', samples: [{ time: T0, value: 1e-9 }] },
    { name: 'RF:Counter', serverId: 's1', samples: [{ time: T0, type: 'long', value: 9_007_199_254_740_993n }, { time: T0 + SECOND, type: 'long', value: -5n }] },
    { name: 'RF:Mode', serverId: 's1', samples: [{ time: T0, type: 'string', value: 'tuning {"x": [1]}' }, { time: T0 + SECOND, type: 'enum', value: 1 }] },
  ];
  return { servers: [{ serverId: 's1', serverName: 'arch1', online: true, lastOnlineTime: 1_700_000_000_000 }], thisServer: 's1', channels };
}

describe('SampleArrayParser', () => {
  const text = `[{"time":${T0},"type":"string","value":["a}b]\\"{["]},{"time":${T0 + 1n},"type":"long","value":[12345678901234567890]},{"time":5,"value":[1.5e300,-2.0]}]`;

  it('hands out each object whole however the bytes are split, keeping big integers exact', () => {
    for (const size of [1, 2, 3, 7, 1000]) {
      const parser = new SampleArrayParser();
      const got: Record<string, unknown>[] = [];
      const bytes = Buffer.from(text);
      for (let i = 0; i < bytes.length; i += size) got.push(...parser.push(bytes.subarray(i, i + size)));
      expect(parser.complete).toBe(true);
      expect(got).toEqual([
        { time: String(T0), type: 'string', value: ['a}b]"{['] },
        { time: String(T0 + 1n), type: 'long', value: ['12345678901234567890'] },
        { time: 5, value: [1.5e300, -2] },
      ]);
    }
  });

  it('a stream cut mid-array is incomplete, with the whole objects before the cut', () => {
    const parser = new SampleArrayParser();
    const got = parser.push(text.slice(0, text.indexOf('{"time":5') + 4));
    expect(got).toHaveLength(2);
    expect(parser.complete).toBe(false);
  });

  it('refuses what is not an array of objects', () => {
    expect(() => new SampleArrayParser().push('{"time":1}')).toThrow('not a JSON array');
    expect(() => new SampleArrayParser().push('<html>')).toThrow('not a JSON array');
    expect(() => new SampleArrayParser().push('[1,2]')).toThrow(/unexpected "1"/);
  });

  it('quotes only integer literals outside strings', () => {
    expect(quoteBigIntegers('{"a":"12345678901234567890","b":12345678901234567890,"c":1234567890123456.5}'))
      .toBe('{"a":"12345678901234567890","b":"12345678901234567890","c":1234567890123456.5}');
  });
});

describe('sample values and params', () => {
  it('turns NaN/Infinity strings into numbers and long values into bigint', () => {
    const s = toSample('x', { time: String(T0), type: 'double', value: ['NaN', 'Infinity', '-Infinity', 2], minimum: 'NaN', maximum: 1, metaData: { warnLow: 'NaN', units: 'V' } });
    expect(s.time).toBe(T0);
    expect(s.value).toEqual([NaN, Infinity, -Infinity, 2]);
    expect(s.minimum).toBeNaN();
    expect(s.metaData).toEqual({ warnLow: NaN, units: 'V' });
    expect(toSample('x', { time: 1, type: 'long', value: ['9007199254740993', 4] }).value).toEqual([9_007_199_254_740_993n, 4n]);
    expect(toSample('x', { time: 1, type: 'string', value: ['NaN'] }).value).toEqual(['NaN']);
    expect(() => toSample('x', { time: 1.5e20 })).toThrow('without a usable "time"');
  });

  it('reads times as nanoseconds or ISO dates with up to nine fraction digits', () => {
    expect(parseTimeNs(String(T0))).toBe(T0);
    expect(parseTimeNs('2016-07-13T16:57:40.825564123Z')).toBe(T0);
    expect(parseTimeNs('2016-07-13T18:57:40.825564123+02:00')).toBe(T0);
    expect(() => parseTimeNs('last tuesday')).toThrow('neither nanoseconds nor an ISO 8601 date');
  });

  it('sends + as %2B (the server reads + as a space)', () => {
    expect(pathSegment('VAC:Gauge+1 Pressure')).toBe('VAC%3AGauge%2B1%20Pressure');
  });
});

describe('archive access against the local server', () => {
  let server: Awaited<ReturnType<typeof startPvArchiver>>;
  let archive: PvArchiveAccess;
  let http: HttpClient;

  beforeAll(async () => {
    server = await startPvArchiver(model());
    http = new HttpClient(new Permissions({ net: [server.archive.hostPort] }), { retry: { initialDelayMs: 5, maxDelayMs: 20 } });
    archive = new PvArchiveAccess(http, server.archive.origin);
  });
  afterAll(async () => {
    await http.close();
    await server.close();
  });
  beforeEach(() => {
    server.archive.clearFaults();
    server.archive.requests.length = 0;
  });

  const collect = async (it: AsyncIterable<PvSample>) => {
    const out: PvSample[] = [];
    for await (const s of it) out.push(s);
    return out;
  };

  it('lists channels by glob (case-insensitive) and by regexp; a bad regexp is a permanent error naming the URL', async () => {
    expect(await archive.archives()).toEqual([{ key: 1, name: 'Cassandra', description: 'Cassandra PV Archive' }]);
    expect(await archive.channelsByPattern('mag:*:current')).toEqual(['MAG:Q1:Current', 'MAG:Q2:Current']);
    expect(await archive.channelsByPattern('VAC:Gauge+? Pressure')).toEqual(['VAC:Gauge+1 Pressure']);
    expect(await archive.channelsByRegexp('RF:.*')).toEqual(['RF:Counter', 'RF:Mode']);
    let error: unknown;
    try {
      await archive.channelsByRegexp('RF:(');
    } catch (err) {
      error = err;
    }
    expect(classifyError(error)).toBe('permanent');
    expect((error as Error).message).toContain(`${archive.base}/archive/1/channels-by-regexp/RF%3A(: status: HTTP 400`);
  });

  it('keeps nanosecond times exact, and a + in a channel name arrives as +', async () => {
    const got = await collect(archive.samples('MAG:Q1:Current', { start: T0, end: T0 + 10n * SECOND }));
    expect(got[0]!.time).toBe(T0);
    expect(got.map((s) => s.time)).toEqual(series(11).map((s) => s.time));
    const plus = await collect(archive.samples('VAC:Gauge+1 Pressure', { start: T0, end: T0 + SECOND }));
    expect(plus.map((s) => s.value)).toEqual([[1e-9]]);
  });

  it('NaN, infinities, int64 beyond 2^53, strings and enums come through', async () => {
    const q2 = await collect(archive.samples('MAG:Q2:Current', { start: T0, end: T0 + 10n * SECOND }));
    expect(q2.map((s) => s.value)).toEqual([[NaN], [Infinity], [-Infinity], [1, NaN, 3]]);
    expect(q2[0]!.metaData).toMatchObject({ units: 'V', warnLow: NaN, warnHigh: 12 });
    const counter = await collect(archive.samples('RF:Counter', { start: T0, end: T0 + 10n * SECOND }));
    expect(counter.map((s) => s.value)).toEqual([[9_007_199_254_740_993n], [-5n]]);
    const mode = await collect(archive.samples('RF:Mode', { start: T0, end: T0 + 10n * SECOND }));
    expect(mode.map((s) => [s.type, s.value])).toEqual([['string', ['tuning {"x": [1]}']], ['enum', [1]]]);
  });

  it('windows give exactly what one request gives: boundary samples once', async () => {
    const start = T0 + 3n * SECOND + 500n;
    const end = T0 + 60n * SECOND;
    const whole = await collect(archive.samples('MAG:Q1:Current', { start, end }));
    server.archive.requests.length = 0;
    const windowed = await collect(archive.samples('MAG:Q1:Current', { start, end, windowNs: 7n * SECOND }));
    expect(server.archive.hits('/samples/')).toBe(9);
    expect(windowed.map((s) => s.time)).toEqual(whole.map((s) => s.time));
    expect(new Set(windowed.map((s) => s.time)).size).toBe(windowed.length);
    // the one at or before the start and the one at or after the end are there
    expect(windowed[0]!.time).toBeLessThanOrEqual(start);
    expect(windowed.at(-1)!.time).toBeGreaterThanOrEqual(end);
  });

  it('a stream cut mid-array resumes after the last sample, each sample once', async () => {
    const whole = await collect(archive.samples('MAG:Q1:Current', { start: T0, end: T0 + 50n * SECOND }));
    server.model.cutOnce = 20;
    server.archive.requests.length = 0;
    const resumed = await collect(archive.samples('MAG:Q1:Current', { start: T0, end: T0 + 50n * SECOND }));
    expect(resumed.map((s) => s.time)).toEqual(whole.map((s) => s.time));
    const starts = server.archive.requests.map((r) => BigInt(r.url.searchParams.get('start')!));
    expect(starts).toEqual([T0, whole[19]!.time]);
  });

  it('a stream that ends cleanly without its closing bracket is resumed too', async () => {
    const whole = await collect(archive.samples('MAG:Q1:Current', { start: T0, end: T0 + 30n * SECOND }));
    server.model.unterminatedOnce = true;
    const resumed = await collect(archive.samples('MAG:Q1:Current', { start: T0, end: T0 + 30n * SECOND }));
    expect(resumed.map((s) => s.time)).toEqual(whole.map((s) => s.time));
  });

  it('decimated samples (count) are minMaxDouble with minimum and maximum', async () => {
    const got = await collect(archive.samples('MAG:Q1:Current', { start: T0, end: T0 + 99n * SECOND, count: 3 }));
    expect(got.length).toBeGreaterThan(2);
    expect(got.every((s) => s.type === 'minMaxDouble' && s.quality === 'Interpolated')).toBe(true);
    expect(got.every((s) => s.minimum! <= (s.value[0] as number) && (s.value[0] as number) <= s.maximum!)).toBe(true);
    expect(server.archive.requests.at(-1)!.url.searchParams.get('count')).toBe('3');
  });

  it('an unknown channel is a permanent 404; a 503 (cache not ready) is retried', async () => {
    let error: unknown;
    try {
      await collect(archive.samples('NOPE', { start: T0, end: T0 + SECOND }));
    } catch (err) {
      error = err;
    }
    expect(classifyError(error)).toBe('permanent');
    expect((error as Error).message).toMatch(/samples\/NOPE\?start=\d+&end=\d+: status: HTTP 404/);
    server.model.cacheReady = false;
    setTimeout(() => { server.model.cacheReady = true; }, 0);
    server.archive.fault('/samples/', { kind: 'status', status: 503, body: '{"message":"The channel information cache is not ready yet."}' }, 1);
    const got = await collect(archive.samples('MAG:Q1:Current', { start: T0, end: T0 + SECOND }));
    expect(got.length).toBeGreaterThan(0);
  });

  it('end before start is refused before any request', async () => {
    await expect(collect(archive.samples('MAG:Q1:Current', { start: T0, end: T0 - 1n }))).rejects.toThrow('end');
    expect(server.archive.requests).toHaveLength(0);
  });
});

describe('pv-archiver-samples into ClickHouse (embedded)', () => {
  let server: Awaited<ReturnType<typeof startPvArchiver>>;
  let store: ClickHouseStore;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-pv-'));
    server = await startPvArchiver(model());
    store = await openEmbeddedStore({ dir: path.join(dir, 'clickhouse'), database: 'sluice' });
  });
  afterAll(async () => {
    await store.close();
    await server.close();
  });

  const run = (params: Record<string, unknown>) => runPipeline({
    pipeline,
    params: { url: server.archive.origin, start: String(T0), end: String(T0 + 200n * SECOND), windowSeconds: 40, ...params },
    stateDir: path.join(dir, 'state'),
    log: createLogger({ level: 'silent' }),
    registry: new Registry(),
    openStore: async () => store,
    keepStoreOpen: true,
    retry: { initialDelayMs: 5 },
  });

  it('loads exact times, NaN and int64 values; a missing channel fails alone; a re-run adds no duplicates', async () => {
    const jsonl = path.join(dir, 'samples.jsonl');
    server.model.cutOnce = 5;
    const first = await run({ pattern: ['MAG:*'], channels: ['RF:Counter', 'NO:SUCH:CHANNEL'], jsonl });
    expect(first.status).toBe('succeeded');
    expect(first.counts.errors.permanent).toBe(5); // one per window (200 s in 40 s windows) of the missing channel
    expect(first.errors[0]!.message).toContain('NO%3ASUCH%3ACHANNEL');
    const counts = await store.query<{ channel: string; n: string | number }>('SELECT channel, count() AS n FROM pv_samples FINAL GROUP BY channel ORDER BY channel');
    expect(counts.map((r) => [r.channel, Number(r.n)])).toEqual([['MAG:Q1:Current', 100], ['MAG:Q2:Current', 4], ['RF:Counter', 2]]);
    const times = await store.query<{ t: string }>("SELECT toString(time_ns) AS t FROM pv_samples FINAL WHERE channel = 'MAG:Q1:Current' ORDER BY time_ns LIMIT 2");
    expect(times.map((r) => BigInt(r.t))).toEqual([T0, T0 + SECOND + 1n]);
    const specials = await store.query<{ v: string }>("SELECT toString(value) AS v FROM pv_samples FINAL WHERE channel = 'MAG:Q2:Current' ORDER BY time_ns");
    expect(specials.map((r) => r.v)).toEqual(['[nan]', '[inf]', '[-inf]', '[1,nan,3]']);
    const longs = await store.query<{ v: string }>("SELECT toString(value_long) AS v FROM pv_samples FINAL WHERE channel = 'RF:Counter' ORDER BY time_ns");
    expect(longs.map((r) => r.v)).toEqual(['[9007199254740993]', '[-5]']);
    const lines = (await readFile(jsonl, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { channel: string; time_ns: string });
    expect(lines.filter((l) => l.channel === 'MAG:Q1:Current').map((l) => l.time_ns)[0]).toBe(String(T0));

    const again = await run({ pattern: ['MAG:*'], channels: ['RF:Counter'] });
    expect(again.status).toBe('succeeded');
    const after = await store.query<{ n: string | number }>('SELECT count() AS n FROM pv_samples FINAL');
    expect(Number(after[0]!.n)).toBe(106);
  }, 60_000);
});
