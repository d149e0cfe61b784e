/**
 * Publishing with publisher confirms: `publish` resolves once the broker has taken
 * responsibility for the message (routed to its queues and, for persistent messages
 * on durable queues, written), and rejects with a classified error otherwise:
 *
 * - the broker nacked it, or the channel/connection closed before the confirm →
 *   `TransientError` (publish again; the message may or may not have arrived);
 * - `mandatory` and no queue is bound for the routing key, or the exchange does not
 *   exist → `PermanentError` naming the exchange and routing key.
 *
 * Backpressure: while the broker blocks publishers (memory or disk alarm) `publish`
 * waits for it to unblock, and while the channel's write buffer is full it waits for
 * `drain`, so a fast producer cannot fill memory. After a reconnect a new confirm
 * channel is opened on the first publish.
 *
 * @example
 * ```ts
 * const publisher = new AmqpPublisher(conn);
 * await publisher.publish('sluice.triggers', 'run.inventory', Buffer.from('{…}'), { persistent: true, mandatory: true });
 * ```
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { PermanentError, TransientError } from '../errors.ts';
import { createLogger, type Logger } from '../log.ts';
import type { AmqpConnection } from './connection.ts';

export interface PublishOptions extends Options.Publish {
  /** fail with a PermanentError when no queue takes the message */
  mandatory?: boolean;
}

export class AmqpPublisher {
  private readonly log: Logger;
  private channel?: ConfirmChannel;
  private channelModel?: unknown;
  private opening?: Promise<ConfirmChannel>;
  private draining?: Promise<void>;
  private readonly channelErrors = new WeakMap<ConfirmChannel, string>();
  private readonly returned = new Set<string>();
  private closed = false;

  constructor(private readonly connection: AmqpConnection, options: { log?: Logger } = {}) {
    this.log = options.log ?? createLogger();
  }

  /** Publish and wait for the broker's confirm; see the file comment for the errors. */
  async publish(exchange: string, routingKey: string, content: Buffer, options: PublishOptions = {}, signal?: AbortSignal): Promise<void> {
    if (this.closed) throw new PermanentError('the publisher is closed');
    // the usual case (connected, not blocked, channel open) without a wait: each await is another turn of the event loop's microtask queue
    if (!this.connection.connected) await this.connection.waitConnected(signal);
    if (this.connection.blocked) await this.connection.waitUnblocked(signal);
    while (this.draining) await raceSignal(this.draining, signal);
    const channel = this.openChannel() ?? await this.getChannel();
    const properties: Options.Publish = { ...options };
    if (options.mandatory && !properties.messageId) properties.messageId = randomUUID();
    const id = properties.messageId as string | undefined;
    const where = `exchange "${exchange}" with routing key "${routingKey}"`;
    const confirmed = new Promise<void>((resolve, reject) => {
      let ok: boolean;
      try {
        ok = channel.publish(exchange, routingKey, content, properties, (err: unknown) => {
          if (options.mandatory && id !== undefined && this.returned.delete(id)) {
            reject(new PermanentError(`no queue took the message published to ${where}`, {
              hint: 'nothing is bound for that routing key: is the daemon (or its topology) set up?',
            }));
            return;
          }
          if (!err) return resolve();
          const channelError = this.channelErrors.get(channel);
          if (channelError && /NOT_FOUND|ACCESS_REFUSED|PRECONDITION_FAILED/.test(channelError)) {
            reject(new PermanentError(`publishing to ${where} failed: ${channelError}`));
          } else {
            reject(new TransientError(`publishing to ${where} was not confirmed: ${channelError ?? describe(err)}`, { cause: err }));
          }
        });
      } catch (err) {
        // RangeError from an oversized header table, or the channel closed between checks
        if (err instanceof RangeError) reject(new PermanentError(`cannot publish to ${where}: ${err.message}`));
        else reject(new TransientError(`cannot publish to ${where}: ${describe(err)}`, { cause: err }));
        return;
      }
      if (!ok && !this.draining) {
        this.draining = once(channel, 'drain').then(() => undefined, () => undefined).finally(() => { this.draining = undefined; });
        channel.once('close', () => { this.draining = undefined; });
      }
    });
    return raceSignal(confirmed, signal);
  }

  /** Close the channel (unconfirmed publishes reject). */
  async close(): Promise<void> {
    this.closed = true;
    const ch = this.channel;
    this.channel = undefined;
    if (ch) await ch.close().catch(() => undefined);
  }

  /** the confirm channel on the current connection, if it is open */
  private openChannel(): ConfirmChannel | undefined {
    return this.channel && this.channelModel === this.connection.current()?.model ? this.channel : undefined;
  }

  private async getChannel(): Promise<ConfirmChannel> {
    const current = this.connection.current();
    if (this.channel && this.channelModel === current?.model) return this.channel;
    this.opening ??= (async () => {
      const model = this.connection.current()?.model;
      const ch = await this.connection.createChannel(true);
      ch.on('error', (err: Error) => { this.channelErrors.set(ch, err.message); });
      ch.on('return', (msg: Message) => {
        const mid = msg.properties.messageId as string | undefined;
        if (mid !== undefined) this.returned.add(mid);
      });
      ch.on('close', () => {
        if (this.channel === ch) {
          this.channel = undefined;
          const error = this.channelErrors.get(ch);
          if (error) this.log.debug(`publisher channel closed: ${error}`);
        }
      });
      this.channel = ch;
      this.channelModel = model;
      return ch;
    })().finally(() => { this.opening = undefined; });
    return this.opening;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function raceSignal<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}
