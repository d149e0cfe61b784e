/**
 * pv-archiver-samples — load samples from a Cassandra PV Archiver's archive access API
 * into the ClickHouse table `pv_samples` (and, optionally, a JSON Lines file).
 *
 * Channels are given by name, by glob and by regular expression (the server matches
 * them). The time range is split into windows; each window of each channel is one item,
 * so a failing channel or window never loses the others' samples, and at most
 * `maxInFlight` windows stream at once. Times stay exact nanoseconds (`time_ns` Int64);
 * NaN and infinities are kept; a stream cut mid-array resumes after its last sample.
 * Loading a range again replaces rather than duplicates (ReplacingMergeTree on
 * channel and time; read with FINAL for exact counts).
 */
import path from 'node:path';
import { from, map, mergeMap, pipe } from 'rxjs';
import { z } from 'zod';
import { defineTable, type RowOf } from '../runtime/clickhouse/table.ts';
import { definePipeline, item } from '../runtime/pipeline.ts';
import { clickhouse } from '../sinks/clickhouse/index.ts';
import { snapshot } from '../sinks/snapshot.ts';
import { parseTimeNs, PvArchiveAccess, sampleWindows, type PvSample, type SampleWindow } from '../sources/http/pv-archiver/archive-access.ts';

/** One sample per row; a channel's samples are ordered by their exact time. */
export const pvSamples = defineTable('pv_samples', {
  columns: {
    channel: 'LowCardinality(String)',
    time_ns: 'Int64',
    time: 'DateTime',
    severity: 'LowCardinality(String)',
    severity_has_value: 'UInt8',
    status: 'LowCardinality(String)',
    quality: 'LowCardinality(String)',
    type: 'LowCardinality(String)',
    value: 'Array(Float64)',
    value_long: 'Array(Int64)',
    value_string: 'Array(String)',
    minimum: 'Nullable(Float64)',
    maximum: 'Nullable(Float64)',
    meta_json: 'String',
  },
  orderBy: ['channel', 'time_ns'],
  partitionBy: 'toYYYYMM(time)',
});

export type PvSampleRow = RowOf<typeof pvSamples>;

export function sampleRow(s: PvSample): PvSampleRow {
  const numbers: number[] = [];
  const longs: bigint[] = [];
  const strings: string[] = [];
  for (const v of s.value) {
    if (s.type === 'string') strings.push(String(v));
    else if (typeof v === 'bigint') longs.push(v);
    else if (typeof v === 'number') numbers.push(v);
    else strings.push(v);
  }
  return {
    channel: s.channel,
    time_ns: s.time,
    time: Number(s.time / 1_000_000_000n),
    severity: s.severity.level,
    severity_has_value: s.severity.hasValue ? 1 : 0,
    status: s.status,
    quality: s.quality,
    type: s.type,
    value: s.type === 'long' ? longs.map(Number) : numbers,
    value_long: longs,
    value_string: strings,
    minimum: s.minimum ?? null,
    maximum: s.maximum ?? null,
    meta_json: s.metaData ? JSON.stringify(s.metaData, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)) : '',
  };
}

const params = z.object({
  url: z.string().url().describe('the archive access base URL, e.g. http://archiver.example.org:9812'),
  channels: z.array(z.string()).default([]).describe('channel names (repeat)'),
  pattern: z.array(z.string()).default([]).describe('channel globs: * and ?, case-insensitive (repeat)'),
  regexp: z.array(z.string()).default([]).describe('channel regular expressions (Java syntax, whole name) (repeat)'),
  start: z.string().describe('start of the range: nanoseconds since the epoch or an ISO 8601 date'),
  end: z.string().default('now').describe('end of the range: nanoseconds, an ISO 8601 date, or now'),
  count: z.number().int().min(1).optional().describe('decimated: about this many samples per window (the server picks the level)'),
  windowSeconds: z.number().int().min(1).default(86_400).describe('split the range into windows this long; one request each'),
  timeoutMs: z.number().int().min(1).default(600_000).describe('total deadline of one window\'s request, ms'),
  jsonl: z.string().default('').describe('also write the samples as JSON Lines to this file (times as strings)'),
});

interface WindowItem {
  channel: string;
  window: SampleWindow;
}

export default definePipeline({
  name: 'pv-archiver-samples',
  description: 'Load Cassandra PV Archiver samples (by channel name, glob or regexp, over a time range) into ClickHouse',
  params,
  permissions: ({ params: p }) => {
    const u = new URL(p.url);
    return { net: [`${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`], write: p.jsonl ? [path.dirname(p.jsonl)] : [] };
  },
  tables: [pvSamples],
  maxInFlight: 8,
  onError: 'skip',
  source: async function* (ctx) {
    const p = ctx.params;
    const archive = new PvArchiveAccess(ctx.http, p.url, { signal: ctx.signal });
    const start = parseTimeNs(p.start);
    const end = p.end === 'now' ? BigInt(Date.now()) * 1_000_000n : parseTimeNs(p.end);
    if (end < start) throw new Error(`pv-archiver-samples: end ${p.end} is before start ${p.start}`);
    const names = new Set(p.channels);
    for (const glob of p.pattern) for (const n of await archive.channelsByPattern(glob)) names.add(n);
    for (const re of p.regexp) for (const n of await archive.channelsByRegexp(re)) names.add(n);
    if (names.size === 0) ctx.log.warn('pv-archiver-samples: no channel given or matched; nothing to load');
    const windows = sampleWindows({ start, end, windowNs: BigInt(p.windowSeconds) * 1_000_000_000n });
    for (const channel of [...names].sort()) {
      for (const w of windows) yield item<WindowItem>(`${archive.samplesUrl(channel, w.start, w.end, p.count)}`, { channel, window: w });
    }
  },
  transform: (ctx) => {
    const archive = new PvArchiveAccess(ctx.http, ctx.params.url, { signal: ctx.signal, timeoutMs: ctx.params.timeoutMs });
    return pipe(mergeMap((w: WindowItem) => from(archive.samplesInWindow(w.channel, w.window, { count: ctx.params.count })).pipe(map(sampleRow))));
  },
  sinks: ({ params: p }) => [
    clickhouse(pvSamples),
    ...(p.jsonl ? [snapshot<PvSampleRow>({ path: p.jsonl, format: 'jsonl' })] : []),
  ],
  nextSteps: () => ['', 'Look at what was loaded:', '  npm run query -- "SELECT channel, count(), min(time), max(time) FROM pv_samples FINAL GROUP BY channel ORDER BY channel"'],
});
