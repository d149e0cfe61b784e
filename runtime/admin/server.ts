/**
 * The admin HTTP server of a daemon (`npm run serve -- --admin-port P`): the API under
 * `/api/` (routes.ts), its OpenAPI document at `/api/openapi.json`, and the web page at
 * `/` (page.ts).
 *
 * - **Auth**: HTTP Basic (a user and password; scrypt hashes in `sluice_users`) or
 *   `Authorization: Bearer <token>` (from `POST /api/tokens`, with an expiry). No or
 *   bad credentials: 401. A role below the route's: 403. Unknown ids: 404. A body or
 *   query that fails its schema: 400 naming the field.
 * - **Secrets** (passwords, tokens, rsync passwords) are never returned or logged:
 *   users are listed without hashes, a token is shown once at creation and stored as
 *   its SHA-256, request bodies are never logged.
 * - **Audit**: every change (and every refused attempt at one by a known user) is a row
 *   in `sluice_audit`: when, who, action, target, outcome, secret-free details.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ClickHouseRunStore } from '../clickhouse/run-store.ts';
import type { ClickHouseStore } from '../clickhouse/store.ts';
import { describeError } from '../errors.ts';
import { listen } from '../http-listener.ts';
import type { Logger } from '../log.ts';
import { describeParams } from '../params-cli.ts';
import { listPipelineNames, loadPipeline, PipelineLoadError, pipelinesDir } from '../pipeline-loader.ts';
import type { AnyPipeline } from '../pipeline.ts';
import type { RunRecord } from '../run-record.ts';
import { ScheduleRefused, type Scheduler } from '../scheduler/scheduler.ts';
import { AdminStore, type Role, type User } from './admin-store.ts';
import { openApiDocument } from './openapi.ts';
import { PAGE_HTML } from './page.ts';
import { hashPassword, verifyPassword } from './password.ts';
import { allows, matchRoute, type RouteSpec } from './routes.ts';

export interface AdminServerOptions {
  host: string;
  port: number;
  store: ClickHouseStore;
  scheduler: Scheduler;
  log: Logger;
  /** pipelines that messages may trigger on this daemon */
  allowed: '*' | readonly string[];
  pipelinesDir?: string;
}

export interface AdminServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

interface Caller {
  name: string;
  role: Role;
  via: 'basic' | 'bearer';
  token?: string;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly field?: string) {
    super(message);
  }
}

const MAX_BODY = 1 << 20;

let dummy: Promise<string> | undefined;
function dummyHash(): Promise<string> {
  dummy ??= hashPassword(randomBytes(16).toString('hex'));
  return dummy;
}

export async function serveAdmin(options: AdminServerOptions): Promise<AdminServer> {
  const admin = new AdminStore(options.store);
  await admin.ready();
  const api = new AdminApi(options, admin);
  const server = createServer((req, res) => {
    api.handle(req, res).catch((err: unknown) => {
      options.log.error(`admin: ${req.method} ${req.url}: ${describeError(err)}`);
      if (!res.headersSent) send(res, 500, { error: 'internal error (see the daemon\'s log)' });
      else res.destroy();
    });
  });
  return listen(server, {
    host: options.host,
    port: options.port,
    what: 'the admin API',
    portHint: 'choose another --admin-port',
    hostHint: 'check --admin-host and --admin-port',
  });
}

class AdminApi {
  private readonly runs: ClickHouseRunStore;
  private readonly basicCache = new Map<string, { user: User; until: number }>();
  private readonly pipelines = new Map<string, AnyPipeline>();
  private openapi?: Record<string, unknown>;

  constructor(private readonly options: AdminServerOptions, private readonly admin: AdminStore) {
    this.runs = new ClickHouseRunStore(options.store);
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/' || url.pathname === '/index.html') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'GET the page' });
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(PAGE_HTML), 'cache-control': 'no-store', 'x-frame-options': 'DENY', 'content-security-policy': "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'" });
      res.end(req.method === 'HEAD' ? undefined : PAGE_HTML);
      return;
    }
    if (!url.pathname.startsWith('/api/')) return send(res, 404, { error: 'not found: the API is under /api/ (GET /api/openapi.json), the page at /' });
    const { route, params, methods } = matchRoute(req.method ?? 'GET', url.pathname.replace(/\/+$/, ''));
    if (!route) {
      if (methods.length) {
        res.setHeader('allow', methods.join(', '));
        return send(res, 405, { error: `${req.method} is not allowed here; use ${methods.join(' or ')}` });
      }
      return send(res, 404, { error: `no route ${req.method} ${url.pathname} (see GET /api/openapi.json)` });
    }
    let caller: Caller | undefined;
    if (route.role !== 'none') {
      caller = await this.authenticate(req);
      if (!caller) {
        const users = await this.admin.users();
        if (!req.headers['x-sluice-page']) res.setHeader('www-authenticate', 'Basic realm="sluice", charset="UTF-8"');
        this.options.log.warn(`admin: ${req.method} ${url.pathname}: 401 (${req.headers.authorization ? 'bad credentials' : 'no credentials'})`);
        return send(res, 401, {
          error: users.length === 0
            ? 'no users yet: create one with `npm run pipeline -- users add <name> --role admin` (password on stdin)'
            : req.headers.authorization ? 'wrong, unknown or expired credentials' : 'credentials needed: HTTP Basic, or Authorization: Bearer <token> from POST /api/tokens',
        });
      }
      if (!allows(caller.role, route.role)) {
        await this.audit(caller, route, params, `403`, {});
        return send(res, 403, { error: `${route.method} ${route.path} needs the ${route.role} role; ${caller.name} is ${caller.role}` });
      }
    }
    let status = route.status;
    let body: unknown;
    try {
      const input = route.body ? parseWith(route.body, await readJson(req)) : undefined;
      const query = route.query ? parseWith(route.query, Object.fromEntries(url.searchParams)) : undefined;
      body = await this.dispatch(route, params, input, query, caller!);
    } catch (err) {
      const e = err instanceof HttpError ? err : err instanceof ScheduleRefused ? new HttpError(err.status, err.message, err.field) : undefined;
      if (!e) throw err;
      status = e.status;
      body = { error: e.message, ...(e.field ? { field: e.field } : {}) };
    }
    if (route.method !== 'GET' && caller) await this.audit(caller, route, params, status < 400 ? 'ok' : String(status), auditDetails(route, body, status));
    this.options.log.info(`admin: ${caller?.name ?? '-'} ${route.method} ${url.pathname} → ${status}`);
    if (status === 204) {
      res.writeHead(204);
      res.end();
      return;
    }
    send(res, status, body);
  }

  private async audit(caller: Caller, route: RouteSpec, params: Record<string, string>, outcome: string, details: Record<string, unknown>): Promise<void> {
    try {
      await this.admin.audit({ user: caller.name, action: route.op, target: Object.values(params).join('/') || route.path, outcome, details });
    } catch (err) {
      this.options.log.error(`admin: cannot write the audit row for ${caller.name} ${route.op}: ${describeError(err)}`);
    }
  }

  private async authenticate(req: IncomingMessage): Promise<Caller | undefined> {
    const header = req.headers.authorization ?? '';
    const basic = /^Basic\s+(\S+)$/i.exec(header);
    if (basic) {
      const now = Date.now();
      const cached = this.basicCache.get(header);
      if (cached && cached.until > now) return { name: cached.user.name, role: cached.user.role, via: 'basic' };
      const text = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const colon = text.indexOf(':');
      if (colon <= 0) return undefined;
      const user = await this.admin.user(text.slice(0, colon));
      // an unknown user costs the same scrypt as a known one: the timing does not tell which names exist
      if (!(await verifyPassword(text.slice(colon + 1), user?.passwordHash ?? (await dummyHash()))) || !user) return undefined;
      if (this.basicCache.size > 1000) this.basicCache.clear();
      this.basicCache.set(header, { user, until: now + 10_000 });
      return { name: user.name, role: user.role, via: 'basic' };
    }
    const bearer = /^Bearer\s+(\S+)$/i.exec(header);
    if (bearer) {
      const token = bearer[1]!;
      const live = await this.admin.tokenUser(token);
      if (!live) return undefined;
      const user = await this.admin.user(live.user);
      if (!user) return undefined;
      return { name: user.name, role: user.role, via: 'bearer', token };
    }
    return undefined;
  }

  private async pipeline(name: string): Promise<AnyPipeline> {
    const cached = this.pipelines.get(name);
    if (cached) return cached;
    try {
      const p = await loadPipeline(name, this.options.pipelinesDir ?? pipelinesDir());
      this.pipelines.set(name, p);
      return p;
    } catch (err) {
      if (err instanceof PipelineLoadError && /no pipeline|is not a pipeline name/.test(err.message)) throw new HttpError(404, `no pipeline "${name}"`);
      throw err;
    }
  }

  private describe(p: AnyPipeline): Record<string, unknown> {
    const allowed = this.options.allowed;
    return {
      name: p.name,
      description: p.description,
      params: { type: 'object', ...describeParams(p.params) },
      ...(p.schedule ? { schedule: p.schedule } : {}),
      triggerable: allowed === '*' || allowed.includes(p.name),
    };
  }

  private schedule(id: string) {
    const s = this.options.scheduler.get(id);
    if (!s) throw new HttpError(404, `no schedule "${id}"`);
    return s;
  }

  private async dispatch(route: RouteSpec, params: Record<string, string>, body: unknown, query: unknown, caller: Caller): Promise<unknown> {
    const scheduler = this.options.scheduler;
    switch (route.op) {
      case 'openapi':
        this.openapi ??= openApiDocument();
        return this.openapi;
      case 'me':
        return { name: caller.name, role: caller.role, via: caller.via };
      case 'createToken': {
        const { expiresIn } = body as { expiresIn: number };
        const token = randomBytes(32).toString('base64url');
        const expiresAt = new Date(Date.now() + expiresIn * 1000);
        await this.admin.putToken(token, caller.name, expiresAt);
        return { token, expiresAt: expiresAt.toISOString() };
      }
      case 'revokeToken':
        if (!caller.token) throw new HttpError(400, 'this request has no bearer token to revoke');
        await this.admin.revokeToken(caller.token, caller.name);
        return undefined;
      case 'listPipelines': {
        const out: unknown[] = [];
        for (const name of await listPipelineNames(this.options.pipelinesDir ?? pipelinesDir())) {
          try {
            out.push(this.describe(await this.pipeline(name)));
          } catch (err) {
            out.push({ name, description: `(cannot be loaded: ${describeError(err)})`, params: {}, triggerable: false });
          }
        }
        return out;
      }
      case 'getPipeline':
        return this.describe(await this.pipeline(params.name!));
      case 'runPipeline': {
        await this.pipeline(params.name!);
        const triggerId = await scheduler.runNow(params.name!, (body as { params: Record<string, unknown> }).params, caller.name);
        return { triggerId, pipeline: params.name };
      }
      case 'listSchedules':
        await scheduler.refreshIfOlder(2000);
        return scheduler.list();
      case 'getSchedule':
        await scheduler.refreshIfOlder(2000);
        return this.schedule(params.id!);
      case 'addSchedule':
        return scheduler.add(body as never, caller.name);
      case 'updateSchedule':
        return scheduler.update(params.id!, body as never, caller.name);
      case 'removeSchedule':
        await scheduler.remove(params.id!, caller.name);
        return undefined;
      case 'enableSchedule':
      case 'disableSchedule':
        this.schedule(params.id!);
        return scheduler.setEnabled(params.id!, route.op === 'enableSchedule', caller.name);
      case 'runSchedule': {
        const s = this.schedule(params.id!);
        const triggerId = await scheduler.runNow(s.pipeline, s.params, caller.name);
        return { triggerId, pipeline: s.pipeline };
      }
      case 'listRuns': {
        const q = query as { pipeline?: string; status?: string; trigger?: string; limit: number };
        const filtered = q.status !== undefined || q.trigger !== undefined;
        const runs: RunRecord[] = await this.runs.list({ pipeline: q.pipeline, limit: filtered ? Math.max(1000, q.limit) : q.limit });
        return runs.filter((r) => (!q.status || r.status === q.status) && (!q.trigger || r.triggerId === q.trigger)).slice(0, q.limit);
      }
      case 'getRun': {
        const run = await this.runs.get(params.id!);
        if (!run) throw new HttpError(404, `no run "${params.id}"`);
        return run;
      }
      case 'listUsers':
        return (await this.admin.users()).map(({ name, role, createdAt }) => ({ name, role, createdAt }));
      case 'putUser': {
        const u = body as { name: string; role: Role; password: string };
        const existing = await this.admin.user(u.name);
        await this.admin.putUser({ name: u.name, role: u.role, passwordHash: await hashPassword(u.password), createdAt: existing?.createdAt });
        this.basicCache.clear();
        return { name: u.name, role: u.role, createdAt: existing?.createdAt ?? new Date().toISOString() };
      }
      case 'removeUser': {
        if (!(await this.admin.user(params.name!))) throw new HttpError(404, `no user "${params.name}"`);
        if (params.name === caller.name) throw new HttpError(400, 'you cannot remove yourself', 'name');
        await this.admin.removeUser(params.name!);
        this.basicCache.clear();
        return undefined;
      }
      case 'audit':
        return this.admin.auditLog((query as { limit: number }).limit);
      default:
        throw new Error(`no handler for ${route.op}`);
    }
  }
}

/** What the audit row keeps of a change: never passwords or tokens. */
function auditDetails(route: RouteSpec, body: unknown, status: number): Record<string, unknown> {
  if (status >= 400) return { error: (body as { error?: string })?.error ?? '', ...((body as { field?: string })?.field ? { field: (body as { field: string }).field } : {}) };
  switch (route.op) {
    case 'createToken':
      return { expiresAt: (body as { expiresAt: string }).expiresAt };
    case 'putUser':
      return { role: (body as { role: string }).role };
    case 'runPipeline':
    case 'runSchedule':
      return { triggerId: (body as { triggerId: string }).triggerId };
    case 'addSchedule':
    case 'updateSchedule':
    case 'enableSchedule':
    case 'disableSchedule': {
      const s = body as { pipeline: string; params: unknown; cron: unknown; timezone: string; enabled: boolean };
      return { pipeline: s.pipeline, params: s.params, cron: s.cron, timezone: s.timezone, enabled: s.enabled };
    }
    default:
      return {};
  }
}

function parseWith(schema: z.ZodType, value: unknown): unknown {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const field = [...issue.path, issue.keys[0]].join('.');
    throw new HttpError(400, `${field}: unknown field (not in the schema; see GET /api/openapi.json)`, field);
  }
  const field = issue.path.join('.');
  const message = issue.code === 'invalid_type' && issue.input === undefined ? 'required' : issue.message;
  throw new HttpError(400, field ? `${field}: ${message}` : message, field || undefined);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `the body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `the body is not JSON: ${(err as Error).message}`);
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
