/**
 * The daemon's configuration (file, environment, flags), the route table's checks and
 * templates, the read-only statement check of the query endpoint, topic matching.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { amqpNetTarget, describeAmqpUrl, parseAmqpUrl } from '../../runtime/amqp/connection.ts';
import { topicMatches } from '../../runtime/amqp/topology.ts';
import { loadDaemonConfig, parseDaemonConfig, topologyNames } from '../../runtime/daemon/config.ts';
import { readOnlyStatement } from '../../runtime/daemon/read-only-sql.ts';
import { RouteTable } from '../../runtime/daemon/routes.ts';
import { InvalidTrigger, readTrigger } from '../../runtime/daemon/trigger-message.ts';

describe('daemon config', () => {
  it('defaults, derived queue names, durations', () => {
    const c = parseDaemonConfig({});
    expect(c).toMatchObject({ exchange: 'sluice.triggers', queue: 'sluice.triggers', queueType: 'classic', routingKeys: ['run.#'], concurrency: 4, pipelines: '*', grace: 30_000 });
    expect(c.amqp).toMatchObject({ url: 'amqp://guest:guest@127.0.0.1:5672', heartbeat: 15_000 });
    expect(c.retry).toEqual({ maxAttempts: 3, delay: 5_000, factor: 2, maxDelay: 600_000 });
    expect(topologyNames(parseDaemonConfig({ queue: 'loads' }))).toEqual({ exchange: 'sluice.triggers', queue: 'loads', retryQueue: 'loads.retry', deadLetterExchange: 'loads.dlx', deadLetterQueue: 'loads.dead' });
    expect(parseDaemonConfig({ grace: '2m', retry: { delay: '1.5s' } })).toMatchObject({ grace: 120_000, retry: { delay: 1_500 } });
  });

  it('errors name the key', () => {
    expect(() => parseDaemonConfig({ concurency: 4 })).toThrow(/\(top level\): unknown key "concurency"/);
    expect(() => parseDaemonConfig({ concurrency: 0 })).toThrow(/concurrency: /);
    expect(() => parseDaemonConfig({ grace: 'soon' })).toThrow(/grace: .*duration like 500ms, 30s/);
    expect(() => parseDaemonConfig({ routes: [{ exchange: 'e', routingKey: 'k', pipeline: 'p', fields: { b: { lookup: 'nope' } } }] }))
      .toThrow(/field "b" looks up table "nope", which is not in its tables/);
  });

  it('the file, then the environment, then flags', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-config-'));
    const file = path.join(dir, 'c.json');
    await writeFile(file, JSON.stringify({ queue: 'from-file', concurrency: 2, amqp: { url: 'amqp://file:5672', heartbeat: '30s' } }));
    const { config } = loadDaemonConfig({
      file,
      env: { SLUICE_AMQP_URL: 'amqps://env:5671', SLUICE_DAEMON_CONCURRENCY: '8', SLUICE_DAEMON_PIPELINES: 'a, b', SLUICE_DAEMON_ROUTING_KEYS: 'run.#,load.*' },
      overrides: { concurrency: 16 },
    });
    expect(config).toMatchObject({ queue: 'from-file', concurrency: 16, pipelines: ['a', 'b'], routingKeys: ['run.#', 'load.*'] });
    expect(config.amqp).toMatchObject({ url: 'amqps://env:5671', heartbeat: 30_000 });
    expect(() => loadDaemonConfig({ file: path.join(dir, 'missing.json'), env: {} })).toThrow(/cannot read the daemon config .*missing\.json: ENOENT/);
    await writeFile(file, '{ nope');
    expect(() => loadDaemonConfig({ file, env: {} })).toThrow(/is not valid JSON/);
    expect(() => loadDaemonConfig({ env: { SLUICE_DAEMON_CONCURRENCY: 'lots' } })).toThrow(/SLUICE_DAEMON_CONCURRENCY must be a number/);
  });
});

describe('route table', () => {
  const table = new RouteTable([{
    name: 'repo-load',
    exchange: 'repodb-ex',
    routingKey: 'repo.load',
    pipeline: 'altrepo-repo',
    fields: { branch: { type: 'string', lookup: 'branches' }, date: { type: 'date' }, arch: { type: 'string', required: false, oneOf: ['x86_64', 'noarch'] }, limit: { type: 'integer', required: false } },
    tables: { branches: { p10: '/archive/repo/p10', sisyphus: '/archive/repo/sisyphus' } },
    params: { path: '{branches[branch]}/date/{date|date:YYYY/MM/DD}', branch: '{branch|upper}', limit: '{limit}', arch: '{arch}', literal: 5, braces: '{{x}}' },
  }]);

  it('matches by exchange and topic pattern', () => {
    expect(table.match('repodb-ex', 'repo.load')?.name).toBe('repo-load');
    expect(table.match('repodb-ex', 'repo.other')).toBeUndefined();
    expect(table.match('other-ex', 'repo.load')).toBeUndefined();
    expect(table.hasExchange('repodb-ex')).toBe(true);
  });

  it('maps a body to params; a single reference keeps its JSON type; an absent optional field leaves its param out', () => {
    const route = table.match('repodb-ex', 'repo.load')!;
    expect(route.map({ branch: 'p10', date: '2022-06-22' })).toEqual({ path: '/archive/repo/p10/date/2022/06/22', branch: 'P10', literal: 5, braces: '{x}' });
    expect(route.map({ branch: 'sisyphus', date: '2021-08-18', limit: 3, arch: 'noarch' })).toMatchObject({ limit: 3, arch: 'noarch', path: '/archive/repo/sisyphus/date/2021/08/18' });
  });

  it('the old checks: unknown branch, bad date, wrong type, unknown field, value not allowed', () => {
    const route = table.match('repodb-ex', 'repo.load')!;
    const reason = (body: unknown) => {
      try {
        route.map(body);
        return 'ok';
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidTrigger);
        return `${(err as InvalidTrigger).reason}: ${(err as Error).message}`;
      }
    };
    expect(reason({ branch: 'p9', date: '2022-06-22' })).toBe('route-check: route repo-load: unknown branch "p9" (known: p10, sisyphus)');
    expect(reason({ branch: 'p10', date: '2022-06-31' })).toMatch(/bad date: field "date" must be a date YYYY-MM-DD, not "2022-06-31"/);
    expect(reason({ branch: 'p10', date: '22-06-2022' })).toMatch(/bad date/);
    expect(reason({ branch: 'p10' })).toMatch(/field "date" is required/);
    expect(reason({ branch: 'p10', date: '2022-06-22', limit: 1.5 })).toMatch(/field "limit" must be an integer/);
    expect(reason({ branch: 'p10', date: '2022-06-22', arch: 'ppc' })).toMatch(/unknown arch "ppc" \(known: x86_64, noarch\)/);
    expect(reason({ branch: 'p10', date: '2022-06-22', extra: 1 })).toMatch(/unknown field "extra"/);
    expect(reason('p10')).toMatch(/the body must be a JSON object/);
  });

  it('"today" dates', () => {
    const today = new Date();
    const pad = (n: number) => String(n).padStart(2, '0');
    const text = `${today.getFullYear()}-${pad(today.getMonth() + 1)}-${pad(today.getDate())}`;
    const t = new RouteTable([{ exchange: 'e', routingKey: 'k', pipeline: 'p', fields: { date: { type: 'date', today: true } }, params: { date: '{date}' } }]);
    expect(t.routes[0]!.map({ date: text })).toEqual({ date: text });
    expect(() => t.routes[0]!.map({ date: '2001-01-01' })).toThrow(/must be today/);
  });

  it('template mistakes are caught when the table is built', () => {
    expect(() => new RouteTable([{ exchange: 'e', routingKey: 'k', pipeline: 'p', params: { a: '{b' } }])).toThrow(/unclosed "\{"/);
    expect(() => new RouteTable([{ exchange: 'e', routingKey: 'k', pipeline: 'p', params: { a: '{t[b]}' } }])).toThrow(/uses table "t", which is not in its tables/);
    expect(() => new RouteTable([{ exchange: 'e', routingKey: 'k', pipeline: 'p', params: { a: '{b|shout}' } }])).toThrow(/unknown filter "shout"/);
  });
});

describe('trigger messages', () => {
  it('reads {pipeline, params, id}; refuses anything else, permissions first', () => {
    expect(readTrigger({ pipeline: 'p', params: { a: 1 }, id: 'x' })).toEqual({ pipeline: 'p', params: { a: 1 }, id: 'x' });
    expect(readTrigger({ pipeline: 'p' }, 'mid')).toEqual({ pipeline: 'p', params: {}, id: 'mid' });
    const reason = (body: unknown) => { try { readTrigger(body); return 'ok'; } catch (e) { return (e as InvalidTrigger).reason; } };
    expect(reason({ pipeline: 'p', permissions: { net: ['*'] } })).toBe('permission-widening');
    expect(reason({ pipeline: 'p', allowRun: ['sh'] })).toBe('permission-widening');
    expect(reason({ pipeline: 'p', extra: 1 })).toBe('invalid-message');
    expect(reason({ pipeline: 'p', params: [] })).toBe('invalid-message');
    expect(reason({ pipeline: '' })).toBe('invalid-message');
  });
});

describe('read-only statements for the query endpoint', () => {
  it('lets reads through with readonly = 1 appended', () => {
    expect(readOnlyStatement('SELECT 1;')).toBe('SELECT 1\nSETTINGS readonly = 1');
    expect(readOnlyStatement("select ';' AS semi -- a comment; DROP")).toBe("select ';' AS semi -- a comment; DROP\nSETTINGS readonly = 1");
    for (const sql of ['WITH 1 AS x SELECT x', 'SHOW TABLES', 'DESCRIBE sluice_runs', 'EXISTS t', 'EXPLAIN SELECT 1', '(SELECT 1)', "SELECT 'INTO OUTFILE'"]) {
      expect(() => readOnlyStatement(sql), sql).not.toThrow();
    }
  });

  it('refuses writes, several statements, INTO OUTFILE, SETTINGS, and comments or strings left open', () => {
    for (const [sql, message] of [
      ['DROP TABLE x', /not DROP/],
      ['insert into t values (1)', /not INSERT/],
      ['ALTER TABLE t DELETE WHERE 1', /not ALTER/],
      ['SELECT 1; SELECT 2', /one statement/],
      ["SELECT 1 INTO OUTFILE '/tmp/x'", /INTO OUTFILE/],
      ['SELECT 1 SETTINGS readonly = 0', /SETTINGS clause/],
      ['SELECT 1 /* swallow', /unterminated \/\* comment/],
      ["SELECT 'open", /unterminated string/],
      ['', /empty/],
    ] as const) {
      expect(() => readOnlyStatement(sql), sql).toThrow(message);
    }
  });
});

describe('topic patterns', () => {
  it('* is one word, # any number', () => {
    expect(topicMatches('run.#', 'run.inventory')).toBe(true);
    expect(topicMatches('run.#', 'run')).toBe(true);
    expect(topicMatches('run.#', 'run.a.b')).toBe(true);
    expect(topicMatches('run.*', 'run.a.b')).toBe(false);
    expect(topicMatches('*.load', 'repo.load')).toBe(true);
    expect(topicMatches('repo.load', 'repo.loaded')).toBe(false);
    expect(topicMatches('#', '')).toBe(true);
  });
});

describe('docs/daemon.md', () => {
  it('its config examples parse, and its repo.load route maps the old message as it says', async () => {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(path.join(import.meta.dirname, '../../docs/daemon.md'), 'utf8');
    const blocks = [...text.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]!);
    // the config examples (the trigger, result and notification examples are not configs)
    const configs = blocks.filter((b) => /"(routes|amqp)"\s*:/.test(b)).map((b) => JSON.parse(b) as Record<string, unknown>);
    expect(configs.length).toBeGreaterThanOrEqual(2);
    for (const c of configs) expect(() => parseDaemonConfig(c)).not.toThrow();
    const dropIn = parseDaemonConfig(configs.find((c) => 'routes' in c && (c.routes as unknown[]).length > 0));
    const route = new RouteTable(dropIn.routes).match('repodb-ex', 'repo.load')!;
    expect(route.map({ branch: 'p10', date: '2022-06-22' })).toEqual({ path: '/archive/repo/p10/date/2022/06/22', branch: 'p10', date: '2022-06-22' });
    expect(() => route.map({ branch: 'p99', date: '2022-06-22' })).toThrow('unknown branch "p99" (known: sisyphus, p10, p9)');
  });
});

describe('AMQP URLs', () => {
  it('amqp and amqps, vhost, default ports, the password hidden in messages, the net permission target', () => {
    expect(parseAmqpUrl('amqps://u:p%40ss@mq.example.org/loaders')).toMatchObject({
      host: 'mq.example.org', port: 5671, tls: true,
      connect: { protocol: 'amqps', hostname: 'mq.example.org', port: 5671, username: 'u', password: 'p@ss', vhost: 'loaders' },
    });
    expect(parseAmqpUrl('amqp://127.0.0.1')).toMatchObject({ port: 5672, tls: false, connect: { vhost: '/', username: 'guest' } });
    expect(parseAmqpUrl('amqp://h:5673/%2Fprod')).toMatchObject({ port: 5673, connect: { vhost: '/prod' } });
    expect(describeAmqpUrl('amqps://u:secret@mq:5671')).toBe('amqps://u:***@mq:5671');
    expect(amqpNetTarget('amqp://guest:guest@127.0.0.1').href).toBe('amqp://127.0.0.1:5672');
    expect(() => parseAmqpUrl('http://mq:5672')).toThrow(/must be amqp:\/\/ or amqps:\/\//);
  });
});
