/**
 * The daemon's HTTP endpoints (loopback by default):
 *
 * - `GET /metrics`: the Prometheus registry (engine, daemon and process metrics);
 * - `GET /healthz`: 200 `{"status":"ok", …}` when the broker is connected (and the
 *   daemon consuming) and the store answers `SELECT 1`; 503 with what is wrong
 *   otherwise;
 * - `POST /query?format=F`: one read-only SQL statement (the body) against the
 *   daemon's store, answered in ClickHouse format F; needs `Authorization: Bearer
 *   <token>` (the token is in `<stateDir>/daemon.json`, readable by its owner only).
 *   Used by `npm run query` and `pipeline runs` while the daemon holds the embedded
 *   store.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Registry } from 'prom-client';
import { describeError } from '../errors.ts';
import { listen } from '../http-listener.ts';
import { readOnlyStatement, ReadOnlyViolation } from './read-only-sql.ts';

export interface HealthReport {
  ok: boolean;
  [key: string]: unknown;
}

export interface DaemonHttpOptions {
  host: string;
  port: number;
  registry: Registry;
  health: () => Promise<HealthReport>;
  query?: { token: string; run: (sql: string, format: string) => Promise<string> };
}

export interface DaemonHttpServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

const FORMATS = /^[A-Za-z][A-Za-z0-9]*$/;
const MAX_SQL_BYTES = 1 << 20;

export async function serveDaemonHttp(options: DaemonHttpOptions): Promise<DaemonHttpServer> {
  const server = createServer((req, res) => {
    handle(req, res, options).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { error: describeError(err) });
      else res.destroy();
    });
  });
  return listen(server, {
    host: options.host,
    port: options.port,
    what: "the daemon's HTTP endpoints",
    portHint: 'set http.port (or SLUICE_DAEMON_HTTP_PORT)',
    hostHint: 'check http.host and http.port',
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, options: DaemonHttpOptions): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  switch (url.pathname) {
    case '/metrics': {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'use GET /metrics' });
      const body = (await options.registry.metrics()).replace(/^([^#\n][^\n]*) Nan$/gm, '$1 NaN');
      res.writeHead(200, { 'content-type': options.registry.contentType, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    case '/healthz': {
      const report = await options.health();
      return send(res, report.ok ? 200 : 503, { status: report.ok ? 'ok' : 'unhealthy', ...report, ok: undefined });
    }
    case '/query': {
      if (!options.query) return send(res, 404, { error: 'this daemon has no query endpoint' });
      if (req.method !== 'POST') return send(res, 405, { error: 'POST the SQL to /query' });
      const auth = req.headers.authorization ?? '';
      const given = Buffer.from(auth.replace(/^Bearer\s+/i, ''));
      const expected = Buffer.from(options.query.token);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        return send(res, 401, { error: 'missing or wrong token (it is in <stateDir>/daemon.json)' });
      }
      const format = url.searchParams.get('format') ?? 'JSONCompact';
      if (!FORMATS.test(format)) return send(res, 400, { error: `"${format}" is not a ClickHouse format name` });
      const sql = await readBody(req, MAX_SQL_BYTES);
      let statement: string;
      try {
        statement = readOnlyStatement(sql);
      } catch (err) {
        if (err instanceof ReadOnlyViolation) return send(res, 400, { error: err.message });
        throw err;
      }
      let text: string;
      try {
        text = await options.query.run(statement, format);
      } catch (err) {
        return send(res, 400, { error: describeError(err).replace(/\s*SETTINGS readonly = 1/g, '') });
      }
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    default:
      return send(res, 404, { error: 'not found: the daemon serves /metrics, /healthz and POST /query' });
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error(`the statement is longer than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
