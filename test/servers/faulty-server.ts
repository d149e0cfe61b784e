/**
 * A local HTTP server for the API models in test/servers/, with failure injection. A
 * model answers requests (`Route`); faults, set per path pattern and optionally for the
 * first N matching requests only, change what goes out:
 *
 * | fault            | what the client sees                                                  |
 * |------------------|-----------------------------------------------------------------------|
 * | `delay`          | the normal answer, `ms` later                                         |
 * | `hang`           | nothing: no headers ever (the socket stays open until close())        |
 * | `stall-body`     | headers and half the body, then nothing                               |
 * | `status`         | that status (e.g. 503 with `retryAfter`), with an optional body       |
 * | `truncate`       | the full Content-Length declared, part of the body sent, socket cut   |
 * | `oversize`       | the body padded with spaces to `bytes`                                |
 * | `invalid-json`   | a body that is not JSON, with the normal content type                 |
 * | `content-type`   | the normal body under another content type (e.g. text/html)           |
 * | `html`           | a 200 HTML page (a proxy's or portal's), `text/html`                   |
 * | `reset`          | the socket destroyed before any answer                                |
 * | `s3-403`/`s3-404`| an S3-style XML error (AccessDenied / NoSuchKey)                       |
 * | `body`           | a replacement body (and optional content type)                        |
 *
 * Bodies are gzipped when the client accepts gzip and the route allows it (`gzip`),
 * like Apache's mod_deflate on text and JSON.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

export interface RouteResponse {
  status?: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** gzip the body when the client accepts it (default: for text and JSON types) */
  gzip?: boolean;
  /** stream these chunks with a pause between them (chunked encoding) */
  chunks?: Array<string | Buffer>;
  /** pause between chunks, ms */
  chunkDelayMs?: number;
  /** after sending the chunks, cut the connection (a stream that fails mid-array) */
  cutAfterChunks?: boolean;
}

export interface RequestInfo {
  method: string;
  path: string;
  url: URL;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export type Route = (req: RequestInfo) => RouteResponse | undefined | Promise<RouteResponse | undefined>;

export type Fault =
  | { kind: 'delay'; ms: number }
  | { kind: 'hang' }
  | { kind: 'stall-body' }
  | { kind: 'status'; status: number; retryAfter?: string; body?: string; contentType?: string }
  | { kind: 'truncate'; keep?: number }
  | { kind: 'oversize'; bytes: number }
  | { kind: 'invalid-json' }
  | { kind: 'content-type'; type: string }
  | { kind: 'html' }
  | { kind: 'reset' }
  | { kind: 's3-403' }
  | { kind: 's3-404' }
  | { kind: 'body'; body: string | Buffer; contentType?: string };

interface FaultRule {
  match: (path: string, method: string) => boolean;
  fault: Fault;
  /** left to apply; Infinity for always */
  times: number;
}

export class FaultyServer {
  readonly requests: RequestInfo[] = [];
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private rules: FaultRule[] = [];
  private port = 0;
  /** added to every answer, ms (the benchmark's "every response delayed 20 ms") */
  delayMs = 0;
  /** keep a log of requests (off for the benchmark) */
  logRequests = true;
  /** most TCP connections open at once so far */
  peakConnections = 0;
  /** most requests being answered at once so far */
  peakActive = 0;
  /** most requests for one path being answered at once so far */
  readonly peakActiveByPath = new Map<string, number>();
  private active = 0;
  private readonly activeByPath = new Map<string, number>();

  /** `tls`: serve https with this key and certificate (PEM) */
  constructor(private readonly route: Route, private readonly host = '127.0.0.1', private readonly tls?: { key: string | Buffer; cert: string | Buffer }) {}

  async start(port = 0): Promise<this> {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.active++;
      this.peakActive = Math.max(this.peakActive, this.active);
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const n = (this.activeByPath.get(path) ?? 0) + 1;
      this.activeByPath.set(path, n);
      this.peakActiveByPath.set(path, Math.max(n, this.peakActiveByPath.get(path) ?? 0));
      let done = false;
      const finished = () => {
        if (!done) {
          done = true;
          this.active--;
          this.activeByPath.set(path, (this.activeByPath.get(path) ?? 1) - 1);
        }
      };
      res.on('close', finished);
      void this.handle(req, res);
    };
    this.server = this.tls ? createHttpsServer({ key: this.tls.key, cert: this.tls.cert }, handler) : createServer(handler);
    this.server.keepAliveTimeout = 30_000;
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      this.peakConnections = Math.max(this.peakConnections, this.sockets.size);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, this.host, () => resolve());
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** `http://127.0.0.1:<port>` (https with tls) */
  get origin(): string {
    return `${this.tls ? 'https' : 'http'}://${this.host}:${this.port}`;
  }

  /** `127.0.0.1:<port>` (what a pipeline is given, and what --allow-net takes) */
  get hostPort(): string {
    return `${this.host}:${this.port}`;
  }

  /**
   * Inject `fault` into requests whose path matches (a string is a substring match),
   * for the next `times` of them (default: every one from now on).
   */
  fault(match: string | RegExp | ((path: string, method: string) => boolean), fault: Fault, times = Infinity): this {
    const test = typeof match === 'string' ? (p: string) => p.includes(match)
      : match instanceof RegExp ? (p: string) => match.test(p)
      : match;
    this.rules.push({ match: test, fault, times });
    return this;
  }

  clearFaults(): this {
    this.rules = [];
    return this;
  }

  /** requests whose path includes `part` */
  hits(part: string): number {
    return this.requests.filter((r) => r.path.includes(part)).length;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    const server = this.server;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
  }

  private takeFault(path: string, method: string): Fault | undefined {
    for (const rule of this.rules) {
      if (rule.times > 0 && rule.match(path, method)) {
        rule.times--;
        return rule.fault;
      }
    }
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', this.origin);
    const info: RequestInfo = { method: req.method ?? 'GET', path: url.pathname, url, headers: req.headers, body: Buffer.concat(chunks) };
    if (this.logRequests) this.requests.push(info);
    const fault = this.takeFault(info.path, info.method);
    if (this.delayMs) await sleep(this.delayMs);
    if (fault?.kind === 'delay') await sleep(fault.ms);
    if (fault?.kind === 'hang') return; // never answer
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 's3-403' || fault?.kind === 's3-404') {
      const code = fault.kind === 's3-403' ? 'AccessDenied' : 'NoSuchKey';
      const message = fault.kind === 's3-403' ? 'Access Denied' : 'The specified key does not exist.';
      const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><Key>${info.path.slice(1)}</Key><RequestId>4442587FB7D0A2F9</RequestId></Error>`;
      res.writeHead(fault.kind === 's3-403' ? 403 : 404, { 'Content-Type': 'application/xml', 'x-amz-request-id': '4442587FB7D0A2F9' }).end(xml);
      return;
    }
    if (fault?.kind === 'status') {
      const headers: Record<string, string> = { 'Content-Type': fault.contentType ?? 'text/plain' };
      if (fault.retryAfter !== undefined) headers['Retry-After'] = fault.retryAfter;
      res.writeHead(fault.status, headers).end(fault.body ?? `${fault.status} injected\n`);
      return;
    }
    if (fault?.kind === 'html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end('<!DOCTYPE html><html><body><h1>Please log in</h1></body></html>\n');
      return;
    }

    let answer: RouteResponse | undefined;
    try {
      answer = await this.route(info);
    } catch (err) {
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`model failed: ${(err as Error).message}\n`);
      return;
    }
    if (!answer) {
      res.writeHead(404, { 'Content-Type': 'text/html' }).end('<html><body>404 Not Found</body></html>\n');
      return;
    }
    const headers: Record<string, string> = { ...answer.headers };
    const status = answer.status ?? 200;
    if (answer.chunks && fault && !answer.cutAfterChunks) {
      // a fault on the body applies to a streamed answer too: send it whole, then spoil it
      answer = { ...answer, body: Buffer.concat(answer.chunks.map((c) => Buffer.from(c))), chunks: undefined };
    }
    if (answer.chunks) {
      res.writeHead(status, headers);
      for (const chunk of answer.chunks) {
        if (res.destroyed) return;
        // wait until the chunk is handed to the socket, so a cut comes after it, not before
        await new Promise<void>((resolve) => res.write(chunk, () => resolve()));
        if (answer.chunkDelayMs) await sleep(answer.chunkDelayMs);
      }
      if (answer.cutAfterChunks) {
        await sleep(20);
        req.socket.destroy();
        return;
      }
      res.end();
      return;
    }
    let body: Buffer = Buffer.isBuffer(answer.body) ? answer.body : Buffer.from(answer.body ?? '');
    if (fault?.kind === 'body') {
      body = Buffer.isBuffer(fault.body) ? fault.body : Buffer.from(fault.body);
      if (fault.contentType) headers['Content-Type'] = fault.contentType;
    }
    if (fault?.kind === 'invalid-json') body = Buffer.from('{"schema": 1, "replicas": [{"name": "trunc');
    if (fault?.kind === 'content-type') headers['Content-Type'] = fault.type;
    if (fault?.kind === 'oversize') body = Buffer.concat([body, Buffer.alloc(Math.max(0, fault.bytes - body.length), 0x20)]);
    const type = headers['Content-Type'] ?? '';
    const gzip = (answer.gzip ?? /json|text/.test(type)) && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    if (gzip && fault?.kind !== 'truncate') {
      body = zlib.gzipSync(body);
      headers['Content-Encoding'] = 'gzip';
      headers['Vary'] = 'Accept-Encoding';
    }
    headers['Content-Length'] = String(body.length);
    if (fault?.kind === 'truncate') {
      res.writeHead(status, headers);
      res.write(body.subarray(0, fault.keep ?? Math.floor(body.length / 2)));
      // let the part go out, then cut the connection
      setTimeout(() => req.socket.destroy(), 10);
      return;
    }
    if (fault?.kind === 'stall-body') {
      res.writeHead(status, headers);
      res.write(body.subarray(0, Math.floor(body.length / 2)));
      return; // the rest never comes
    }
    res.writeHead(status, headers).end(info.method === 'HEAD' ? undefined : body);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A throw-away self-signed certificate for 127.0.0.1 and localhost (needs openssl). */
export function selfSignedCertificate(dir: string): { key: string; cert: string; certFile: string } {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  const result = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl could not make a certificate: ${result.error?.message ?? result.stderr}`);
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8'), certFile };
}
