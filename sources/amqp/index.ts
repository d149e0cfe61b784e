/**
 * The `amqp` source: consume a RabbitMQ queue, one item per message. A message is
 * acked only when every record derived from it has been accepted by every sink (the
 * runner's per-item acknowledgement), rejected without requeue (to the queue's
 * dead-letter exchange, if it has one) when the item fails with a permanent error (bad
 * data), and handed back (requeued) when it fails otherwise (a sink that stayed down,
 * a fatal error) or the run stops before it is done. A message whose channel died
 * before it was settled is left to the broker, which redelivers it: processing is
 * at-least-once, so sinks should be idempotent (the `clickhouse` sink is, by key).
 *
 * Memory is bounded by `prefetch`: the broker never sends more unacknowledged
 * messages than that, and the runner holds at most `maxInFlight` items; keep
 * `prefetch` ≥ the pipeline's `maxInFlight` so the source never starves the runner.
 *
 * The source ends when the run is stopped, after `idleMs` without a message, or after
 * `maxMessages`; otherwise it consumes for as long as the run lasts. It uses the
 * process's shared broker connection for the URL (the daemon's, inside the daemon),
 * on a channel of its own; the connection needs `net` permission for the broker's
 * `host:port`.
 *
 * @example
 * ```ts
 * source: (ctx) => amqp<Upload>(ctx, { queue: 'uploads', prefetch: 64, idleMs: 5_000 }),
 * permissions: { net: ['127.0.0.1:5672'] },
 * ```
 */
import type { ConsumeMessage } from 'amqplib';
import { acquireAmqpConnection, amqpNetTarget, amqpUrlFromEnv } from '../../runtime/amqp/connection.ts';
import { AmqpConsumer, type Delivery } from '../../runtime/amqp/consumer.ts';
import { declareTopology } from '../../runtime/amqp/topology.ts';
import type { RunContext } from '../../runtime/context.ts';
import { classifyError, PermanentError } from '../../runtime/errors.ts';
import { item, type TaggedItem } from '../../runtime/pipeline.ts';

export interface AmqpSourceOptions<T> {
  queue: string;
  /** broker URL; default `$SLUICE_AMQP_URL`, else amqp://guest:guest@127.0.0.1:5672 */
  url?: string;
  /** unacknowledged messages at most; default 64 */
  prefetch?: number;
  /**
   * declare the queue (durable) instead of requiring it to exist, with an optional
   * dead-letter exchange for rejected messages and other x-arguments
   */
  declare?: { deadLetterExchange?: string; arguments?: Record<string, unknown> };
  /** the item's value from a message: `json` (default), `text`, `buffer`, or a function; a throw rejects the message */
  decode?: 'json' | 'text' | 'buffer' | ((message: ConsumeMessage) => T);
  /** end the source after this long without a message */
  idleMs?: number;
  /** end the source after this many messages */
  maxMessages?: number;
}

/** Consume `options.queue`; see the file comment. */
export async function* amqp<T = unknown>(ctx: RunContext, options: AmqpSourceOptions<T>): AsyncGenerator<TaggedItem<T>> {
  const url = options.url ?? amqpUrlFromEnv();
  ctx.permissions.checkNet(amqpNetTarget(url), `amqp queue ${options.queue}`);
  const { connection, release } = acquireAmqpConnection(url, { log: ctx.log, connectionName: `sluice ${ctx.pipeline} run ${ctx.runId}` });
  const buffer: Delivery[] = [];
  let wake: (() => void) | undefined;
  const consumer = new AmqpConsumer(connection, {
    queue: options.queue,
    prefetch: options.prefetch ?? 64,
    setup: options.declare
      ? (ch) => declareTopology(ch, {
          queues: [{
            name: options.queue,
            arguments: { ...(options.declare!.deadLetterExchange ? { 'x-dead-letter-exchange': options.declare!.deadLetterExchange } : {}), ...options.declare!.arguments },
          }],
        })
      : (ch) => declareTopology(ch, { queues: [{ name: options.queue, passive: true }] }),
    onMessage: (d) => {
      buffer.push(d);
      const w = wake;
      wake = undefined;
      w?.();
    },
    log: ctx.log,
  });
  const decode = decoder<T>(options.decode);
  let taken = 0;
  try {
    await connection.start({ attempts: 5 });
    await consumer.start();
    while (!ctx.signal.aborted && (options.maxMessages === undefined || taken < options.maxMessages)) {
      if (buffer.length === 0) {
        const idle = await new Promise<boolean>((resolve) => {
          const timer = options.idleMs !== undefined ? setTimeout(() => resolve(true), options.idleMs) : undefined;
          const onAbort = () => resolve(false);
          ctx.signal.addEventListener('abort', onAbort, { once: true });
          wake = () => {
            if (timer) clearTimeout(timer);
            ctx.signal.removeEventListener('abort', onAbort);
            resolve(false);
          };
        });
        wake = undefined;
        if (idle) break;
        continue;
      }
      const d = buffer.shift()!;
      if (!d.pending) continue; // its channel died while it waited: the broker redelivers it
      taken++;
      const msg = d.message;
      const id = (msg.properties.messageId as string | undefined) ?? `${options.queue}#${msg.fields.deliveryTag}`;
      const hooks = {
        bytes: msg.content.length,
        ack: () => { d.ack(); },
        // only a permanent error is the message's fault: a sink outage or a stopped run hands it back
        nack: (err: unknown, requeue: boolean) => { d.nack(requeue || classifyError(err) !== 'permanent'); },
      };
      let value: T;
      try {
        value = decode(msg);
      } catch (err) {
        yield item(id, undefined as T, { ...hooks, error: new PermanentError(`message ${id} from ${options.queue} cannot be decoded: ${(err as Error).message}`, { item: id, cause: err }) });
        continue;
      }
      yield item(id, value, hooks);
    }
  } finally {
    await consumer.pause().catch(() => undefined);
    // messages buffered but never yielded go back now
    for (const d of buffer.splice(0)) d.nack(true);
    const closeWhenSettled = async () => {
      // the runner acks the items it pulled once their records are written: keep the
      // channel until then (acks on a closed channel would be lost and redelivered)
      const until = Date.now() + 10 * 60_000;
      while (consumer.inHand > 0 && Date.now() < until && !connection.closed) await new Promise((r) => setTimeout(r, 20));
      await consumer.close();
      await release();
    };
    if (ctx.signal.aborted) void closeWhenSettled();
    else await closeWhenSettled();
  }
}

function decoder<T>(decode: AmqpSourceOptions<T>['decode']): (m: ConsumeMessage) => T {
  if (typeof decode === 'function') return decode;
  switch (decode ?? 'json') {
    case 'text':
      return (m) => m.content.toString('utf8') as T;
    case 'buffer':
      return (m) => m.content as T;
    default:
      return (m) => JSON.parse(m.content.toString('utf8')) as T;
  }
}
