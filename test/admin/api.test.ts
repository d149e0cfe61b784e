/**
 * The admin API of a running daemon (the real CLI, the test broker and ClickHouse
 * server): users made with `users add` (password on stdin), HTTP Basic and bearer
 * tokens with expiry, 401/403/404/400 as documented, roles, the audit table, the
 * OpenAPI document, run now, runs, a pipeline's default schedule, and no secret in any
 * answer or log line.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminStore } from '../../runtime/admin/admin-store.ts';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { Broker, cli, names, testStore, type Names } from '../daemon/support.ts';
import { addUser, api, basic, scheduleEnv, startAdminDaemon, until, type AdminDaemon } from '../scheduler/support.ts';

let n: Names;
let broker: Broker;
let store: ClickHouseStore;
let dropDb: () => Promise<void>;
let env: NodeJS.ProcessEnv;
let d: AdminDaemon;
const PW = { root: 'root-Passw0rd!', ops: 'ops-Passw0rd!', eve: 'eve-Passw0rd!' };
const ROOT = basic('root', PW.root);
const OPS = basic('ops', PW.ops);
const EVE = basic('eve', PW.eve);
const tokens: string[] = [];

beforeAll(async () => {
  n = names('admin');
  broker = await Broker.open();
  ({ store, drop: dropDb } = await testStore(n));
  env = scheduleEnv(n, { SLUICE_DAEMON_PIPELINES: 'nap,ticker' });
  for (const [name, role] of [['root', 'admin'], ['ops', 'operator'], ['eve', 'viewer']] as const) {
    const r = await addUser(env, name, role, PW[name]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`added user ${name} (${role})\n`);
  }
  d = await startAdminDaemon(env);
}, 180_000);

afterAll(async () => {
  if (d) {
    d.kill('SIGTERM');
    expect((await d.exited).code, d.log()).toBe(0);
    // nothing secret in the daemon's log
    for (const secret of [...Object.values(PW), ...tokens]) expect(d.log()).not.toContain(secret);
  }
  await broker?.cleanup(n);
  await broker?.close();
  await dropDb?.();
}, 120_000);

describe('users add', () => {
  it('reads the password from stdin, refuses it on the command line, checks the role', async () => {
    const onArgv = await cli(['pipeline', 'users', 'add', 'mallory', '--role', 'admin', '--password', 'hunter22'], env);
    expect(onArgv.code).toBe(2);
    expect(onArgv.stderr).toMatch(/--password is not accepted: a password on the command line shows in ps and shell history; give it on stdin/);
    const badRole = await addUser(env, 'mallory', 'root', 'whatever-long');
    expect(badRole.code).toBe(2);
    expect(badRole.stderr).toMatch(/needs --role admin\|operator\|viewer, not "root"/);
    const short = await addUser(env, 'mallory', 'viewer', 'short');
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/at least 8 characters/);
    const listed = await cli(['pipeline', 'users', 'list'], env);
    expect(listed.stdout).toMatch(/^eve\tviewer\t/m);
    expect(listed.stdout).not.toMatch(/mallory/);
  });
});

describe('authentication: 401', () => {
  it('no credentials, a wrong password, an unknown user, a made-up token', async () => {
    const none = await api(d.admin, 'GET', '/api/schedules');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic realm="sluice"/);
    expect((none.body as { error: string }).error).toMatch(/credentials needed/);
    expect((await api(d.admin, 'GET', '/api/schedules', basic('root', 'wrong-password'))).status).toBe(401);
    expect((await api(d.admin, 'GET', '/api/schedules', basic('nobody', PW.root))).status).toBe(401);
    expect((await api(d.admin, 'GET', '/api/schedules', `Bearer ${randomBytes(32).toString('base64url')}`)).status).toBe(401);
    expect((await api(d.admin, 'GET', '/api/schedules', 'Digest whatever')).status).toBe(401);
  });

  it('bearer tokens: made with Basic, used, revoked; expired ones are refused', async () => {
    const made = await api<{ token: string; expiresAt: string }>(d.admin, 'POST', '/api/tokens', EVE, { expiresIn: 600 });
    expect(made.status).toBe(201);
    tokens.push(made.body.token);
    expect(Date.parse(made.body.expiresAt) - Date.now()).toBeGreaterThan(500_000);
    const bearer = `Bearer ${made.body.token}`;
    expect((await api(d.admin, 'GET', '/api/me', bearer)).body).toEqual({ name: 'eve', role: 'viewer', via: 'bearer' });
    expect((await api(d.admin, 'POST', '/api/tokens', EVE, { expiresIn: 5 })).body).toMatchObject({ field: 'expiresIn' });
    expect((await api(d.admin, 'DELETE', '/api/tokens/current', bearer)).status).toBe(204);
    expect((await api(d.admin, 'GET', '/api/me', bearer)).status).toBe(401);
    // an expired token (written straight into the store, an hour old)
    const expired = randomBytes(32).toString('base64url');
    tokens.push(expired);
    await new AdminStore(store).putToken(expired, 'root', new Date(Date.now() - 3_600_000));
    expect((await api(d.admin, 'GET', '/api/me', `Bearer ${expired}`)).status).toBe(401);
    // tokens are stored as digests, never as they are
    const stored = await store.queryText('SELECT * FROM sluice_tokens', 'TSV');
    expect(stored).not.toContain(made.body.token);
  });
});

describe('roles: 403', () => {
  it('a viewer reads but changes nothing; an operator runs and toggles but does not add schedules or users', async () => {
    expect((await api(d.admin, 'GET', '/api/pipelines', EVE)).status).toBe(200);
    const viewerAdds = await api(d.admin, 'POST', '/api/schedules', EVE, { id: 'v', pipeline: 'nap', cron: '0 * * * *' });
    expect(viewerAdds.status).toBe(403);
    expect((viewerAdds.body as { error: string }).error).toBe('POST /api/schedules needs the admin role; eve is viewer');
    expect((await api(d.admin, 'POST', '/api/pipelines/nap/runs', EVE, {})).status).toBe(403);
    expect((await api(d.admin, 'POST', '/api/schedules', OPS, { id: 'o', pipeline: 'nap', cron: '0 * * * *' })).status).toBe(403);
    expect((await api(d.admin, 'GET', '/api/users', OPS)).status).toBe(403);
    expect((await api(d.admin, 'GET', '/api/audit', OPS)).status).toBe(403);
    const added = await api(d.admin, 'POST', '/api/schedules', ROOT, { id: 'hourly', pipeline: 'nap', params: { label: 'h' }, cron: '0 * * * *' });
    expect(added.status, JSON.stringify(added.body)).toBe(201);
    expect((await api(d.admin, 'POST', '/api/schedules/hourly/disable', EVE)).status).toBe(403);
    const off = await api(d.admin, 'POST', '/api/schedules/hourly/disable', OPS);
    expect(off.status).toBe(200);
    expect(off.body).toMatchObject({ enabled: false, updatedBy: 'ops' });
    expect((await api(d.admin, 'PATCH', '/api/schedules/hourly', OPS, { cron: '5 * * * *' })).status).toBe(403);
    expect((await api(d.admin, 'DELETE', '/api/schedules/hourly', OPS)).status).toBe(403);
  });
});

describe('unknown ids: 404', () => {
  it('schedules, pipelines, runs, users, routes', async () => {
    for (const [method, route] of [['GET', '/api/schedules/nope'], ['PATCH', '/api/schedules/nope'], ['DELETE', '/api/schedules/nope'], ['POST', '/api/schedules/nope/enable'], ['POST', '/api/schedules/nope/runs'],
      ['GET', '/api/pipelines/nope'], ['POST', '/api/pipelines/nope/runs'], ['GET', '/api/runs/nope'], ['DELETE', '/api/users/nope'], ['GET', '/api/nothing-here']] as const) {
      const r = await api(d.admin, method, route, ROOT, method === 'PATCH' || method === 'POST' ? {} : undefined);
      expect(r.status, `${method} ${route}: ${JSON.stringify(r.body)}`).toBe(404);
    }
    expect((await api(d.admin, 'PUT', '/api/schedules', ROOT)).status).toBe(405);
  });
});

describe('bad bodies: 400 with the failing field', () => {
  it('names the field', async () => {
    const cases: [unknown, string][] = [
      [{ pipeline: 'nap', cron: '* * * * *' }, 'id'],
      [{ id: 'x', pipeline: 'nap', cron: 'every tuesday' }, 'cron'],
      [{ id: 'x', pipeline: 'nap', cron: {} }, 'cron'],
      [{ id: 'x', pipeline: 'nap', cron: { hours: 3 } }, 'cron.hours'],
      [{ id: 'x', pipeline: 'nap', cron: '* * * * *', timezone: 'Nowhere/Special' }, 'timezone'],
      [{ id: 'x', pipeline: 'nap', cron: '* * * * *', colour: 'red' }, 'colour'],
      [{ id: 'x', pipeline: 'nap', cron: '* * * * *', params: { ms: 'slow' } }, 'params.ms'],
      [{ id: 'x', pipeline: 'nap', cron: '* * * * *', params: { allowNet: '*' } }, 'params.allowNet'],
      [{ id: 'x', pipeline: 'ticker-not', cron: '* * * * *' }, 'pipeline'],
      [{ id: 'x', pipeline: 'mirror-sync', cron: '* * * * *' }, 'pipeline'],
      [{ id: 'x', pipeline: 'nap', cron: '* * * * *', jitter: -1 }, 'jitter'],
    ];
    for (const [body, field] of cases) {
      const r = await api<{ error: string; field?: string }>(d.admin, 'POST', '/api/schedules', ROOT, body);
      expect(r.status, JSON.stringify([body, r.body])).toBe(400);
      expect(r.body.field, JSON.stringify([body, r.body])).toBe(field);
    }
    const notJson = await api(d.admin, 'POST', '/api/schedules', ROOT, '{"id": ');
    expect(notJson.status).toBe(400);
    expect((notJson.body as { error: string }).error).toMatch(/not JSON/);
    expect((await api(d.admin, 'POST', '/api/schedules', ROOT, { id: 'hourly', pipeline: 'nap', cron: '0 * * * *' })).status).toBe(409);
    const patch = await api<{ field?: string }>(d.admin, 'PATCH', '/api/schedules/hourly', ROOT, { cron: { minute: 61 } });
    expect(patch.status).toBe(400);
    expect(patch.body.field).toBe('cron');
    expect((await api<{ field?: string }>(d.admin, 'POST', '/api/users', ROOT, { name: 'x', role: 'god', password: 'long-enough' })).body.field).toBe('role');
    expect((await api<{ field?: string }>(d.admin, 'GET', '/api/runs?limit=0', ROOT)).body.field).toBe('limit');
  });
});

describe('pipelines, runs, schedules', () => {
  it('lists pipelines with their param schemas', async () => {
    const r = await api<{ name: string; params: { properties: Record<string, { default?: unknown; type?: string }> }; triggerable: boolean; schedule?: string }[]>(d.admin, 'GET', '/api/pipelines', EVE);
    const nap = r.body.find((p) => p.name === 'nap')!;
    expect(nap.params.properties.ms).toMatchObject({ type: 'integer', default: 0 });
    expect(nap.triggerable).toBe(true);
    expect(r.body.find((p) => p.name === 'mirror-sync')!.triggerable).toBe(false);
    expect(r.body.find((p) => p.name === 'ticker')!.schedule).toBe('*/2 * * * * *');
  });

  it('run now: 202 with the trigger id; the run shows up with status and counts, and alone', async () => {
    const r = await api<{ triggerId: string }>(d.admin, 'POST', '/api/pipelines/nap/runs', OPS, { params: { label: 'now' } });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect((await api<{ field?: string }>(d.admin, 'POST', '/api/pipelines/nap/runs', OPS, { params: { ms: -5 } })).body.field).toBe('params.ms');
    const run = await until('the run', async () => (await api<{ id: string; status: string }[]>(d.admin, 'GET', `/api/runs?trigger=${encodeURIComponent(r.body.triggerId)}`, EVE)).body.find((x) => x.status === 'succeeded'));
    const one = await api(d.admin, 'GET', `/api/runs/${run.id}`, EVE);
    expect(one.body).toMatchObject({ id: run.id, pipeline: 'nap', trigger: 'api', triggerId: r.body.triggerId, status: 'succeeded', params: { label: 'now', ms: 0 }, counts: { items: 1, records: 1 }, errors: [] });
    const list = await api<{ status: string }[]>(d.admin, 'GET', '/api/runs?pipeline=nap&status=succeeded&limit=5', EVE);
    expect(list.body.length).toBeGreaterThan(0);
    expect(list.body.every((x) => x.status === 'succeeded')).toBe(true);
  });

  it('a pipeline\'s default schedule is there (origin pipeline) and fires; it can be disabled', async () => {
    const s = await api<{ origin: string; enabled: boolean; cron: string }>(d.admin, 'GET', '/api/schedules/ticker.default', EVE);
    expect(s.body).toMatchObject({ origin: 'pipeline', enabled: true, cron: '*/2 * * * * *', missed: 'skip' });
    await until('a ticker run', async () => (await store.query(`SELECT id FROM sluice_runs FINAL WHERE trigger_id LIKE 'schedule:ticker.default:%' AND status = 'succeeded'`)).length > 0);
    expect((await api(d.admin, 'POST', '/api/schedules/ticker.default/disable', OPS)).body).toMatchObject({ enabled: false, origin: 'pipeline' });
  });

  it('updates and removes schedules; start and end bound them', async () => {
    const r = await api(d.admin, 'PATCH', '/api/schedules/hourly', ROOT, { cron: { minute: 30, hour: '*/6' }, timezone: 'Europe/Zurich', start: '2030-01-01T00:00:00Z' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ expression: '0 30 */6 * * * *', timezone: 'Europe/Zurich', start: '2030-01-01T00:00:00Z', enabled: false });
    const on = await api<{ nextDue?: string }>(d.admin, 'POST', '/api/schedules/hourly/enable', OPS);
    expect(on.body.nextDue).toBe('2030-01-01T05:30:00.000Z'); // 06:30 in Zurich: 00:30 is before the start
    expect((await api(d.admin, 'PATCH', '/api/schedules/hourly', ROOT, { start: null })).body).not.toHaveProperty('start');
    expect((await api(d.admin, 'DELETE', '/api/schedules/hourly', ROOT)).status).toBe(204);
    expect((await api(d.admin, 'GET', '/api/schedules/hourly', ROOT)).status).toBe(404);
  });
});

describe('users through the API, and the audit table', () => {
  it('creates users (never showing a password), and every change is audited', async () => {
    const made = await api(d.admin, 'POST', '/api/users', ROOT, { name: 'newbie', role: 'viewer', password: 'newbie-Passw0rd' });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ name: 'newbie', role: 'viewer' });
    expect((await api(d.admin, 'GET', '/api/me', basic('newbie', 'newbie-Passw0rd'))).body).toMatchObject({ name: 'newbie', role: 'viewer' });
    const users = await api(d.admin, 'GET', '/api/users', ROOT);
    expect(JSON.stringify(users.body)).not.toMatch(/scrypt|Passw0rd|hash/i);
    expect((await api(d.admin, 'DELETE', '/api/users/newbie', ROOT)).status).toBe(204);
    expect((await api(d.admin, 'GET', '/api/me', basic('newbie', 'newbie-Passw0rd'))).status).toBe(401);

    const audit = await api<{ user: string; action: string; target: string; outcome: string; details: Record<string, unknown> }[]>(d.admin, 'GET', '/api/audit?limit=500', ROOT);
    const has = (user: string, action: string, target: string, outcome = 'ok') => audit.body.some((a) => a.user === user && a.action === action && a.target === target && a.outcome === outcome) || JSON.stringify([user, action, target, outcome, audit.body]);
    for (const [user, action, target, outcome] of [['root', 'addSchedule', '/api/schedules'], ['ops', 'disableSchedule', 'hourly'], ['eve', 'addSchedule', '/api/schedules', '403'],
      ['root', 'removeSchedule', 'hourly'], ['root', 'putUser', '/api/users'], ['root', 'removeUser', 'newbie'], ['ops', 'runPipeline', 'nap']] as const) {
      expect(has(user, action, target, outcome)).toBe(true);
    }
    expect(audit.body.some((a) => a.user.startsWith('cli:') && a.action === 'putUser' && a.target === 'eve' && a.details.role === 'viewer')).toBe(true);
    const text = JSON.stringify(audit.body);
    for (const secret of [...Object.values(PW), 'newbie-Passw0rd', ...tokens]) expect(text).not.toContain(secret);
  });
});

describe('OpenAPI', () => {
  it('is served without credentials and generated from the schemas', async () => {
    const r = await api<any>(d.admin, 'GET', '/api/openapi.json');
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe('3.1.0');
    expect(Object.keys(r.body.components.securitySchemes)).toEqual(['basic', 'bearer']);
    const add = r.body.paths['/api/schedules'].post;
    expect(add.requestBody.content['application/json'].schema.properties).toHaveProperty('cron');
    expect(add.requestBody.content['application/json'].schema.required).toEqual(['id', 'pipeline', 'cron']);
    expect(Object.keys(add.responses).sort()).toEqual(['201', '400', '401', '403', '409']);
    expect(r.body.paths['/api/runs'].get.parameters.map((p: { name: string }) => p.name)).toEqual(['pipeline', 'status', 'trigger', 'limit']);
    expect(r.body.paths['/api/schedules/{id}'].delete.responses).toHaveProperty('404');
  });
});
