/**
 * Declaring exchanges, queues and bindings, idempotently (run on every reconnect).
 * A declaration that clashes with what the broker already has (a queue with other
 * arguments, an exchange of another type) closes the channel with
 * `PRECONDITION_FAILED`; `declareTopology` turns that into a FatalError that names
 * the object and says what to do.
 *
 * @example
 * ```ts
 * await declareTopology(channel, {
 *   exchanges: [{ name: 'jobs', type: 'topic' }],
 *   queues: [{ name: 'jobs', arguments: { 'x-queue-type': 'quorum' } }],
 *   bindings: [{ queue: 'jobs', exchange: 'jobs', routingKey: '#' }],
 * });
 * ```
 */
import type { Channel } from 'amqplib';
import { FatalError } from '../errors.ts';

export interface ExchangeSpec {
  name: string;
  type: 'topic' | 'direct' | 'fanout' | 'headers';
  /** default true */
  durable?: boolean;
  /** only check that it exists (an exchange another system owns); default false */
  passive?: boolean;
}

export interface QueueSpec {
  name: string;
  /** default true */
  durable?: boolean;
  /** x-arguments: x-queue-type, x-dead-letter-exchange, x-message-ttl … */
  arguments?: Record<string, unknown>;
  passive?: boolean;
}

export interface BindingSpec {
  queue: string;
  exchange: string;
  routingKey: string;
}

export interface Topology {
  exchanges?: readonly ExchangeSpec[];
  queues?: readonly QueueSpec[];
  bindings?: readonly BindingSpec[];
}

/** Declare everything in `topology` on `channel`, in order: exchanges, queues, bindings. */
export async function declareTopology(channel: Channel, topology: Topology): Promise<void> {
  for (const ex of topology.exchanges ?? []) {
    if (ex.name === '' || ex.name.startsWith('amq.')) continue; // built in
    await explain(`exchange "${ex.name}"`, ex.passive
      ? channel.checkExchange(ex.name)
      : channel.assertExchange(ex.name, ex.type, { durable: ex.durable ?? true }), ex.passive
      ? 'it must exist already (passive): create it, or let sluice declare it'
      : `it exists with other settings than type ${ex.type}, durable ${ex.durable ?? true}: change the configuration to match, or delete the exchange`);
  }
  for (const q of topology.queues ?? []) {
    await explain(`queue "${q.name}"`, q.passive
      ? channel.checkQueue(q.name)
      : channel.assertQueue(q.name, { durable: q.durable ?? true, arguments: q.arguments ?? {} }), q.passive
      ? 'it must exist already (passive)'
      : `it exists with other arguments than ${JSON.stringify(q.arguments ?? {})}: change the configuration to match, or delete the queue (rabbitmqctl delete_queue ${q.name}) and let sluice declare it`);
  }
  for (const b of topology.bindings ?? []) {
    await explain(`binding of queue "${b.queue}" to exchange "${b.exchange}" (${b.routingKey})`, channel.bindQueue(b.queue, b.exchange, b.routingKey), 'check that the exchange exists');
  }
}

async function explain<T>(what: string, operation: Promise<T>, hint: string): Promise<T> {
  try {
    return await operation;
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    if (/PRECONDITION_FAILED|NOT_FOUND|ACCESS_REFUSED/.test(message)) {
      throw new FatalError(`cannot declare ${what}: ${message}`, { hint, cause: err });
    }
    throw err;
  }
}

/** AMQP topic matching: `*` is one word, `#` zero or more; words split on `.`. */
export function topicMatches(pattern: string, routingKey: string): boolean {
  const p = pattern.split('.');
  const k = routingKey.split('.');
  const match = (i: number, j: number): boolean => {
    if (i === p.length) return j === k.length;
    if (p[i] === '#') {
      for (let jj = j; jj <= k.length; jj++) if (match(i + 1, jj)) return true;
      return false;
    }
    if (j === k.length) return false;
    return (p[i] === '*' || p[i] === k[j]) && match(i + 1, j + 1);
  };
  return match(0, 0);
}
