/**
 * The shared broker layer against the real RabbitMQ: deliveries bound to their
 * channel across a dropped connection (no ack of a dead tag, no PRECONDITION_FAILED),
 * reconnect with backoff, heartbeats, publisher confirms and their errors, and waiting
 * while the broker blocks publishers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmqpConnection } from '../../runtime/amqp/connection.ts';
import { AmqpConsumer, type Delivery } from '../../runtime/amqp/consumer.ts';
import { AmqpPublisher } from '../../runtime/amqp/publisher.ts';
import { declareTopology } from '../../runtime/amqp/topology.ts';
import { PermanentError, TransientError } from '../../runtime/errors.ts';
import { createLogger } from '../../runtime/log.ts';
import { AMQP_URL, Broker, dropConnections, randomId, rabbitmqctl, sleep } from '../daemon/support.ts';

const log = createLogger({ level: 'silent' });
const id = `sluicetest-broker-${randomId()}`;
const queue = `${id}.q`;
const exchange = `${id}.x`;
let broker: Broker;

beforeAll(async () => {
  broker = await Broker.open();
});

afterAll(async () => {
  const ch = await broker.fresh();
  await ch.deleteQueue(queue).catch(() => undefined);
  await ch.deleteExchange(exchange).catch(() => undefined);
  await broker.close();
});

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('deliveries belong to their channel', () => {
  it('after the connection drops: old deliveries are dead (ack does nothing), the broker redelivers on the new channel, which keeps working', async () => {
    const name = `${id} consumer`;
    const conn = new AmqpConnection({ url: AMQP_URL, connectionName: name, log, reconnect: { initialDelayMs: 100, maxDelayMs: 1000 } });
    const got: Delivery[] = [];
    const consumer = new AmqpConsumer(conn, {
      queue,
      prefetch: 2,
      setup: (ch) => declareTopology(ch, { queues: [{ name: queue }] }),
      onMessage: (d) => got.push(d),
      log,
    });
    await conn.start();
    await consumer.start();
    await broker.publish('', queue, 'one', { messageId: 'one' });
    await broker.publish('', queue, 'two', { messageId: 'two' });
    await until(() => got.length === 2, 'two deliveries');
    const [first, second] = got as [Delivery, Delivery];
    expect(first.channelGeneration).toBe(1);

    expect(await dropConnections(name)).toBe(1);
    await until(() => first.signal.aborted && second.signal.aborted, 'the old deliveries to die');
    expect(first.state).toBe('dead');
    expect(first.ack()).toBe(false);
    expect(second.nack(true)).toBe(false);

    await until(() => got.length === 4, 'the redeliveries', 60_000);
    const again = got.slice(2);
    expect(again.map((d) => d.message.properties.messageId).sort()).toEqual(['one', 'two']);
    for (const d of again) {
      expect(d.channelGeneration).toBe(2);
      expect(d.message.fields.redelivered).toBe(true);
      // the new channel counts its tags from 1 again: acking the old tags here would have hit other messages
      expect(d.ack()).toBe(true);
    }
    expect(conn.generation).toBe(2);
    // the channel is healthy: a new message comes and is acked
    await broker.publish('', queue, 'three', { messageId: 'three' });
    await until(() => got.length === 5, 'a new delivery');
    expect(got[4]!.ack()).toBe(true);
    await sleep(300);
    expect(consumer.consuming).toBe(true);
    expect((await broker.count(queue)).messages).toBe(0);
    await consumer.close();
    await conn.close();
  });
});

describe('the connection', () => {
  it('has heartbeats on (15 s by default)', async () => {
    const name = `${id} heartbeat`;
    const conn = new AmqpConnection({ url: AMQP_URL, connectionName: name, log });
    await conn.start();
    await sleep(200);
    const out = await rabbitmqctl(['list_connections', 'timeout', 'client_properties']);
    const line = out.split('\n').find((l) => l.includes(name));
    expect(line).toBeDefined();
    expect(line!.trim().split(/\s+/)[0]).toBe('15');
    await conn.close();
  });

  it('a one-shot start gives up after its attempts with one line saying what to check', async () => {
    const conn = new AmqpConnection({ url: 'amqp://guest:guest@127.0.0.1:1', log, reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
    const err = await conn.start({ attempts: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toMatch(/cannot connect to the broker amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1: .*ECONNREFUSED/);
    await conn.close();
  });
});

describe('publisher confirms', () => {
  it('resolves on confirm; a message no queue takes, or an exchange that does not exist, is a PermanentError; the publisher carries on', async () => {
    const conn = new AmqpConnection({ url: AMQP_URL, log });
    await conn.start();
    const ch = await conn.createChannel();
    await declareTopology(ch, { exchanges: [{ name: exchange, type: 'topic' }], queues: [{ name: queue }], bindings: [{ queue, exchange, routingKey: 'good.#' }] });
    await ch.close();
    const publisher = new AmqpPublisher(conn, { log });
    await publisher.publish(exchange, 'good.one', Buffer.from('1'), { mandatory: true });
    const unroutable = await publisher.publish(exchange, 'nobody.listens', Buffer.from('2'), { mandatory: true }).catch((e: unknown) => e);
    expect(unroutable).toBeInstanceOf(PermanentError);
    expect((unroutable as Error).message).toMatch(/no queue took the message published to exchange ".*" with routing key "nobody.listens"/);
    const missing = await publisher.publish(`${exchange}-missing`, 'x', Buffer.from('3')).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(PermanentError);
    expect((missing as Error).message).toMatch(/NOT_FOUND - no exchange/);
    await publisher.publish(exchange, 'good.two', Buffer.from('4'), { mandatory: true });
    expect((await broker.drain(queue)).map((m) => m.content.toString())).toEqual(['1', '4']);
    await publisher.close();
    await conn.close();
  });

  it('waits while the broker blocks publishers, and goes on when it unblocks', async () => {
    const conn = new AmqpConnection({ url: AMQP_URL, log });
    await conn.start();
    const publisher = new AmqpPublisher(conn, { log });
    // the broker's connection.blocked notification, as amqplib reports it
    conn.current()!.model.emit('blocked', 'low on memory');
    expect(conn.blocked).toBe(true);
    let done = false;
    const publishing = publisher.publish('', queue, Buffer.from('while blocked')).then(() => { done = true; });
    await sleep(300);
    expect(done).toBe(false);
    conn.current()!.model.emit('unblocked');
    await publishing;
    expect(done).toBe(true);
    expect((await broker.drain(queue)).map((m) => m.content.toString())).toEqual(['while blocked']);
    await publisher.close();
    await conn.close();
  });
});
