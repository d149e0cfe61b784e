/**
 * `PvArchiveAccess`: the Cassandra PV Archiver's archive access API
 * (`<base>/archive-access/api/1.0`, port 9812, no auth): channels by glob and by regular
 * expression, and samples of a channel over a time range, raw or decimated.
 *
 * Samples are read as they stream in, never buffered whole. Times are nanoseconds since
 * the epoch as `bigint` (they are above 2^53: a float would lose them); int64 values are
 * `bigint` too; `"NaN"`, `"Infinity"` and `"-Infinity"` become numbers in numeric values,
 * `minimum`/`maximum` and numeric metadata.
 *
 * Long ranges are split into windows (`windowNs`). Each answer carries one extra sample at
 * or before its start and one at or after its end, so adjacent windows overlap: a window
 * keeps only the samples that fall in it (the first window also the one before the
 * start, the last the one after the end), which gives exactly what one request for the
 * whole range would. A stream cut mid-array (a connection lost, a server that failed
 * mid-answer) is resumed from the last sample's time, dropping what was already handed
 * out, up to `maxResumes` times per window.
 *
 * @example
 * ```ts
 * const archive = new PvArchiveAccess(ctx.http, 'http://archiver:9812');
 * for (const name of await archive.channelsByPattern('MAG:*:Current')) {
 *   for await (const s of archive.samples(name, { start: 1_700_000_000_000_000_000n, end: 1_700_086_400_000_000_000n })) {
 *     console.log(s.time, s.value);
 *   }
 * }
 * ```
 */
import { PermanentError, TransientError, classifyError, describeError } from '../../../runtime/errors.ts';
import { HttpError, type HttpClient, type HttpRequestOptions } from '../../../runtime/http-client.ts';
import { SampleArrayParser } from './sample-array-parser.ts';

export type PvSampleType = 'double' | 'long' | 'enum' | 'string' | 'minMaxDouble';

export interface PvSample {
  channel: string;
  /** nanoseconds since the epoch, exact */
  time: bigint;
  severity: { level: string; hasValue: boolean };
  status: string;
  quality: string;
  type: PvSampleType | string;
  /** numbers for double/minMaxDouble/enum, bigint for long, strings for string */
  value: Array<number | bigint | string>;
  minimum?: number;
  maximum?: number;
  metaData?: Record<string, unknown>;
}

export interface SampleQuery {
  /** nanoseconds since the epoch */
  start: bigint;
  end: bigint;
  /** ask for about this many (decimated) samples per window */
  count?: number;
  /** split the range into windows this long (default: one request) */
  windowNs?: bigint;
  /** resumes of a cut stream per window (default 3) */
  maxResumes?: number;
}

export interface ArchiveAccessOptions {
  /** total deadline of one request (a samples stream included), ms; default 120 000 */
  timeoutMs?: number;
  /** longest pause in a samples stream, ms; default 30 000 */
  bodyTimeoutMs?: number;
  /** cap on channel lists, bytes; default 16 MiB */
  maxListBytes?: number;
  /** cap on one samples answer, bytes; default 1 GiB */
  maxSampleBytes?: number;
  signal?: AbortSignal;
}

const NUMERIC_META = ['displayLow', 'displayHigh', 'warnLow', 'warnHigh', 'alarmLow', 'alarmHigh'];

/** A JSON number or one of the archiver's special-value strings, as a number. */
export function archiverNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  if (typeof v === 'string' && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(v)) return Number(v);
  return undefined;
}

/** Turn a parsed sample object into a PvSample; throws on one that lacks its time. */
export function toSample(channel: string, raw: Record<string, unknown>): PvSample {
  const t = raw.time;
  let time: bigint;
  if (typeof t === 'string' && /^-?\d+$/.test(t)) time = BigInt(t);
  else if (typeof t === 'number' && Number.isSafeInteger(t)) time = BigInt(t);
  else throw new SyntaxError(`a sample without a usable "time": ${JSON.stringify(t)}`);
  const type = typeof raw.type === 'string' ? raw.type : 'double';
  const values = Array.isArray(raw.value) ? raw.value : raw.value === undefined ? [] : [raw.value];
  const value = values.map((v): number | bigint | string => {
    if (type === 'string') return typeof v === 'string' ? v : JSON.stringify(v);
    if (type === 'long') {
      if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
      if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
    }
    const n = archiverNumber(v);
    return n === undefined ? String(v) : n;
  });
  const sev = raw.severity as { level?: unknown; hasValue?: unknown } | undefined;
  const sample: PvSample = {
    channel,
    time,
    severity: { level: typeof sev?.level === 'string' ? sev.level : '', hasValue: sev?.hasValue !== false },
    status: typeof raw.status === 'string' ? raw.status : '',
    quality: typeof raw.quality === 'string' ? raw.quality : '',
    type,
    value,
  };
  const min = archiverNumber(raw.minimum);
  const max = archiverNumber(raw.maximum);
  if (min !== undefined) sample.minimum = min;
  if (max !== undefined) sample.maximum = max;
  if (raw.metaData && typeof raw.metaData === 'object') {
    const meta = { ...(raw.metaData as Record<string, unknown>) };
    for (const key of NUMERIC_META) {
      if (key in meta) {
        const n = archiverNumber(meta[key]);
        if (n !== undefined) meta[key] = n;
      }
    }
    sample.metaData = meta;
  }
  return sample;
}

/** Percent-encode one path segment; `+` goes as %2B (the server reads `+` as a space). */
export function pathSegment(text: string): string {
  return encodeURIComponent(text);
}

/** Parse a time given as nanoseconds, or as an ISO 8601 date, to nanoseconds since the epoch. */
export function parseTimeNs(text: string | bigint | number): bigint {
  if (typeof text === 'bigint') return text;
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text)) throw new PermanentError(`time ${text} is not an exact integer; give nanoseconds as a string or an ISO date`);
    return BigInt(text);
  }
  const t = text.trim();
  if (/^-?\d+$/.test(t)) return BigInt(t);
  const m = /^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})$/.exec(t);
  const ms = Date.parse(m ? `${m[1]}${m[3]}` : t);
  if (Number.isNaN(ms)) throw new PermanentError(`time ${JSON.stringify(text)} is neither nanoseconds nor an ISO 8601 date`);
  const fraction = m?.[2] ? BigInt(m[2].padEnd(9, '0')) : 0n;
  return BigInt(ms) * 1_000_000n + fraction;
}

/** One request's share of a long range. */
export interface SampleWindow {
  start: bigint;
  end: bigint;
  /** the first window: also keeps the sample at or before the range's start */
  first: boolean;
  /** the last window: also keeps the sample at or after the range's end */
  last: boolean;
}

function checkQuery(channel: string, query: SampleQuery): void {
  if (query.end < query.start) throw new PermanentError(`samples of ${channel}: end ${query.end} is before start ${query.start}`);
  if (query.count !== undefined && !(Number.isInteger(query.count) && query.count > 0)) {
    throw new PermanentError(`samples of ${channel}: count must be a positive integer, got ${query.count}`);
  }
}

/** Split a range into windows of `windowNs` (one window without it). */
export function sampleWindows(query: Pick<SampleQuery, 'start' | 'end' | 'windowNs'>): SampleWindow[] {
  const windowNs = query.windowNs && query.windowNs > 0n ? query.windowNs : query.end - query.start + 1n;
  const out: SampleWindow[] = [];
  for (let from = query.start; ; from += windowNs) {
    const to = from + windowNs >= query.end ? query.end : from + windowNs;
    out.push({ start: from, end: to, first: from === query.start, last: to === query.end });
    if (to === query.end) return out;
  }
}

export class PvArchiveAccess {
  readonly base: string;
  constructor(private readonly http: HttpClient, baseUrl: string, private readonly options: ArchiveAccessOptions = {}) {
    this.base = `${baseUrl.replace(/\/+$/, '')}/archive-access/api/1.0`;
  }

  private req(extra: HttpRequestOptions = {}): HttpRequestOptions {
    return { timeoutMs: this.options.timeoutMs ?? 120_000, signal: this.options.signal, ...extra };
  }

  /** The archives the server has (always one: key 1, "Cassandra"). */
  async archives(): Promise<{ key: number; name: string; description: string }[]> {
    return this.http.json(`${this.base}/archive/`, this.req({ kind: 'list', maxBytes: 1 << 20 }));
  }

  /** Channel names matching a glob (`*`, `?`; case-insensitive, whole name), sorted. */
  channelsByPattern(glob: string): Promise<string[]> {
    return this.list(`${this.base}/archive/1/channels-by-pattern/${pathSegment(glob)}`);
  }

  /** Channel names matching a Java regular expression (case-sensitive, whole name), sorted; a bad expression is a permanent error. */
  channelsByRegexp(regexp: string): Promise<string[]> {
    return this.list(`${this.base}/archive/1/channels-by-regexp/${pathSegment(regexp)}`);
  }

  private async list(url: string): Promise<string[]> {
    const names = await this.http.json<unknown>(url, this.req({ kind: 'list', maxBytes: this.options.maxListBytes ?? 16 << 20 }));
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) {
      throw new PermanentError(`${url}: expected a JSON array of channel names`, { item: url });
    }
    return names as string[];
  }

  /** The URL of one samples request. */
  samplesUrl(channel: string, start: bigint, end: bigint, count?: number): string {
    return `${this.base}/archive/1/samples/${pathSegment(channel)}?start=${start}&end=${end}${count !== undefined ? `&count=${count}` : ''}`;
  }

  /** Samples of `channel` over `query`, in time order, each once. */
  async *samples(channel: string, query: SampleQuery): AsyncGenerator<PvSample> {
    checkQuery(channel, query);
    for (const w of sampleWindows(query)) yield* this.samplesInWindow(channel, w, query);
  }

  /**
   * The samples of one window of a range (see `sampleWindows`): those in [start, end),
   * plus the one before the start for the first window and the one after the end for
   * the last, resumed after cuts.
   */
  samplesInWindow(channel: string, w: SampleWindow, options: { count?: number; maxResumes?: number } = {}): AsyncGenerator<PvSample> {
    const keep = (t: bigint) => (w.first || t >= w.start) && (w.last || t < w.end);
    return this.window(channel, w.start, w.end, options.count, keep, options.maxResumes ?? 3);
  }

  /** One request's samples (resumed after cuts), filtered by `keep`. */
  private async *window(channel: string, start: bigint, end: bigint, count: number | undefined, keep: (t: bigint) => boolean, maxResumes: number): AsyncGenerator<PvSample> {
    let lastTime: bigint | undefined;
    let requestStart = start;
    for (let resumes = 0; ; resumes++) {
      const url = this.samplesUrl(channel, requestStart, end, count);
      const parser = new SampleArrayParser();
      let cut: unknown;
      try {
        const res = await this.http.stream(url, this.req({
          kind: 'samples',
          maxBytes: this.options.maxSampleBytes ?? 1 << 30,
          bodyTimeoutMs: this.options.bodyTimeoutMs ?? 30_000,
          headers: { accept: 'application/json' },
        }));
        for await (const chunk of res.body) {
          let objects: Record<string, unknown>[];
          try {
            objects = parser.push(chunk);
          } catch (err) {
            throw new PermanentError(`${url}: the samples answer is not a JSON array of samples: ${(err as Error).message}`, { item: url, cause: err });
          }
          for (const obj of objects) {
            let sample: PvSample;
            try {
              sample = toSample(channel, obj);
            } catch (err) {
              throw new PermanentError(`${url}: ${(err as Error).message}`, { item: url, cause: err });
            }
            // after a resume, what was handed out already comes again: skip it
            if (lastTime !== undefined && sample.time <= lastTime) continue;
            lastTime = sample.time;
            if (keep(sample.time)) yield sample;
          }
        }
        if (parser.complete) return;
        cut = new TransientError(`${url}: the samples stream ended before the closing "]"`, { item: url });
      } catch (err) {
        if (!(err instanceof HttpError && err.phase === 'body' && classifyError(err) === 'transient')) throw err;
        cut = err;
      }
      if (resumes >= maxResumes) {
        throw new TransientError(`${url}: the samples stream was cut ${resumes + 1} times; last: ${describeError(cut)}`, { item: url, cause: cut });
      }
      // resume from the last sample handed out: the answer starts with it (at or before the start), which is skipped
      if (lastTime !== undefined) requestStart = lastTime > start ? lastTime : start;
    }
  }
}
