/**
 * The one HTTP client every source uses: undici with pooled keep-alive connections and
 * a per-host connection limit, the run's `net` permission checked before every request
 * (redirects included), deadlines, size caps, retries of transient failures, gzip, and
 * metrics per host and status. Every error names the method, the URL and the phase that
 * failed (`connect`, `headers`, `status`, `body`, `decode`).
 *
 * Deadlines:
 * - `connectTimeoutMs` (client): opening a TCP/TLS connection;
 * - `headersTimeoutMs` (request): from sending the request to the response headers;
 * - `bodyTimeoutMs` (request): the longest pause between two body chunks;
 * - `timeoutMs` (request): the total, over every attempt and retry wait.
 *
 * Retries: only transient failures are retried, and only for idempotent methods unless
 * the caller says otherwise (`retries`): a connection reset (before or during the body
 * of a buffered request) and 502/503/504. The wait is backoff with jitter, but never
 * shorter than the server's `Retry-After`; when the server asks for longer than the
 * deadline leaves (or than `maxRetryAfterMs`), the request fails at once with a
 * transient error carrying `retryAfterMs`, so the runner can come back later. 4xx are
 * never retried (429 is classified transient for the runner, but not retried here);
 * timeouts are not retried either: they already spent the deadline.
 *
 * Size caps: `maxBytes` per request, or per endpoint kind (`kind`, looked up in the
 * client's `sizeCaps`). The cap applies to the decoded body (a gzip bomb stops at the
 * cap) and to a declared Content-Length before anything is read.
 *
 * Metrics (once a registry is attached, see `useMetrics`):
 *
 * | metric                                          | type      | labels               |
 * |-------------------------------------------------|-----------|----------------------|
 * | `sluice_http_client_requests_total`             | counter   | host, method, status |
 * | `sluice_http_client_request_duration_seconds`   | histogram | host                 |
 * | `sluice_http_client_response_bytes_total`       | counter   | host                 |
 * | `sluice_http_client_errors_total`               | counter   | host, phase          |
 * | `sluice_http_client_retries_total`              | counter   | host                 |
 *
 * `host` is `host:port`; `status` is the HTTP status, or `none` when no response came.
 * One attempt is one request; a retried request counts each attempt.
 *
 * @example
 * ```ts
 * const res = await ctx.http.request('https://s1.example.org/cvmfs/info/v1/repositories.json', {
 *   kind: 'index', maxBytes: 1 << 20, timeoutMs: 10_000,
 * });
 * const index = await ctx.http.json(url, { kind: 'index' });
 * const optional = await ctx.http.request(metaUrl, { okStatus: [404] }); // 404 returned, not thrown
 * const stream = await ctx.http.stream(samplesUrl, { timeoutMs: 600_000 });
 * for await (const chunk of stream.body) parser.write(chunk);
 * ```
 */
import { setMaxListeners } from 'node:events';
import { rootCertificates } from 'node:tls';
import { pipeline, Transform, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import { Counter, Histogram, type Registry } from 'prom-client';
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { backoffDelay, delayFor } from './backoff.ts';
import { SluiceError, type ErrorKind } from './errors.ts';
import type { Permissions } from './permissions.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD';

/** Where a request failed: opening the connection, waiting for headers, an unwanted status, reading or decoding the body. */
export type HttpPhase = 'connect' | 'headers' | 'status' | 'body' | 'decode';

export interface HttpRequestOptions {
  method?: HttpMethod;
  headers?: Record<string, string>;
  /**
   * headers computed for each attempt from the time the deadline leaves, e.g. a server
   * side timeout (`x-oio-timeout`) kept under our own deadline
   */
  headersFor?: (attempt: { readonly attempt: number; readonly remainingMs: number }) => Record<string, string>;
  body?: string | Uint8Array;
  signal?: AbortSignal;
  /** total deadline over every attempt, ms (default 30 000) */
  timeoutMs?: number;
  /** opening the connection, ms (default: the client's `connectTimeoutMs`) */
  connectTimeoutMs?: number;
  /** from sending the request to its response headers, ms (default: the total) */
  headersTimeoutMs?: number;
  /** longest pause between body chunks, ms (default: the total) */
  bodyTimeoutMs?: number;
  /** refuse bodies larger than this (decoded), bytes; default the client's cap for `kind` */
  maxBytes?: number;
  /** the endpoint kind: picks the size cap from the client's `sizeCaps` and is named in errors */
  kind?: string;
  /** extra attempts on transient failures; default 2 for GET and HEAD, 0 for other methods */
  retries?: number;
  /** statuses ≥ 400 returned as responses instead of thrown (404 for optional files, 500 for partial results) */
  okStatus?: readonly number[];
  /** redirects followed (each one permission-checked); default 3 */
  maxRedirects?: number;
  /** ask for and decode gzip/deflate/br; default true */
  decompress?: boolean;
}

export interface HttpResponse {
  /** the URL that answered (after redirects) */
  url: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface HttpStreamResponse {
  url: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** the decoded body; iteration throws an HttpError naming the URL on a cut, an over-size body or a timeout */
  body: AsyncIterable<Buffer>;
}

export interface HttpClientOptions {
  /** most connections open to one host:port at a time (default 16) */
  connectionsPerHost?: number;
  /** @deprecated alias of connectionsPerHost */
  connections?: number;
  /** deadline for opening a connection, ms (default 10 000) */
  connectTimeoutMs?: number;
  /** size caps by endpoint kind (bytes); `default` applies when a request names no cap (default 64 MiB) */
  sizeCaps?: Readonly<Record<string, number>>;
  /** backoff between retries (ms), and the longest Retry-After honoured (default 30 000) */
  retry?: { initialDelayMs?: number; maxDelayMs?: number; maxRetryAfterMs?: number };
  /** where the client's metrics go; see `useMetrics` */
  registry?: Registry;
  /** extra certificate authorities (PEM) to trust for https, e.g. a site's private CA */
  ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** a dispatcher of your own (tests); the client then does not close it */
  dispatcher?: Dispatcher;
}

/** A failed request: names the method, the URL and the phase, and is transient or permanent. */
export class HttpError extends SluiceError {
  override name = 'HttpError';
  readonly url: string;
  readonly method: string;
  readonly phase: HttpPhase;
  /** the HTTP status, when a response came */
  readonly status?: number;
  /** the response, for status errors (body capped at 64 KiB) */
  readonly response?: HttpResponse;
  constructor(kind: ErrorKind, options: {
    method: string; url: string; phase: HttpPhase; reason: string; status?: number; response?: HttpResponse;
    retryAfterMs?: number; hint?: string; cause?: unknown;
  }) {
    super(kind, `${options.method} ${options.url}: ${options.phase}: ${options.reason}`, {
      item: options.url, hint: options.hint, retryAfterMs: options.retryAfterMs, cause: options.cause,
    });
    this.url = options.url;
    this.method = options.method;
    this.phase = options.phase;
    this.status = options.status;
    this.response = options.response;
  }
}

const TRANSIENT_STATUS = new Set([429, 502, 503, 504]);
const RETRIED_STATUS = new Set([502, 503, 504]);
/** a connection the other side dropped: worth another try */
const RESET_CODES = new Set(['ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_CLOSED']);
/** failures before a connection was open */
const CONNECT_CODES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT', 'EADDRNOTAVAIL',
]);
const TRANSIENT_CODES = new Set([...RESET_CODES, ...CONNECT_CODES, 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const ERROR_BODY_CAP = 64 * 1024;
const SYNC_DECODE_BYTES = 64 * 1024;
const DEFAULT_CAP = 64 * 1024 * 1024;
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Milliseconds a `Retry-After` header asks for (delta seconds or an HTTP date), or undefined. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** `host:port` of a URL, the label of the client's metrics. */
export function hostOf(url: URL): string {
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return `${url.hostname}:${port}`;
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

class HttpMetrics {
  readonly requests: Counter<string>;
  readonly duration: Histogram<string>;
  readonly bytes: Counter<string>;
  readonly errors: Counter<string>;
  readonly retries: Counter<string>;
  constructor(registry: Registry) {
    this.requests = shared(registry, 'counter', 'sluice_http_client_requests_total',
      'HTTP requests (attempts) made by the shared client, by host, method and response status ("none": no response).',
      ['host', 'method', 'status']) as Counter<string>;
    this.duration = shared(registry, 'histogram', 'sluice_http_client_request_duration_seconds',
      'Time from sending an HTTP request to the end of its body (or its failure).', ['host']) as Histogram<string>;
    this.bytes = shared(registry, 'counter', 'sluice_http_client_response_bytes_total',
      'Response body bytes received on the wire (before decompression).', ['host']) as Counter<string>;
    this.errors = shared(registry, 'counter', 'sluice_http_client_errors_total',
      'Failed HTTP attempts, by host and phase (connect, headers, status, body, decode).', ['host', 'phase']) as Counter<string>;
    this.retries = shared(registry, 'counter', 'sluice_http_client_retries_total',
      'HTTP attempts retried after a transient failure.', ['host']) as Counter<string>;
  }
}

/** The metric `name` in `registry`, created on first use (several clients share one registry). */
function shared(registry: Registry, type: 'counter' | 'histogram', name: string, help: string, labelNames: string[]): Counter<string> | Histogram<string> {
  const existing = registry.getSingleMetric(name);
  const Class = type === 'counter' ? Counter : Histogram;
  if (existing) {
    if (!(existing instanceof Class)) throw new Error(`metric ${name} is already registered as another kind of metric; the HTTP client needs a ${type}`);
    return existing as Counter<string> | Histogram<string>;
  }
  const metric = type === 'counter'
    ? new Counter({ name, help, labelNames, registers: [] })
    : new Histogram({ name, help, labelNames, buckets: DURATION_BUCKETS, registers: [] });
  registry.registerMetric(metric);
  return metric;
}

const metricsByRegistry = new WeakMap<Registry, HttpMetrics>();
const manySignals = new WeakSet<AbortSignal>();

/** What one attempt came back with, before the body is read. */
interface Opened {
  url: URL;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  raw: Readable;
  host: string;
  started: number;
  /** wire bytes read so far */
  wire: { bytes: number };
  /** stops the attempt's deadline timer */
  clear: () => void;
}

export class HttpClient {
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly perHost: number;
  private readonly ca?: (string | Buffer)[];
  private readonly connectTimeoutMs: number;
  private readonly allowedOrigins = new Set<string>();
  /** pools for requests that ask for another connect deadline than the client's */
  private readonly byConnectTimeout = new Map<number, Agent>();
  private readonly sizeCaps: Readonly<Record<string, number>>;
  private readonly retryOptions: { initialDelayMs: number; maxDelayMs: number; maxRetryAfterMs: number };
  private metrics?: HttpMetrics;

  constructor(private readonly permissions: Permissions, options: HttpClientOptions = {}) {
    this.perHost = options.connectionsPerHost ?? options.connections ?? 16;
    this.ca = options.ca === undefined ? undefined : [...rootCertificates, ...(Array.isArray(options.ca) ? options.ca : [options.ca])] as (string | Buffer)[];
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.ownsDispatcher = !options.dispatcher;
    this.dispatcher = options.dispatcher ?? this.newAgent(this.connectTimeoutMs);
    this.sizeCaps = options.sizeCaps ?? {};
    this.retryOptions = { initialDelayMs: 100, maxDelayMs: 2_000, maxRetryAfterMs: 30_000, ...options.retry };
    if (options.registry) this.useMetrics(options.registry);
  }

  /**
   * Record this client's metrics in `registry` (idempotent; the first registry wins).
   * The runner attaches the run's registry, so a run's /metrics shows its HTTP traffic.
   */
  useMetrics(registry: Registry): this {
    if (!this.metrics) {
      let m = metricsByRegistry.get(registry);
      if (!m) metricsByRegistry.set(registry, (m = new HttpMetrics(registry)));
      this.metrics = m;
    }
    return this;
  }

  /** One request, body read whole (up to the size cap). */
  async request(url: string, options: HttpRequestOptions = {}): Promise<HttpResponse> {
    const method = options.method ?? 'GET';
    const deadline = performance.now() + (options.timeoutMs ?? 30_000);
    const cap = this.capFor(options);
    const maxAttempts = 1 + (options.retries ?? (method === 'GET' || method === 'HEAD' ? 2 : 0));
    for (let attempt = 1; ; attempt++) {
      try {
        const opened = await this.open(url, options, method, deadline, attempt);
        const body = await this.readAll(opened, options, method, cap, deadline);
        const response: HttpResponse = { url: opened.url.href, status: opened.status, headers: opened.headers, body };
        this.finish(opened, method, undefined);
        return response;
      } catch (err) {
        const retryIn = this.retryDelay(err, attempt, maxAttempts, deadline, options.signal);
        if (retryIn === undefined) throw err;
        const host = hostOf(new URL((err as HttpError).url));
        this.metrics?.retries.inc({ host }, 1);
        await delayFor(retryIn, options.signal);
      }
    }
  }

  /** One request whose body is parsed as JSON; a wrong content type or invalid JSON is a permanent `decode` error naming the URL. */
  async json<T = unknown>(url: string, options: HttpRequestOptions = {}): Promise<T> {
    const res = await this.request(url, { ...options, headers: { accept: 'application/json', ...options.headers } });
    const method = options.method ?? 'GET';
    checkJsonContentType(res, method);
    try {
      return JSON.parse(res.body.toString('utf8')) as T;
    } catch (err) {
      throw new HttpError('permanent', {
        method, url: res.url, phase: 'decode', status: res.status,
        reason: `invalid JSON (${(err as Error).message}; ${res.body.length} bytes, starting ${JSON.stringify(res.body.subarray(0, 40).toString('utf8'))})`,
        cause: err,
      });
    }
  }

  /**
   * One request whose body is read as it arrives. Retries (and redirects) happen before
   * the body starts; a cut in the body is a transient HttpError thrown by the iteration,
   * which the caller may resume (e.g. with a range of its own).
   */
  async stream(url: string, options: HttpRequestOptions = {}): Promise<HttpStreamResponse> {
    const method = options.method ?? 'GET';
    const deadline = performance.now() + (options.timeoutMs ?? 30_000);
    const cap = this.capFor(options);
    const maxAttempts = 1 + (options.retries ?? (method === 'GET' || method === 'HEAD' ? 2 : 0));
    for (let attempt = 1; ; attempt++) {
      let opened: Opened;
      try {
        opened = await this.open(url, options, method, deadline, attempt);
        this.checkDeclaredLength(opened, method, cap, options);
      } catch (err) {
        const retryIn = this.retryDelay(err, attempt, maxAttempts, deadline, options.signal);
        if (retryIn === undefined) throw err;
        this.metrics?.retries.inc({ host: hostOf(new URL((err as HttpError).url)) }, 1);
        await delayFor(retryIn, options.signal);
        continue;
      }
      return {
        url: opened.url.href,
        status: opened.status,
        headers: opened.headers,
        body: this.iterateBody(opened, options, method, cap),
      };
    }
  }

  async close(): Promise<void> {
    const agents = [...this.byConnectTimeout.values()];
    this.byConnectTimeout.clear();
    await Promise.all([...(this.ownsDispatcher ? [this.dispatcher.close()] : []), ...agents.map((a) => a.close())]);
  }

  // ---- internals ---------------------------------------------------------------------

  /**
   * The run's `net` permission for this URL. Allowed origins are remembered (a client's
   * permissions never change), so a scrape of hundreds of hosts does not walk the
   * allow-list on every request; a refusal is checked (and thrown) every time.
   */
  private checkNet(target: URL): void {
    const origin = `${target.protocol}//${target.host}`;
    if (this.allowedOrigins.has(origin)) return;
    this.permissions.checkNet(target, target.href);
    this.allowedOrigins.add(origin);
  }

  private newAgent(connectTimeoutMs: number): Agent {
    return new Agent({ connections: this.perHost, keepAliveTimeout: 10_000, connect: { timeout: connectTimeoutMs, ...(this.ca ? { ca: this.ca } : {}) } });
  }

  private dispatcherFor(options: HttpRequestOptions): Dispatcher {
    const wanted = options.connectTimeoutMs;
    if (wanted === undefined || wanted === this.connectTimeoutMs || !this.ownsDispatcher) return this.dispatcher;
    let agent = this.byConnectTimeout.get(wanted);
    if (!agent) this.byConnectTimeout.set(wanted, (agent = this.newAgent(wanted)));
    return agent;
  }

  private capFor(options: HttpRequestOptions): number {
    return options.maxBytes ?? (options.kind !== undefined ? this.sizeCaps[options.kind] : undefined) ?? this.sizeCaps.default ?? DEFAULT_CAP;
  }

  /** ms to wait before the next attempt, or undefined when `err` must be thrown. */
  private retryDelay(err: unknown, attempt: number, maxAttempts: number, deadline: number, signal?: AbortSignal): number | undefined {
    if (!(err instanceof HttpError) || signal?.aborted || attempt >= maxAttempts) return undefined;
    const retriable = err.status !== undefined
      ? RETRIED_STATUS.has(err.status)
      : RESET_CODES.has((err.cause as { code?: string } | undefined)?.code ?? '');
    if (!retriable) return undefined;
    const wait = Math.max(
      backoffDelay(attempt, { initialDelayMs: this.retryOptions.initialDelayMs, maxDelayMs: this.retryOptions.maxDelayMs, jitter: 'equal' }),
      err.retryAfterMs ?? 0,
    );
    if ((err.retryAfterMs ?? 0) > this.retryOptions.maxRetryAfterMs) return undefined;
    // no time left for the wait and one more try: give the error (with its Retry-After) to the caller
    if (performance.now() + wait >= deadline) return undefined;
    return wait;
  }

  /** Send one attempt (following redirects) and wait for its headers; a status ≥ 400 not in okStatus is thrown. */
  private async open(url: string, options: HttpRequestOptions, method: string, deadline: number, attempt: number): Promise<Opened> {
    let target = new URL(url);
    for (let redirects = 0; ; redirects++) {
      this.checkNet(target);
      const opened = await this.openOne(target, options, method, deadline, attempt);
      const location = header(opened.headers, 'location');
      if (REDIRECTS.has(opened.status) && location && redirects < (options.maxRedirects ?? 3)) {
        discard(opened.raw);
        this.finish(opened, method, undefined);
        target = new URL(location, target);
        continue;
      }
      if (opened.status >= 400 && !options.okStatus?.includes(opened.status)) {
        throw await this.statusError(opened, method, options, deadline);
      }
      return opened;
    }
  }

  private async openOne(target: URL, options: HttpRequestOptions, method: string, deadline: number, attempt: number): Promise<Opened> {
    const host = hostOf(target);
    const remaining = deadline - performance.now();
    const started = performance.now();
    if (remaining <= 0) {
      throw this.fail(host, started, method, new HttpError('transient', { method, url: target.href, phase: 'headers', reason: `deadline of ${options.timeoutMs ?? 30_000} ms passed before the request could be sent` }));
    }
    // one timer per attempt, cleared when the attempt ends (AbortSignal.timeout would keep thousands alive)
    const deadlineAbort = new AbortController();
    const timer = setTimeout(() => deadlineAbort.abort(new DOMException('deadline passed', 'TimeoutError')), Math.ceil(remaining));
    const clear = () => clearTimeout(timer);
    const user = options.signal;
    if (user && !manySignals.has(user)) {
      // a run's signal is shared by every request in flight: many listeners are expected
      manySignals.add(user);
      setMaxListeners(0, user);
    }
    const onUserAbort = () => deadlineAbort.abort(user!.reason);
    user?.addEventListener('abort', onUserAbort, { once: true });
    const clearAll = () => {
      clear();
      user?.removeEventListener('abort', onUserAbort);
    };
    const signal = deadlineAbort.signal;
    const headers: Record<string, string> = {
      ...(options.decompress === false ? {} : { 'accept-encoding': 'gzip, deflate, br' }),
      ...options.headers,
      ...options.headersFor?.({ attempt, remainingMs: remaining }),
    };
    try {
      const res = await undiciRequest(target, {
        method: method as Dispatcher.HttpMethod,
        headers,
        body: options.body,
        signal,
        dispatcher: this.dispatcherFor(options),
        headersTimeout: Math.max(1, Math.min(options.headersTimeoutMs ?? remaining, remaining)),
        bodyTimeout: Math.max(1, Math.min(options.bodyTimeoutMs ?? remaining, remaining)),
      });
      // the abort signal stays armed for the body: the total deadline covers it
      return { url: target, status: res.statusCode, headers: res.headers, raw: res.body as unknown as Readable, host, started, wire: { bytes: 0 }, clear: clearAll };
    } catch (err) {
      clearAll();
      if (options.signal?.aborted) throw options.signal.reason ?? err;
      throw this.fail(host, started, method, this.wrap(err, method, target.href, 'headers', options, signal.aborted));
    }
  }

  /** Map an undici/Node error to an HttpError with the right phase and kind. */
  private wrap(err: unknown, method: string, url: string, phase: HttpPhase, options: HttpRequestOptions, timedOut: boolean): HttpError {
    if (err instanceof HttpError) return err;
    const e = err as Error & { code?: string };
    const code = e.code;
    if (timedOut || e.name === 'TimeoutError' || (e.name === 'AbortError' && !options.signal?.aborted)) {
      return new HttpError('transient', { method, url, phase, reason: `timed out: no ${phase === 'body' ? 'complete body' : 'response'} within the ${options.timeoutMs ?? 30_000} ms deadline`, cause: err });
    }
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      return new HttpError('transient', { method, url, phase: 'headers', reason: `no response headers within ${options.headersTimeoutMs ?? options.timeoutMs ?? 30_000} ms`, cause: err });
    }
    if (code === 'UND_ERR_BODY_TIMEOUT') {
      return new HttpError('transient', { method, url, phase: 'body', reason: `body stalled for more than ${options.bodyTimeoutMs ?? options.timeoutMs ?? 30_000} ms`, cause: err });
    }
    if (code && CONNECT_CODES.has(code)) {
      return new HttpError('transient', { method, url, phase: 'connect', reason: `${code}${e.message && !e.message.includes(code) ? ` (${e.message})` : ''}`, cause: err });
    }
    if (code && /^(CERT_|ERR_TLS|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO)/.test(code)) {
      return new HttpError('permanent', { method, url, phase: 'connect', reason: `TLS: ${code} (${e.message})`, hint: 'check the server certificate and the CA bundle', cause: err });
    }
    if (code && RESET_CODES.has(code)) {
      const reason = phase === 'body' ? `connection closed mid-body (${code}: ${e.message})` : `connection reset (${code}: ${e.message})`;
      return new HttpError('transient', { method, url, phase, reason, cause: err });
    }
    if (code && (code.startsWith('Z_') || code === 'ERR_PADDING_1' || /zlib|decompress|brotli/i.test(e.message))) {
      return new HttpError('transient', { method, url, phase: 'decode', reason: `cannot decode the compressed body (${e.message})`, cause: err });
    }
    const kind: ErrorKind = code && TRANSIENT_CODES.has(code) ? 'transient' : 'permanent';
    return new HttpError(kind, { method, url, phase, reason: code ? `${code}: ${e.message}` : e.message, cause: err });
  }

  /** Count a failed attempt and hand its error back. */
  private fail(host: string, started: number, method: string, err: HttpError): HttpError {
    const m = this.metrics;
    if (m) {
      m.errors.inc({ host, phase: err.phase }, 1);
      if (err.status === undefined) m.requests.inc({ host, method, status: 'none' }, 1);
      m.duration.observe({ host }, (performance.now() - started) / 1000);
    }
    return err;
  }

  /** Count a finished attempt (its status, duration and wire bytes). */
  private finish(opened: Opened, method: string, err: HttpError | undefined): void {
    opened.clear();
    const m = this.metrics;
    if (!m) return;
    m.requests.inc({ host: opened.host, method, status: String(opened.status) }, 1);
    m.duration.observe({ host: opened.host }, (performance.now() - opened.started) / 1000);
    if (opened.wire.bytes) m.bytes.inc({ host: opened.host }, opened.wire.bytes);
    if (err) m.errors.inc({ host: opened.host, phase: err.phase }, 1);
  }

  private async statusError(opened: Opened, method: string, options: HttpRequestOptions, deadline: number): Promise<HttpError> {
    let body: Buffer = Buffer.alloc(0);
    try {
      body = await this.readAll(opened, { ...options, maxBytes: ERROR_BODY_CAP }, method, ERROR_BODY_CAP, deadline, true);
    } catch {
      // the status says enough
    }
    const response: HttpResponse = { url: opened.url.href, status: opened.status, headers: opened.headers, body };
    const retryAfterMs = parseRetryAfter(opened.headers['retry-after']);
    const snippet = body.length ? `: ${JSON.stringify(body.subarray(0, 200).toString('utf8').trim())}` : '';
    const kind: ErrorKind = TRANSIENT_STATUS.has(opened.status) ? 'transient' : 'permanent';
    const err = new HttpError(kind, {
      method, url: opened.url.href, phase: 'status', status: opened.status, response, retryAfterMs,
      reason: `HTTP ${opened.status}${retryAfterMs !== undefined ? ` (Retry-After ${Math.round(retryAfterMs / 1000)} s)` : ''}${snippet}`,
    });
    this.finish(opened, method, err);
    return err;
  }

  private checkDeclaredLength(opened: Opened, method: string, cap: number, options: HttpRequestOptions): void {
    const declared = Number(header(opened.headers, 'content-length'));
    const encoded = (header(opened.headers, 'content-encoding') ?? 'identity') !== 'identity';
    if (!encoded && Number.isFinite(declared) && declared > cap) {
      discard(opened.raw);
      const err = this.oversize(opened, method, cap, options, `declares ${declared} bytes`);
      this.finish(opened, method, err);
      throw err;
    }
  }

  private oversize(opened: Opened, method: string, cap: number, options: HttpRequestOptions, what: string): HttpError {
    return new HttpError('permanent', {
      method, url: opened.url.href, phase: 'body',
      reason: `response body ${what}, over the ${cap}-byte cap${options.kind ? ` for ${options.kind}` : ''}`,
      hint: 'raise the size cap for this endpoint if the server is right',
    });
  }

  /** The decoded body stream of an attempt; counts the wire bytes as they pass. */
  private decoded(opened: Opened, options: HttpRequestOptions): Readable {
    const encoding = options.decompress === false ? 'identity' : (header(opened.headers, 'content-encoding') ?? 'identity').trim().toLowerCase();
    const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? zlib.createGunzip()
      : encoding === 'deflate' ? zlib.createInflate()
      : encoding === 'br' ? zlib.createBrotliDecompress()
      : undefined;
    const wire = opened.wire;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        wire.bytes += chunk.length;
        callback(null, chunk);
      },
    });
    if (!decoder) {
      pipeline(opened.raw, counter, () => undefined);
      return counter;
    }
    pipeline(opened.raw, counter, decoder, () => undefined);
    return decoder;
  }

  private async readAll(opened: Opened, options: HttpRequestOptions, method: string, cap: number, deadline: number, quiet = false): Promise<Buffer> {
    if (!quiet) this.checkDeclaredLength(opened, method, cap, options);
    const encoding = options.decompress === false ? 'identity' : (header(opened.headers, 'content-encoding') ?? 'identity').trim().toLowerCase();
    const chunks: Buffer[] = [];
    let size = 0;
    let body: Buffer;
    try {
      for await (const chunk of opened.raw) {
        size += (chunk as Buffer).length;
        opened.wire.bytes = size;
        // a compressed body is never larger than its content: the cap holds on the wire too
        if (size > cap) {
          discard(opened.raw);
          throw this.oversize(opened, method, cap, options, 'is larger');
        }
        chunks.push(chunk as Buffer);
      }
      body = Buffer.concat(chunks, size);
      if (encoding !== 'identity') body = await decode(body, encoding, cap);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason ?? err;
      const tooLarge = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError;
      const wrapped = tooLarge
        ? this.oversize(opened, method, cap, options, `decodes to more than ${cap} bytes`)
        : this.wrap(err, method, opened.url.href, 'body', options, performance.now() >= deadline);
      if (!quiet) this.finish(opened, method, wrapped);
      else opened.clear();
      throw wrapped;
    }
    if (quiet) opened.clear();
    return body;
  }

  private async *iterateBody(opened: Opened, options: HttpRequestOptions, method: string, cap: number): AsyncGenerator<Buffer> {
    const body = this.decoded(opened, options);
    let size = 0;
    let failure: HttpError | undefined;
    try {
      for await (const chunk of body) {
        size += (chunk as Buffer).length;
        if (size > cap) {
          discard(opened.raw);
          body.destroy();
          throw (failure = this.oversize(opened, method, cap, options, 'is larger'));
        }
        yield chunk as Buffer;
      }
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason ?? err;
      failure ??= this.wrap(err, method, opened.url.href, 'body', options, false);
      throw failure;
    } finally {
      // the consumer stopped early (or finished): release the connection
      if (!opened.raw.readableEnded) discard(opened.raw);
      this.finish(opened, method, failure);
    }
  }
}

/** Decode a whole compressed body, refusing to produce more than `cap` bytes. */
function decode(body: Buffer, encoding: string, cap: number): Promise<Buffer> {
  if (body.length <= SYNC_DECODE_BYTES) {
    // small bodies (most API answers): inline is far cheaper than a thread-pool round trip
    const options = { maxOutputLength: Math.max(1, cap) };
    try {
      if (encoding === 'gzip' || encoding === 'x-gzip') return Promise.resolve(zlib.gunzipSync(body, options));
      if (encoding === 'deflate') return Promise.resolve(zlib.inflateSync(body, options));
      if (encoding === 'br') return Promise.resolve(zlib.brotliDecompressSync(body, options));
      return Promise.resolve(body);
    } catch (err) {
      return Promise.reject(err);
    }
  }
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, out: Buffer) => (err ? reject(err) : resolve(out));
    const options = { maxOutputLength: Math.max(1, cap) };
    if (encoding === 'gzip' || encoding === 'x-gzip') zlib.gunzip(body, options, done);
    else if (encoding === 'deflate') zlib.inflate(body, options, done);
    else if (encoding === 'br') zlib.brotliDecompress(body, options, done);
    else resolve(body);
  });
}

/** Drop a response body we will not read, without an unhandled 'error' from the abort. */
function discard(raw: Readable): void {
  raw.on('error', () => undefined);
  raw.destroy();
}

/** JSON endpoints that answer with an HTML page (a proxy's error page, a portal) fail clearly rather than as a parse error. */
function checkJsonContentType(res: HttpResponse, method: string): void {
  const type = (header(res.headers, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (/^(text\/html|application\/xhtml|text\/xml|application\/xml|image\/|audio\/|video\/)/.test(type)) {
    throw new HttpError('permanent', {
      method, url: res.url, phase: 'decode', status: res.status,
      reason: `expected JSON but the server sent ${type} (${JSON.stringify(res.body.subarray(0, 60).toString('utf8'))})`,
      hint: 'a proxy or a misconfigured server may be answering for this URL',
    });
  }
}
