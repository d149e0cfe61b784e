/**
 * The `amqp` sink: publish each record as a message, with publisher confirms: a batch
 * is accepted (and the items behind it acknowledged) only once the broker has
 * confirmed every message of it. The routing key comes from a field of the record (or
 * a function, or is fixed). Backpressure: while the broker blocks publishers (memory
 * or disk alarm) or the channel's buffer is full, writes wait, so the run slows down
 * instead of filling memory.
 *
 * A write that fails part-way (the connection dropped) is retried by the engine; the
 * messages the broker already confirmed are not published again, so a retried batch
 * does not duplicate them. A run stopped mid-batch may still publish a message twice
 * (at-least-once): consumers should be idempotent, or use the message id (a function
 * of the record, by default none).
 *
 * @example
 * ```ts
 * sinks: () => [amqpSink<Upload>({ exchange: 'uploads', routingKey: { field: 'kind' }, declareExchange: { type: 'topic' } })],
 * permissions: { net: ['127.0.0.1:5672'] },
 * ```
 */
import type { Options } from 'amqplib';
import { acquireAmqpConnection, amqpNetTarget, amqpUrlFromEnv, type AmqpConnection } from '../../runtime/amqp/connection.ts';
import { AmqpPublisher } from '../../runtime/amqp/publisher.ts';
import { declareTopology, type ExchangeSpec } from '../../runtime/amqp/topology.ts';
import type { RunContext } from '../../runtime/context.ts';
import { classifyError, FatalError, PermanentError, TransientError } from '../../runtime/errors.ts';
import type { Sink } from '../../runtime/pipeline.ts';

export interface AmqpSinkOptions<R> {
  exchange: string;
  /** a fixed key, a field of the record whose value is the key, or a function */
  routingKey: string | { field: keyof R & string } | ((record: R) => string);
  /** broker URL; default `$SLUICE_AMQP_URL`, else amqp://guest:guest@127.0.0.1:5672 */
  url?: string;
  /** declare the exchange (durable) on open; default: it must exist */
  declareExchange?: { type: ExchangeSpec['type'] };
  /** the message body; default the record as JSON */
  encode?: (record: R) => Buffer | string;
  /** AMQP properties per record (message id, headers, …) */
  properties?: (record: R) => Options.Publish;
  /** fail a record that no queue takes (PermanentError); default false */
  mandatory?: boolean;
  /** messages per write; default 500 */
  maxRecords?: number;
  /** publish a partial batch after this long; default 200 ms */
  maxDelayMs?: number;
  /** the sink's name in logs and metrics; default `amqp:<exchange>` */
  name?: string;
}

export function amqpSink<R>(options: AmqpSinkOptions<R>): Sink<R> {
  const url = options.url ?? amqpUrlFromEnv();
  const keyOf = routingKeyOf(options.routingKey);
  const encode = options.encode ?? ((r: R) => JSON.stringify(r));
  // a retried batch (the same array) or a half of a split one (the same record objects):
  // what the broker confirmed is not published again
  const confirmedRecords = new WeakSet<object>();
  const confirmedIndexes = new WeakMap<readonly R[], Set<number>>();
  const isConfirmed = (records: readonly R[], i: number) => {
    const r = records[i] as unknown;
    return typeof r === 'object' && r !== null ? confirmedRecords.has(r) : confirmedIndexes.get(records)?.has(i) === true;
  };
  const markConfirmed = (records: readonly R[], i: number) => {
    const r = records[i] as unknown;
    if (typeof r === 'object' && r !== null) confirmedRecords.add(r);
    else {
      let set = confirmedIndexes.get(records);
      if (!set) confirmedIndexes.set(records, (set = new Set()));
      set.add(i);
    }
  };
  let connection: AmqpConnection | undefined;
  let release: (() => Promise<void>) | undefined;
  let publisher: AmqpPublisher | undefined;

  return {
    name: options.name ?? `amqp:${options.exchange}`,
    kind: 'amqp',
    batch: { maxRecords: options.maxRecords ?? 500, maxDelayMs: options.maxDelayMs ?? 200, isolateFailures: true },

    open: async (ctx: RunContext) => {
      ctx.permissions.checkNet(amqpNetTarget(url), `amqp exchange ${options.exchange}`);
      const shared = acquireAmqpConnection(url, { log: ctx.log, connectionName: `sluice ${ctx.pipeline} run ${ctx.runId}` });
      connection = shared.connection;
      release = shared.release;
      try {
        await connection.start({ attempts: 5 });
      } catch (err) {
        await release();
        throw new FatalError(`amqp sink: ${(err as Error).message}`, { cause: err });
      }
      publisher = new AmqpPublisher(connection, { log: ctx.log });
      if (options.declareExchange) {
        const ch = await connection.createChannel();
        try {
          await declareTopology(ch, { exchanges: [{ name: options.exchange, type: options.declareExchange.type }] });
        } finally {
          await ch.close().catch(() => undefined);
        }
      }
    },

    write: async (records, wctx) => {
      const p = publisher;
      if (!p) throw new FatalError('amqp sink: write before open');
      const pending: Promise<void>[] = [];
      for (let i = 0; i < records.length; i++) {
        if (isConfirmed(records, i)) continue;
        const record = records[i]!;
        let key: string;
        let body: Buffer;
        try {
          key = keyOf(record);
          const encoded = encode(record);
          body = Buffer.isBuffer(encoded) ? encoded : Buffer.from(encoded);
        } catch (err) {
          throw new PermanentError(`amqp sink: cannot make a message of a record: ${(err as Error).message}`, { cause: err });
        }
        const index = i;
        pending.push(p.publish(options.exchange, key, body, {
          persistent: true,
          contentType: options.encode ? undefined : 'application/json',
          mandatory: options.mandatory ?? false,
          ...options.properties?.(record),
        }, wctx.signal).then(() => markConfirmed(records, index)));
      }
      const results = await Promise.allSettled(pending);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        const err = failed.reason as unknown;
        if (classifyError(err) === 'permanent' || classifyError(err) === 'fatal') throw err;
        throw err instanceof TransientError ? err : new TransientError(`amqp sink: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      }
    },

    close: async () => {
      await publisher?.close();
      publisher = undefined;
      await release?.();
      release = undefined;
      connection = undefined;
    },
  };
}

function routingKeyOf<R>(spec: AmqpSinkOptions<R>['routingKey']): (record: R) => string {
  if (typeof spec === 'string') return () => spec;
  if (typeof spec === 'function') return spec;
  return (record) => {
    const value = (record as Record<string, unknown>)[spec.field];
    if (value === undefined || value === null) throw new Error(`the record has no "${spec.field}" for the routing key`);
    return String(value);
  };
}
