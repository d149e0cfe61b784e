/**
 * The daemon against the real broker and the ClickHouse server: a trigger runs and is
 * acked after its rows are written; `fire --wait` on success and failure; retries
 * through the retry queue, then the dead-letter queue with the error in headers; every
 * kind of invalid message dead-lettered with its reason; the route table taking the
 * old loader's `repo.load` messages; failure notifications; /metrics and /healthz.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { GetMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { baseEnv, Broker, cli, header, names, sleep, startDaemon, testStore, unackedOf, type DaemonProcess, type Names } from './support.ts';

let n: Names;
let broker: Broker;
let daemon: DaemonProcess;
let store: ClickHouseStore;
let dropDb: () => Promise<void>;
let env: NodeJS.ProcessEnv;
let tmp: string;
let routeEx: string;
let doneEx: string;
let notifyEx: string;
let doneQueue: string;
let notifyQueue: string;

beforeAll(async () => {
  n = names('main');
  broker = await Broker.open();
  ({ store, drop: dropDb } = await testStore(n));
  tmp = await mkdtemp(path.join(os.tmpdir(), 'sluice-daemon-test-'));
  routeEx = `${n.id}.repodb-ex`;
  doneEx = `${n.id}.uploaded-ex`;
  notifyEx = `${n.id}.notifier-ex`;
  const config = {
    concurrency: 3,
    pipelines: ['rows', 'flaky'],
    retry: { maxAttempts: 3, delay: '200ms', factor: 2 },
    maxRedeliveries: 5,
    notify: { exchange: notifyEx, type: 'sluice' },
    routes: [{
      name: 'repo-load',
      exchange: routeEx,
      routingKey: 'repo.load',
      pipeline: 'repo-load',
      fields: { branch: { type: 'string', lookup: 'branches' }, date: { type: 'date' } },
      tables: { branches: { p10: '/archive/repo/p10', sisyphus: '/archive/repo/sisyphus' } },
      params: { path: '{branches[branch]}/date/{date|date:YYYY/MM/DD}', branch: '{branch}', date: '{date}' },
      maxRedeliveries: 3,
      done: { exchange: doneEx, routingKey: 'repo.loaded' },
    }],
  };
  const configFile = path.join(tmp, 'daemon.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  env = baseEnv(n, { SLUICE_DAEMON_CONFIG: configFile });
  daemon = await startDaemon(env);
  // observers of the notifier and "uploaded" exchanges (declared by the daemon)
  doneQueue = `${n.id}.done-watch`;
  notifyQueue = `${n.id}.notify-watch`;
  const ch = await broker.fresh();
  await ch.assertQueue(doneQueue, { durable: false });
  await ch.bindQueue(doneQueue, doneEx, '#');
  await ch.assertQueue(notifyQueue, { durable: false });
  await ch.bindQueue(notifyQueue, notifyEx, '#');
  await ch.close();
}, 180_000);

afterAll(async () => {
  let exit: { code: number | null } | undefined;
  if (daemon) {
    daemon.kill('SIGTERM');
    exit = await daemon.exited;
  }
  await broker?.cleanup(n, { queues: [doneQueue, notifyQueue], exchanges: [routeEx, doneEx, notifyEx] });
  await broker?.close();
  await dropDb?.();
  if (exit) expect(exit.code, daemon.log()).toBe(0);
}, 120_000);

async function runRecords(triggerId: string): Promise<{ status: string; trigger: string; params: string; id: string }[]> {
  return store.query(`SELECT id, status, trigger, params FROM sluice_runs FINAL WHERE trigger_id = '${triggerId}' ORDER BY started_at, id`);
}

async function waitRuns(triggerId: string, count: number, status?: string): Promise<{ status: string; trigger: string; params: string; id: string }[]> {
  for (let i = 0; i < 600; i++) {
    const runs = await runRecords(triggerId).catch(() => []);
    if (runs.filter((r) => !status || r.status === status).length >= count) return runs;
    await sleep(100);
  }
  throw new Error(`no ${count} ${status ?? ''} runs for ${triggerId}`);
}

/** ready and unacked messages of the trigger queue once nothing is in hand (polls a few seconds) */
async function settled(): Promise<{ ready: number; unacked: number }> {
  let last = { ready: -1, unacked: -1 };
  for (let i = 0; i < 100; i++) {
    last = { ready: (await broker.count(n.queue)).messages, unacked: await unackedOf(daemon.child.pid!) };
    if (last.ready === 0 && last.unacked === 0) break;
    await sleep(100);
  }
  return last;
}

function byId(messages: GetMessage[]): Map<string, GetMessage> {
  return new Map(messages.map((m) => [String(m.properties.messageId), m]));
}

describe('a trigger message', () => {
  it('runs the pipeline, holds the message unacked while it runs, and acks it once the rows are written', async () => {
    const id = `${n.id}-ok`;
    // 20 pages, 300 ms apart: about 6 s of run
    const fired = cli(['fire', 'rows', '--param', `key=${id}`, '--param', 'rows=40', '--param', 'perPage=2', '--param', 'delayMs=300', '--id', id, '--wait', '--timeout', '120s'], env);
    await daemon.waitFor(new RegExp(`rows \\(trigger ${id}\\): started`));
    // mid-run: not all rows are in, and after that the message is still unacknowledged on the daemon's channel
    const partial = await store.query<{ c: string }>(`SELECT count() AS c FROM daemon_rows FINAL WHERE key = '${id}'`).catch(() => [{ c: '0' }]);
    expect(Number(partial[0]!.c)).toBeLessThan(40);
    expect(await unackedOf(daemon.child.pid!)).toBe(1);
    const r = await fired;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/rows succeeded \(run \S+\): 20 items, 40 records/);
    const rows = await store.query<{ c: string }>(`SELECT count() AS c FROM daemon_rows FINAL WHERE key = '${id}'`);
    expect(Number(rows[0]!.c)).toBe(40);
    const runs = await runRecords(id);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ status: 'succeeded', trigger: 'amqp' });
    expect(JSON.parse(runs[0]!.params)).toMatchObject({ key: id, rows: 40 });
    expect(await settled()).toEqual({ ready: 0, unacked: 0 });
  });

  it('fire --wait exits 1 with the error when the run fails; the message is dead-lettered with it', async () => {
    const id = `${n.id}-perm`;
    const r = await cli(['fire', 'flaky', '--param', 'fail=permanent', '--id', id, '--wait'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/flaky failed \(run \S+, attempt 1\): item-0: item 0 is malformed \(on purpose\)/);
    const dead = byId(await broker.waitMessages(n.dead, 1)).get(id)!;
    expect(dead).toBeDefined();
    expect(header(dead, 'x-sluice-reason')).toBe('failed-permanently');
    expect(header(dead, 'x-sluice-attempts')).toBe(1);
    expect(String(header(dead, 'x-sluice-error'))).toContain('item 0 is malformed');
    expect(JSON.parse(dead.content.toString())).toMatchObject({ pipeline: 'flaky', params: { fail: 'permanent' }, id });
    // a permanent failure is not retried
    expect(await runRecords(id)).toHaveLength(1);
  });

  it('a failed run is retried through the retry queue, then dead-lettered with the attempts and the error', async () => {
    const id = `${n.id}-transient`;
    const r = await cli(['fire', 'flaky', '--param', 'fail=transient', '--id', id, '--wait', '--timeout', '120s'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/attempt 1 failed: the upstream is down \(on purpose\); retrying in 200ms/);
    expect(r.stderr).toMatch(/attempt 2 failed: .*retrying in 400ms/);
    expect(r.stderr).toMatch(/flaky failed \(run \S+, attempt 3\): the upstream is down/);
    const dead = byId(await broker.waitMessages(n.dead, 1)).get(id)!;
    expect(header(dead, 'x-sluice-reason')).toBe('failed');
    expect(header(dead, 'x-sluice-attempts')).toBe(3);
    expect(header(dead, 'x-sluice-attempt')).toBe(3);
    expect(String(header(dead, 'x-sluice-error'))).toContain('the upstream is down (on purpose)');
    expect(header(dead, 'x-sluice-pipeline')).toBe('flaky');
    expect(header(dead, 'x-death')).toBeUndefined(); // the broker's retry-queue history is not carried along
    const runs = await runRecords(id);
    expect(runs.map((x) => x.status)).toEqual(['failed', 'failed', 'failed']);
    expect(runs.map((x) => x.id)).toContain(header(dead, 'x-sluice-run-id'));
    expect((await broker.count(n.retry)).messages).toBe(0);
  });

  it('a run that fails once and then succeeds is acked on the second attempt', async () => {
    const id = `${n.id}-flaky-once`;
    const counter = path.join(tmp, 'flaky-once.count');
    const r = await cli(['fire', 'flaky', '--param', 'fail=transient', '--param', 'failTimes=1', '--param', `counterFile=${counter}`, '--id', id, '--wait', '--timeout', '120s'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/attempt 1 failed/);
    expect(r.stderr).toMatch(/flaky succeeded \(run \S+, attempt 2\)/);
    expect((await runRecords(id)).map((x) => x.status).sort()).toEqual(['failed', 'succeeded']);
  });
});

describe('invalid messages go straight to the dead-letter queue with the reason', () => {
  it('each kind, none of them run, the daemon goes on', async () => {
    // someone else bound the queue more broadly than the route: repo.bogus matches no route
    const ch = await broker.fresh();
    await ch.bindQueue(n.queue, routeEx, 'repo.*');
    await ch.close();
    const cases: { id: string; exchange: string; key: string; body: string; headers?: Record<string, unknown>; reason: string; error: RegExp }[] = [
      { id: 'not-json', exchange: n.exchange, key: 'run.x', body: 'load everything please', reason: 'invalid-json', error: /the body is not JSON/ },
      { id: 'array', exchange: n.exchange, key: 'run.x', body: '[1, 2]', reason: 'invalid-message', error: /must be a JSON object/ },
      { id: 'no-pipeline', exchange: n.exchange, key: 'run.x', body: '{"params": {}}', reason: 'invalid-message', error: /no "pipeline"/ },
      { id: 'unknown-pipeline', exchange: n.exchange, key: 'run.nope', body: '{"pipeline": "nope"}', reason: 'unknown-pipeline', error: /no pipeline "nope" \(pipelines that messages may trigger: rows, flaky\)/ },
      { id: 'not-allowed', exchange: n.exchange, key: 'run.repo-load', body: '{"pipeline": "repo-load", "params": {"path": "/x", "branch": "p10"}}', reason: 'pipeline-not-allowed', error: /may not be triggered by messages \(allowed: rows, flaky\)/ },
      { id: 'bad-param', exchange: n.exchange, key: 'run.flaky', body: '{"pipeline": "flaky", "params": {"items": "many"}}', reason: 'invalid-params', error: /flaky: invalid param "items"/ },
      { id: 'unknown-param', exchange: n.exchange, key: 'run.flaky', body: '{"pipeline": "flaky", "params": {"itmes": 3}}', reason: 'invalid-params', error: /unknown param "itmes"/ },
      { id: 'widen-top', exchange: n.exchange, key: 'run.flaky', body: '{"pipeline": "flaky", "allow": {"net": ["*"]}}', reason: 'permission-widening', error: /cannot grant permissions \(it has "allow"\)/ },
      { id: 'widen-param', exchange: n.exchange, key: 'run.flaky', body: '{"pipeline": "flaky", "params": {"allowNet": ["*"]}}', reason: 'permission-widening', error: /cannot grant permissions \(params "allowNet"\)/ },
      { id: 'unknown-branch', exchange: routeEx, key: 'repo.load', body: '{"branch": "p99", "date": "2022-06-22"}', reason: 'route-check', error: /unknown branch "p99" \(known: p10, sisyphus\)/ },
      { id: 'bad-date', exchange: routeEx, key: 'repo.load', body: '{"branch": "p10", "date": "2022-02-30"}', reason: 'route-check', error: /bad date/ },
      { id: 'extra-field', exchange: routeEx, key: 'repo.load', body: '{"branch": "p10", "date": "2022-06-22", "force": true}', reason: 'route-check', error: /unknown field "force"/ },
      { id: 'bad-key', exchange: routeEx, key: 'repo.bogus', body: '{"branch": "p10", "date": "2022-06-22"}', reason: 'unknown-route', error: /no route for routing key "repo.bogus"/ },
      { id: 'redelivered', exchange: routeEx, key: 'repo.load', body: '{"branch": "p10", "date": "2022-06-22"}', headers: { 'x-sluice-redeliveries': 4 }, reason: 'too-many-deliveries', error: /redelivered 4 times .* limit of 3/ },
      { id: 'redelivered-quorum', exchange: n.exchange, key: 'run.flaky', body: '{"pipeline": "flaky"}', headers: { 'x-delivery-count': 6 }, reason: 'too-many-deliveries', error: /redelivered 6 times \(x-delivery-count\), more than the limit of 5/ },
    ];
    for (const c of cases) await broker.publish(c.exchange, c.key, c.body, { messageId: `${n.id}-${c.id}`, headers: c.headers ?? {} });
    const dead = byId(await broker.waitMessages(n.dead, cases.length));
    for (const c of cases) {
      const m = dead.get(`${n.id}-${c.id}`);
      expect(m, c.id).toBeDefined();
      expect(header(m!, 'x-sluice-reason'), c.id).toBe(c.reason);
      expect(String(header(m!, 'x-sluice-error')), c.id).toMatch(c.error);
      expect(m!.content.toString(), c.id).toBe(c.body);
      expect(await runRecords(`${n.id}-${c.id}`), c.id).toHaveLength(0);
    }
    expect(daemon.child.exitCode).toBeNull();
    expect(await settled()).toEqual({ ready: 0, unacked: 0 });

    // and fire --wait hears why
    const r = await cli(['fire', '--routing-key', 'run.flaky', '--body', '{"pipeline": "flaky", "params": {"items": -1}}', '--wait'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the daemon rejected the message \(invalid-params\): flaky: invalid param "items"/);
    await broker.waitMessages(n.dead, 1);

    // the route failures were also published to the notifier exchange, in the old shape
    const notes = await broker.waitMessages(notifyQueue, cases.length + 1);
    const branch = notes.find((m) => m.content.toString().includes('p99'))!;
    expect(branch.fields.routingKey).toBe('repo-load.error');
    const body = JSON.parse(branch.content.toString());
    expect(Object.keys(body).sort()).toEqual(['message', 'payload', 'severity', 'subject', 'timestamp', 'type']);
    expect(body).toMatchObject({ severity: 'error', type: 'repo-load', payload: { branch: 'p99', date: '2022-06-22' } });
    expect(body.message).toMatch(/unknown branch "p99"/);
    expect(Number.isNaN(Date.parse(body.timestamp))).toBe(false);
  });
});

describe('the route table (drop-in for the old repository loader)', () => {
  it('takes repo.load {branch, date} as it is and runs the pipeline with the mapped path; republishes to the "uploaded" exchange', async () => {
    const id = `${n.id}-repo-load`;
    await broker.publish(routeEx, 'repo.load', '{"branch":"p10","date":"2022-06-22"}', { messageId: id, contentType: 'application/json' });
    const runs = await waitRuns(id, 1, 'succeeded');
    expect(runs[0]!.trigger).toBe('amqp');
    expect(JSON.parse(runs[0]!.params)).toEqual({ path: '/archive/repo/p10/date/2022/06/22', branch: 'p10', date: '2022-06-22' });
    const done = await broker.waitMessages(doneQueue, 1);
    expect(done[0]!.fields.routingKey).toBe('repo.loaded');
    expect(done[0]!.content.toString()).toBe('{"branch":"p10","date":"2022-06-22"}');

    // fire sends such routed messages too, and can wait for them
    const r = await cli(['fire', '--exchange', routeEx, '--routing-key', 'repo.load', '--body', '{"branch":"sisyphus","date":"2021-08-18"}', '--id', `${id}-2`, '--wait'], env);
    expect(r.code, r.stderr).toBe(0);
    const second = await waitRuns(`${id}-2`, 1, 'succeeded');
    expect(JSON.parse(second[0]!.params)).toMatchObject({ path: '/archive/repo/sisyphus/date/2021/08/18' });
  });
});

describe('/healthz and /metrics', () => {
  it('report the broker, the store, runs by pipeline and status, and the queues', async () => {
    const health = await fetch(`${daemon.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', broker: 'consuming', store: 'ok' });
    await sleep(5500); // the queue sampler runs every 5 s
    const text = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(text).toMatch(/^sluice_runs_total\{pipeline="rows",status="succeeded"\} [1-9]/m);
    expect(text).toMatch(/^sluice_runs_total\{pipeline="flaky",status="failed"\} [1-9]/m);
    expect(text).toMatch(/^sluice_daemon_messages_total\{outcome="acked",reason=""\} [1-9]/m);
    expect(text).toMatch(/^sluice_daemon_messages_total\{outcome="retried",reason=""\} [1-9]/m);
    expect(text).toMatch(/^sluice_daemon_messages_total\{outcome="dead_lettered",reason="invalid-json"\} 1$/m);
    expect(text).toMatch(new RegExp(`^sluice_daemon_queue_messages\\{queue="${n.queue.replace(/\./g, '\\.')}"\\} 0$`, 'm'));
    expect(text).toMatch(new RegExp(`^sluice_daemon_queue_consumers\\{queue="${n.queue.replace(/\./g, '\\.')}"\\} 1$`, 'm'));
    expect(text).toMatch(/^sluice_daemon_runs_in_flight 0$/m);
    expect(text).toMatch(/^sluice_daemon_broker_connected 1$/m);
    expect(text).toMatch(/^sluice_daemon_trigger_wait_seconds_count [1-9]/m);
    expect((await fetch(`${daemon.url}/nope`)).status).toBe(404);
  });
});
