import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { classifyError } from '../../runtime/errors.ts';
import { HttpClient, HttpError } from '../../runtime/http-client.ts';
import { PermissionError } from '../../runtime/permission-error.ts';
import { Permissions } from '../../runtime/permissions.ts';
import { FaultyServer, selfSignedCertificate, type RouteResponse } from '../servers/faulty-server.ts';

const JSON_DOC = JSON.stringify({ hello: 'world', items: Array.from({ length: 200 }, (_, i) => ({ i, text: 'lorem ipsum dolor sit amet' })) });

let server: FaultyServer;
let other: FaultyServer;
const clients: HttpClient[] = [];

beforeAll(async () => {
  server = await new FaultyServer((req): RouteResponse | undefined => {
    if (req.path === '/doc.json') return { headers: { 'Content-Type': 'application/json' }, body: JSON_DOC };
    if (req.path === '/text') return { headers: { 'Content-Type': 'text/plain' }, body: 'plain text', gzip: false };
    if (req.path === '/slow') return { headers: { 'Content-Type': 'text/plain' }, body: 'late', gzip: false };
    if (req.path === '/redirect-out') return { status: 302, headers: { Location: `${other.origin}/text` } };
    if (req.path === '/redirect-in') return { status: 301, headers: { Location: '/text' } };
    if (req.path === '/echo') return { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ method: req.method, body: req.body.toString(), headers: req.headers }) };
    if (req.path === '/stream') {
      return { headers: { 'Content-Type': 'application/json' }, chunks: ['[1,', '2,', '3]'], chunkDelayMs: 5 };
    }
    if (req.path === '/stream-cut') {
      return { headers: { 'Content-Type': 'application/json' }, chunks: ['[1,', '2,'], chunkDelayMs: 5, cutAfterChunks: true };
    }
    return undefined;
  }).start();
  other = await new FaultyServer(() => ({ headers: { 'Content-Type': 'text/plain' }, body: 'elsewhere' })).start();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server.close();
  await other.close();
});

afterEach(() => {
  server.clearFaults();
  server.requests.length = 0;
});

function client(options: ConstructorParameters<typeof HttpClient>[1] = {}, net = [server.hostPort]): HttpClient {
  const c = new HttpClient(new Permissions({ net }), { retry: { initialDelayMs: 5, maxDelayMs: 20 }, ...options });
  clients.push(c);
  return c;
}

async function failure(promise: Promise<unknown>): Promise<HttpError> {
  try {
    await promise;
  } catch (err) {
    return err as HttpError;
  }
  throw new Error('expected the request to fail');
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return undefined;
  const data = await metric.get();
  const sample = data.values.find((v) => Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val));
  return sample?.value;
}

describe('permissions', () => {
  it('refuses a host the run may not reach, naming the flag, and sends nothing', async () => {
    const c = client({}, ['example.org']);
    const err = await failure(c.request(`${server.origin}/text`));
    expect(err).toBeInstanceOf(PermissionError);
    expect(err.message).toContain(`network access to ${server.hostPort} is not allowed`);
    expect((err as unknown as PermissionError).flag).toBe(`--allow-net=${server.hostPort}`);
    expect(server.requests).toHaveLength(0);
  });

  it('checks every redirect target too', async () => {
    const c = client();
    const err = await failure(c.request(`${server.origin}/redirect-out`));
    expect(err).toBeInstanceOf(PermissionError);
    expect(err.message).toContain(`network access to ${other.hostPort} is not allowed`);
    expect(other.requests).toHaveLength(0);
    // a redirect within the allowed host is followed
    const res = await c.request(`${server.origin}/redirect-in`);
    expect(res.body.toString()).toBe('plain text');
    expect(res.url).toBe(`${server.origin}/text`);
  });
});

describe('retries', () => {
  it('retries a 503 and honours a short Retry-After, then succeeds', async () => {
    server.fault('/text', { kind: 'status', status: 503, retryAfter: '0' }, 2);
    const res = await client().request(`${server.origin}/text`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('plain text');
    expect(server.hits('/text')).toBe(3);
  });

  it('does not wait past its deadline: a Retry-After longer than the deadline fails at once, carrying the wait', async () => {
    server.fault('/text', { kind: 'status', status: 503, retryAfter: '120' });
    const err = await failure(client().request(`${server.origin}/text`, { timeoutMs: 2_000 }));
    expect(err).toBeInstanceOf(HttpError);
    expect(classifyError(err)).toBe('transient');
    expect(err.retryAfterMs).toBe(120_000);
    expect(err.phase).toBe('status');
    expect(err.status).toBe(503);
    expect(err.message).toContain(`GET ${server.origin}/text: status: HTTP 503`);
    expect(server.hits('/text')).toBe(1);
  });

  it('gives up after the attempts it was given on 502/504 and says so with the URL', async () => {
    server.fault('/text', { kind: 'status', status: 502 });
    const err = await failure(client().request(`${server.origin}/text`, { retries: 3 }));
    expect(server.hits('/text')).toBe(4);
    expect(err.message).toContain(`${server.origin}/text`);
    expect(classifyError(err)).toBe('transient');
  });

  it('never retries a 4xx: 404, 403 and 429 are tried once', async () => {
    for (const status of [404, 403, 429]) {
      server.requests.length = 0;
      server.clearFaults().fault('/text', { kind: 'status', status, body: 'nope' });
      const err = await failure(client().request(`${server.origin}/text`));
      expect(err.status).toBe(status);
      expect(server.hits('/text')).toBe(1);
      expect(classifyError(err)).toBe(status === 429 ? 'transient' : 'permanent');
      expect(err.response?.body.toString()).toBe('nope');
    }
  });

  it('retries a connection reset, before the headers and mid-body', async () => {
    server.fault('/doc.json', { kind: 'reset' }, 1);
    server.fault('/doc.json', { kind: 'truncate' }, 1);
    const res = await client().request(`${server.origin}/doc.json`, { decompress: false });
    expect(JSON.parse(res.body.toString())).toEqual(JSON.parse(JSON_DOC));
    expect(server.hits('/doc.json')).toBe(3);
  });

  it('a body that is always cut fails as transient in the body phase, naming the URL', async () => {
    server.fault('/doc.json', { kind: 'truncate' });
    const err = await failure(client().request(`${server.origin}/doc.json`, { decompress: false }));
    expect(err).toBeInstanceOf(HttpError);
    expect(err.phase).toBe('body');
    expect(err.message).toContain(`GET ${server.origin}/doc.json: body:`);
    expect(classifyError(err)).toBe('transient');
    expect(server.hits('/doc.json')).toBe(3);
  });

  it('does not retry a POST unless asked to', async () => {
    server.fault('/echo', { kind: 'status', status: 503 }, 1);
    const err = await failure(client().request(`${server.origin}/echo`, { method: 'POST', body: 'x' }));
    expect(err.status).toBe(503);
    expect(server.hits('/echo')).toBe(1);
    server.fault('/echo', { kind: 'status', status: 503 }, 1);
    const res = await client().request(`${server.origin}/echo`, { method: 'POST', body: 'x', retries: 1 });
    expect(JSON.parse(res.body.toString())).toMatchObject({ method: 'POST', body: 'x' });
  });
});

describe('deadlines', () => {
  it('a server that never answers fails in the headers phase, as transient, without retrying', async () => {
    server.fault('/slow', { kind: 'hang' });
    const err = await failure(client().request(`${server.origin}/slow`, { timeoutMs: 5_000, headersTimeoutMs: 150 }));
    expect(err.phase).toBe('headers');
    expect(err.message).toContain(`GET ${server.origin}/slow: headers: no response headers within 150 ms`);
    expect(classifyError(err)).toBe('transient');
    expect(server.hits('/slow')).toBe(1);
  });

  it('the total deadline covers a body that stalls', async () => {
    server.fault('/doc.json', { kind: 'stall-body' });
    const err = await failure(client().request(`${server.origin}/doc.json`, { timeoutMs: 300, decompress: false }));
    expect(err.phase).toBe('body');
    expect(err.message).toMatch(/timed out|stalled/);
  });

  it('a refused connection fails in the connect phase', async () => {
    const closed = await new FaultyServer(() => undefined).start();
    const hostPort = closed.hostPort;
    await closed.close();
    const c = client({}, [hostPort]);
    const err = await failure(c.request(`http://${hostPort}/x`));
    expect(err.phase).toBe('connect');
    expect(err.message).toContain(`GET http://${hostPort}/x: connect: ECONNREFUSED`);
  });

  it('a caller abort is passed through as the caller\'s reason', async () => {
    server.fault('/slow', { kind: 'hang' });
    const stop = new AbortController();
    const pending = client().request(`${server.origin}/slow`, { signal: stop.signal });
    setTimeout(() => stop.abort(new Error('stopped by test')), 50);
    const err = await failure(pending);
    expect(err.message).toBe('stopped by test');
  });
});

describe('bodies', () => {
  it('asks for gzip and decodes it', async () => {
    const registry = new Registry();
    const res = await client({ registry }).request(`${server.origin}/doc.json`);
    expect(res.body.toString()).toBe(JSON_DOC);
    expect(server.requests[0]!.headers['accept-encoding']).toContain('gzip');
    const wire = await metricValue(registry, 'sluice_http_client_response_bytes_total', { host: server.hostPort });
    expect(wire).toBe(zlib.gzipSync(JSON_DOC).length);
    expect(wire!).toBeLessThan(JSON_DOC.length);
  });

  it('refuses a body over the cap for its endpoint kind, before reading it when the length is declared', async () => {
    const c = client({ sizeCaps: { tiny: 100 } });
    const err = await failure(c.request(`${server.origin}/doc.json`, { kind: 'tiny', decompress: false }));
    expect(err.phase).toBe('body');
    expect(err.message).toContain(`declares ${JSON_DOC.length} bytes, over the 100-byte cap for tiny`);
    expect(classifyError(err)).toBe('permanent');
  });

  it('caps the decoded size of a gzipped body (a small download cannot expand without bound)', async () => {
    server.fault('/doc.json', { kind: 'oversize', bytes: 5_000_000 });
    const err = await failure(client().request(`${server.origin}/doc.json`, { maxBytes: 1_000_000 }));
    expect(err.phase).toBe('body');
    expect(err.message).toContain('over the 1000000-byte cap');
  });

  it('json(): invalid JSON and HTML pages are permanent decode errors naming the URL', async () => {
    const c = client();
    server.fault('/doc.json', { kind: 'invalid-json' }, 1);
    const bad = await failure(c.json(`${server.origin}/doc.json`));
    expect(bad.phase).toBe('decode');
    expect(bad.message).toContain(`GET ${server.origin}/doc.json: decode: invalid JSON`);
    expect(classifyError(bad)).toBe('permanent');
    server.fault('/doc.json', { kind: 'html' }, 1);
    const html = await failure(c.json(`${server.origin}/doc.json`));
    expect(html.message).toContain('expected JSON but the server sent text/html');
    expect(await c.json(`${server.origin}/doc.json`)).toEqual(JSON.parse(JSON_DOC));
  });

  it('okStatus returns a 404 instead of throwing', async () => {
    const res = await client().request(`${server.origin}/missing`, { okStatus: [404] });
    expect(res.status).toBe(404);
  });

  it('headersFor sets headers from the time left', async () => {
    const res = await client().json<{ headers: Record<string, string> }>(`${server.origin}/echo`, {
      timeoutMs: 4_000,
      headersFor: ({ remainingMs }) => ({ 'x-oio-timeout': String(Math.floor(remainingMs * 1000)) }),
    });
    const sent = Number(res.headers['x-oio-timeout']);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThanOrEqual(4_000_000);
  });
});

describe('streams', () => {
  it('streams a body chunk by chunk', async () => {
    const res = await client().stream(`${server.origin}/stream`);
    const parts: string[] = [];
    for await (const chunk of res.body) parts.push(chunk.toString());
    expect(parts.join('')).toBe('[1,2,3]');
  });

  it('a stream cut mid-body throws a transient body error after the data that came', async () => {
    const res = await client().stream(`${server.origin}/stream-cut`);
    const parts: string[] = [];
    const err = await failure((async () => { for await (const chunk of res.body) parts.push(chunk.toString()); })());
    expect(parts.join('')).toBe('[1,2,');
    expect(err).toBeInstanceOf(HttpError);
    expect(err.phase).toBe('body');
    expect(classifyError(err)).toBe('transient');
    expect(err.message).toContain(`${server.origin}/stream-cut`);
  });
});

describe('pooling and metrics', () => {
  it('keeps to the per-host connection limit', async () => {
    const busy = await new FaultyServer(() => ({ headers: { 'Content-Type': 'text/plain' }, body: 'ok' })).start();
    busy.delayMs = 30;
    try {
      const c = client({ connectionsPerHost: 2 }, [busy.hostPort]);
      const bodies = await Promise.all(Array.from({ length: 8 }, () => c.request(`${busy.origin}/x`)));
      expect(bodies.map((b) => b.body.toString())).toEqual(Array(8).fill('ok'));
      expect(busy.peakConnections).toBe(2);
      expect(busy.peakActive).toBeLessThanOrEqual(2);
    } finally {
      await busy.close();
    }
  });

  it('counts requests by host and status, durations, bytes and errors by phase', async () => {
    const registry = new Registry();
    const c = client({ registry });
    await c.request(`${server.origin}/text`);
    server.fault('/missing', { kind: 'status', status: 404 });
    await failure(c.request(`${server.origin}/missing`));
    server.fault('/slow', { kind: 'hang' });
    await failure(c.request(`${server.origin}/slow`, { headersTimeoutMs: 100 }));
    const host = server.hostPort;
    expect(await metricValue(registry, 'sluice_http_client_requests_total', { host, status: '200' })).toBe(1);
    expect(await metricValue(registry, 'sluice_http_client_requests_total', { host, status: '404' })).toBe(1);
    expect(await metricValue(registry, 'sluice_http_client_requests_total', { host, status: 'none' })).toBe(1);
    expect(await metricValue(registry, 'sluice_http_client_errors_total', { host, phase: 'status' })).toBe(1);
    expect(await metricValue(registry, 'sluice_http_client_errors_total', { host, phase: 'headers' })).toBe(1);
    const histogram = await registry.getSingleMetric('sluice_http_client_request_duration_seconds')!.get();
    const count = histogram.values.find((v) => (v as { metricName?: string }).metricName === 'sluice_http_client_request_duration_seconds_count' && v.labels.host === host);
    expect(count?.value).toBe(3);
    expect(await metricValue(registry, 'sluice_http_client_response_bytes_total', { host })).toBeGreaterThan(0);
  });

  it('useMetrics attaches a registry later (a run context\'s client)', async () => {
    const registry = new Registry();
    const c = client();
    c.useMetrics(registry);
    server.fault('/text', { kind: 'status', status: 503, retryAfter: '0' }, 1);
    await c.request(`${server.origin}/text`);
    expect(await metricValue(registry, 'sluice_http_client_retries_total', { host: server.hostPort })).toBe(1);
    expect(await metricValue(registry, 'sluice_http_client_requests_total', { host: server.hostPort, status: '503' })).toBe(1);
  });
});

describe('https', () => {
  it('talks https on any port; an untrusted certificate is a permanent connect error naming the URL', async () => {
    const cert = selfSignedCertificate(await mkdtemp(path.join(os.tmpdir(), 'sluice-tls-')));
    const secure = await new FaultyServer(() => ({ headers: { 'Content-Type': 'application/json' }, body: '{"secure":true}' }), '127.0.0.1', cert).start();
    try {
      expect(secure.origin).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const untrusting = client({}, [secure.hostPort]);
      const err = await failure(untrusting.request(`${secure.origin}/x`));
      expect(err.phase).toBe('connect');
      expect(classifyError(err)).toBe('permanent');
      expect(err.message).toContain(`GET ${secure.origin}/x: connect: TLS: DEPTH_ZERO_SELF_SIGNED_CERT`);
      expect(secure.requests).toHaveLength(0);
      const trusting = client({ ca: cert.cert }, [secure.hostPort]);
      expect(await trusting.json(`${secure.origin}/x`)).toEqual({ secure: true });
    } finally {
      await secure.close();
    }
  });
});
