/**
 * Stopping and losing the broker: SIGTERM while a run is going (finished within the
 * grace period, or handed back to the queue after it and run by the next daemon), and
 * the broker connection dropped mid-run (`rabbitmqctl close_connection`): the daemon
 * reconnects and consumes again, never acks a tag of the dead channel, and the
 * redelivered message's rows are not duplicated.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { baseEnv, Broker, cli, dropConnections, names, sleep, startDaemon, testStore, unackedOf, type Names } from './support.ts';

let broker: Broker;
let store: ClickHouseStore;
let dropDb: () => Promise<void>;
const db = names('signals');
const used: Names[] = [];

beforeAll(async () => {
  broker = await Broker.open();
  ({ store, drop: dropDb } = await testStore(db));
});

afterAll(async () => {
  for (const n of used) await broker.cleanup(n);
  await broker?.close();
  await dropDb?.();
}, 120_000);

/** names of a test's own queue, sharing the file's database */
function fresh(tag: string): Names {
  const n = { ...names(tag), database: db.database };
  used.push(n);
  return n;
}

async function rowCount(key: string): Promise<number> {
  const r = await store.query<{ c: string; u: string }>(`SELECT count() AS c FROM daemon_rows FINAL WHERE key = '${key}'`).catch(() => [{ c: '0', u: '0' }]);
  return Number(r[0]!.c);
}

describe('SIGTERM', () => {
  it('lets a running run finish within the grace period, acks it, and exits 0', async () => {
    const n = fresh('term-grace');
    const env = baseEnv(n);
    const daemon = await startDaemon(env, ['--grace', '120s']);
    const key = `${n.id}-k`;
    const fired = cli(['fire', 'rows', '--param', `key=${key}`, '--param', 'rows=30', '--param', 'perPage=2', '--param', 'delayMs=200', '--id', key, '--wait', '--timeout', '180s'], env, 200_000);
    await daemon.waitFor(/rows \(trigger .*\): started/);
    daemon.kill('SIGTERM');
    const exit = await daemon.exited;
    expect(exit.code, daemon.log()).toBe(0);
    expect(daemon.log()).toMatch(/stopping: waiting up to 120 s for 1 running run/);
    expect(daemon.log()).toMatch(/succeeded in \d+ ms, acked/);
    const r = await fired;
    expect(r.code, r.stderr).toBe(0);
    expect(await rowCount(key)).toBe(30);
    expect((await broker.count(n.queue)).messages).toBe(0);
  });

  it('after the grace period, stops the run and hands the message back; the next daemon runs it, rows once', async () => {
    const n = fresh('term-nack');
    const env = baseEnv(n);
    const first = await startDaemon(env, ['--grace', '500ms']);
    const key = `${n.id}-k`;
    // 50 pages 200 ms apart: ~10 s, far more than the grace period
    const fired = cli(['fire', 'rows', '--param', `key=${key}`, '--param', 'rows=100', '--param', 'perPage=2', '--param', 'delayMs=200', '--id', key, '--wait', '--timeout', '300s'], env, 320_000);
    await first.waitFor(/rows \(trigger .*\): started/);
    await sleep(1000);
    first.kill('SIGTERM');
    const exit = await first.exited;
    expect(exit.code, first.log()).toBe(0);
    expect(first.log()).toMatch(/still running after the grace period; stopping them and handing their messages back/);
    expect(first.log()).toMatch(/stopped before it finished; handed back to the queue/);
    expect(await rowCount(key)).toBeLessThan(100);
    expect((await broker.count(n.queue)).messages).toBe(1);

    const second = await startDaemon(env);
    const r = await fired;
    expect(r.code, `${r.stderr}\n${second.log()}`).toBe(0);
    expect(await rowCount(key)).toBe(100);
    second.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    const runs = await store.query<{ status: string }>(`SELECT status FROM sluice_runs FINAL WHERE trigger_id = '${key}'`);
    expect(runs.map((x) => x.status).sort()).toEqual(['interrupted', 'succeeded']);
  });
});

describe('broker connection lost mid-run', () => {
  it('reconnects with backoff, consumes again, never acks the dead channel\'s tag; the redelivered run leaves each row once', async () => {
    const n = fresh('drop');
    const env = baseEnv(n);
    const daemon = await startDaemon(env);
    const key = `${n.id}-k`;
    // 50 pages 300 ms apart: ~15 s, so the drop (rabbitmqctl is slow on a busy machine) lands mid-run
    const fired = cli(['fire', 'rows', '--param', `key=${key}`, '--param', 'rows=100', '--param', 'perPage=2', '--param', 'delayMs=300', '--id', key, '--wait', '--timeout', '300s'], env, 320_000);
    await daemon.waitFor(/rows \(trigger .*\): started/);
    await sleep(500);
    expect(await dropConnections(`:${daemon.child.pid}"`)).toBe(1);
    await daemon.waitFor(/lost the broker connection/);
    await daemon.waitFor(/reconnected to the broker/);
    const r = await fired;
    expect(r.code, `${r.stderr}\n${daemon.log()}`).toBe(0);
    const log = daemon.log();
    // the run on the dead channel was stopped and its message left to the broker, which redelivered it
    expect(log).toMatch(/the broker connection was lost during the run; not acknowledging/);
    expect(log.match(/rows \(trigger .*\): started/g)).toHaveLength(2);
    expect(log).not.toMatch(/PRECONDITION_FAILED|unknown delivery tag/);
    expect(await rowCount(key)).toBe(100);
    expect((await broker.count(n.queue)).messages).toBe(0);
    expect(await unackedOf(daemon.child.pid!)).toBe(0);
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).toMatch(/^sluice_daemon_broker_reconnects_total 1$/m);
    expect(metrics).toMatch(/^sluice_daemon_messages_total\{outcome="abandoned",reason=""\} 1$/m);
    expect(metrics).toMatch(/^sluice_daemon_messages_total\{outcome="acked",reason=""\} 1$/m);
    expect(metrics).toMatch(/^sluice_daemon_messages_total\{outcome="recounted",reason=""\} 1$/m);
    expect((await fetch(`${daemon.url}/healthz`)).status).toBe(200);
    daemon.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
  });
});

describe('a poison message (its run kills the daemon)', () => {
  it('is counted at each redelivery and dead-lettered past the limit, instead of killing daemons forever', async () => {
    const n = fresh('poison');
    const env = baseEnv(n, { SLUICE_DAEMON_MAX_REDELIVERIES: '1' });
    const id = `${n.id}-poison`;
    let daemon = await startDaemon(env);
    await broker.publish(n.exchange, 'run.crash', JSON.stringify({ pipeline: 'crash', id }), { messageId: id });
    expect((await daemon.exited).signal).toBe('SIGKILL');
    // the next daemons get the message as soon as they consume, maybe before they log "ready"
    daemon = await startDaemon(env, [], { expectFailure: true });
    await daemon.waitFor(/was redelivered \(1 time: a daemon or its connection died while running it\)/, 90_000).catch(() => undefined);
    expect((await daemon.exited).signal, daemon.log()).toBe('SIGKILL');
    expect(daemon.log()).toMatch(/was redelivered \(1 time: a daemon or its connection died while running it\)/);
    daemon = await startDaemon(env, [], { expectFailure: true });
    await daemon.waitFor(/was redelivered \(2 times/, 90_000);
    const [dead] = await broker.waitMessages(n.dead, 1);
    expect(dead!.properties.headers?.['x-sluice-reason']).toBe('too-many-deliveries');
    expect(String(dead!.properties.headers?.['x-sluice-error'])).toMatch(/redelivered 2 times \(x-sluice-redeliveries\), more than the limit of 1/);
    expect(JSON.parse(dead!.content.toString())).toEqual({ pipeline: 'crash', id });
    expect(daemon.child.exitCode).toBeNull();
    expect((await broker.count(n.queue)).messages).toBe(0);
    daemon.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
  });
});

