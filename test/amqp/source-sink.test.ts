/**
 * The `amqp` source and sink in a pipeline, through the runner: each message is acked
 * once its records are accepted by every sink, rejected to the queue's dead-letter
 * exchange when it fails for good, and left in the queue when the run fails before its
 * records were written; the sink publishes with confirms, routing keys from a field.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { map, pipe } from 'rxjs';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PermanentError, TransientError } from '../../runtime/errors.ts';
import { createLogger } from '../../runtime/log.ts';
import { definePipeline, type Sink } from '../../runtime/pipeline.ts';
import { JsonlRunStore } from '../../runtime/run-record.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { amqpSink } from '../../sinks/amqp/index.ts';
import { amqp } from '../../sources/amqp/index.ts';
import { AMQP_URL, Broker, randomId } from '../daemon/support.ts';

interface Upload { n: number; kind: 'rpm' | 'iso' }

const log = createLogger({ level: 'silent' });
const id = `sluicetest-srcsink-${randomId()}`;
const inQueue = `${id}.in`;
const dlx = `${id}.dlx`;
const dead = `${id}.dead`;
const outEx = `${id}.out`;
const rpmQueue = `${id}.rpm`;
const isoQueue = `${id}.iso`;
let broker: Broker;
let stateDir: string;

beforeAll(async () => {
  broker = await Broker.open();
  stateDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-amqp-srcsink-'));
  const ch = await broker.fresh();
  await ch.assertExchange(dlx, 'fanout', { durable: false });
  await ch.assertQueue(dead, { durable: false });
  await ch.bindQueue(dead, dlx, '');
  await ch.assertExchange(outEx, 'topic', { durable: false });
  await ch.assertQueue(rpmQueue, { durable: false });
  await ch.bindQueue(rpmQueue, outEx, 'rpm');
  await ch.assertQueue(isoQueue, { durable: false });
  await ch.bindQueue(isoQueue, outEx, 'iso');
  await ch.close();
});

afterAll(async () => {
  const ch = await broker.fresh();
  for (const q of [inQueue, dead, rpmQueue, isoQueue]) await ch.deleteQueue(q).catch(() => undefined);
  for (const x of [dlx, outEx]) await ch.deleteExchange(x).catch(() => undefined);
  await broker.close();
});

async function fill(messages: string[]): Promise<void> {
  await broker.publishMany('', messages.map((body, i) => ({ routingKey: inQueue, body, options: { messageId: `m${i}` } })));
}

function pipeline(sinks: () => Sink<Upload>[], onError: 'skip' | 'fail' | 'dead-letter' = 'skip') {
  return definePipeline({
    name: 'amqp-relay',
    description: 'queue to exchange',
    params: z.object({}),
    permissions: { net: ['127.0.0.1:5672'] },
    onError,
    maxInFlight: 8,
    source: (ctx) => amqp<{ n: number }>(ctx, { queue: inQueue, url: AMQP_URL, prefetch: 16, idleMs: 1500, declare: { deadLetterExchange: dlx } }),
    transform: () => pipe(map((m: { n: number }): Upload => {
      if (m.n === 7) throw new PermanentError('upload 7 is malformed');
      return { n: m.n, kind: m.n % 2 ? 'iso' : 'rpm' };
    })),
    sinks,
  });
}

describe('amqp source → amqp sink', () => {
  it('relays messages with routing keys from a field; acks each after the sink confirmed it; bad ones go to the dead-letter exchange', async () => {
    // the queue is declared by the source on first use: declare it now with the same arguments to fill it
    const ch = await broker.fresh();
    await ch.assertQueue(inQueue, { durable: true, arguments: { 'x-dead-letter-exchange': dlx } });
    await ch.close();
    await fill([...Array.from({ length: 20 }, (_, n) => JSON.stringify({ n })), 'not json']);
    const record = await runPipeline({
      pipeline: pipeline(() => [amqpSink<Upload>({ exchange: outEx, url: AMQP_URL, routingKey: { field: 'kind' }, maxRecords: 5 })]),
      stateDir, log, runStore: new JsonlRunStore(stateDir),
    });
    expect(record.status, JSON.stringify(record.errors)).toBe('succeeded');
    expect(record.counts.items).toBe(21);
    expect(record.counts.skipped).toBe(2);
    const rpm = (await broker.drain(rpmQueue)).map((m) => JSON.parse(m.content.toString()) as Upload);
    const iso = (await broker.drain(isoQueue)).map((m) => JSON.parse(m.content.toString()) as Upload);
    expect(rpm.map((u) => u.n).sort((a, b) => a - b)).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    expect(iso.map((u) => u.n).sort((a, b) => a - b)).toEqual([1, 3, 5, 9, 11, 13, 15, 17, 19]);
    const rejected = await broker.drain(dead);
    expect(rejected.map((m) => m.content.toString()).sort()).toEqual(['not json', '{"n":7}']);
    expect(rejected.every((m) => (m.properties.headers?.['x-death'] as { reason: string }[])[0]!.reason === 'rejected')).toBe(true);
    expect((await broker.count(inQueue)).messages).toBe(0);
  });

  it('a run whose sink never accepts leaves every message in the queue', async () => {
    await fill(Array.from({ length: 6 }, (_, n) => JSON.stringify({ n })));
    const down: Sink<Upload> = { name: 'down', kind: 'test', write: () => { throw new TransientError('sink down'); } };
    const record = await runPipeline({
      pipeline: pipeline(() => [down], 'fail'),
      stateDir, log, runStore: new JsonlRunStore(stateDir),
      retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 20 },
      stopGraceMs: 500,
    });
    expect(record.status).toBe('failed');
    // nothing was acked: all six are back (requeued on stop, or by the broker when the channel closed)
    let ready = 0;
    for (let i = 0; i < 100 && ready < 6; i++) {
      ready = (await broker.count(inQueue)).messages;
      if (ready < 6) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ready).toBe(6);
    expect((await broker.drain(dead)).length).toBe(0);
    await broker.drain(inQueue);
  });
});
