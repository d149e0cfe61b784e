/**
 * A queue consumer that survives reconnects, and deliveries that know their channel.
 *
 * AMQP delivery tags are numbers scoped to the channel that delivered them: after a
 * reconnect the new channel counts from 1 again, so acking an old tag either acks the
 * wrong message or makes the broker close the channel with `PRECONDITION_FAILED -
 * unknown delivery tag`. Here every message comes wrapped in a `Delivery` bound to its
 * channel: once that channel is gone, `ack()`/`nack()` do nothing and return false,
 * `delivery.signal` aborts (so the work can stop early), and the broker redelivers
 * the message, to this consumer's next channel or to another consumer.
 *
 * On every (re)connection the consumer opens a channel, runs `setup` (declare the
 * topology), sets the prefetch and consumes. A channel closed by a channel error (the
 * connection still up) is reopened after a backoff.
 *
 * @example
 * ```ts
 * const consumer = new AmqpConsumer(conn, {
 *   queue: 'work', prefetch: 4,
 *   setup: (ch) => declareTopology(ch, topology),
 *   onMessage: (d) => handle(d.message).then(() => d.ack(), () => d.nack(false)),
 * });
 * await consumer.start();
 * await consumer.pause(); // stop receiving; deliveries in hand can still be acked
 * ```
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { backoffDelay, delayFor } from '../backoff.ts';
import { FatalError } from '../errors.ts';
import { createLogger, type Logger } from '../log.ts';
import type { AmqpConnection, ConnectedEvent } from './connection.ts';

export type DeliveryState = 'pending' | 'acked' | 'rejected' | 'dead';

/** One message as delivered on one channel. */
export class Delivery {
  private stateValue: DeliveryState = 'pending';
  private readonly dead = new AbortController();

  constructor(
    readonly message: ConsumeMessage,
    private readonly channel: Channel,
    /** which of the consumer's channels delivered it (1, 2, … after reconnects) */
    readonly channelGeneration: number,
    private readonly log: Logger,
    /** called once the delivery is settled or dead */
    private readonly onDone: (delivery: Delivery) => void = () => undefined,
  ) {}

  get state(): DeliveryState {
    return this.stateValue;
  }

  /** still held on a live channel and not yet settled */
  get pending(): boolean {
    return this.stateValue === 'pending';
  }

  /** aborted when the delivering channel closed before the message was settled */
  get signal(): AbortSignal {
    return this.dead.signal;
  }

  /** headers, never undefined */
  get headers(): Record<string, unknown> {
    return (this.message.properties.headers ?? {}) as Record<string, unknown>;
  }

  /** Ack on the channel that delivered it; false (and nothing sent) if that channel is gone or it was settled. */
  ack(): boolean {
    return this.settle('acked', (ch) => ch.ack(this.message));
  }

  /** Reject; `requeue` false sends it to the queue's dead-letter exchange (if any). False if the channel is gone. */
  nack(requeue: boolean): boolean {
    return this.settle('rejected', (ch) => ch.nack(this.message, false, requeue));
  }

  /** @internal the channel closed: the broker takes the message back */
  markDead(): void {
    if (this.stateValue !== 'pending') return;
    this.stateValue = 'dead';
    this.onDone(this);
    this.dead.abort(new Error('the channel that delivered the message closed; the broker redelivers it'));
  }

  private settle(state: DeliveryState, send: (ch: Channel) => void): boolean {
    if (this.stateValue !== 'pending') {
      if (this.stateValue === 'dead') {
        this.log.debug(`not settling delivery ${this.message.fields.deliveryTag} of channel #${this.channelGeneration}: that channel is gone (the broker redelivers the message)`);
      }
      return false;
    }
    try {
      send(this.channel);
    } catch (err) {
      // the channel closed under us (IllegalOperationError): same as dead
      this.log.debug(`settling delivery ${this.message.fields.deliveryTag} failed: ${(err as Error).message}`);
      this.markDead();
      return false;
    }
    this.stateValue = state;
    this.onDone(this);
    return true;
  }
}

export interface AmqpConsumerOptions {
  queue: string;
  /** unacknowledged messages at most (basic.qos) */
  prefetch: number;
  /** run on each new channel before consuming: declare exchanges, queues, bindings */
  setup?: (channel: Channel) => Promise<void>;
  /** called for every message; must not throw (errors are logged) */
  onMessage: (delivery: Delivery) => void;
  /** called when the broker cancelled the consumer (queue deleted) or setup failed */
  onProblem?: (err: Error) => void;
  log?: Logger;
}

export class AmqpConsumer {
  private readonly log: Logger;
  private channel?: Channel;
  /** the generation of `channel` */
  private channelGen = 0;
  private channelGeneration = 0;
  private consumerTag?: string;
  private paused = false;
  private closed = false;
  private unsubscribe?: () => void;
  private readonly live = new Set<Delivery>();
  private opening?: Promise<void>;
  private firstReady?: { resolve: () => void; reject: (err: Error) => void };

  constructor(private readonly connection: AmqpConnection, private readonly options: AmqpConsumerOptions) {
    this.log = options.log ?? createLogger();
  }

  /** deliveries held and not settled */
  get inHand(): number {
    return this.live.size;
  }

  /** true while a channel is consuming */
  get consuming(): boolean {
    return this.consumerTag !== undefined;
  }

  /**
   * Start consuming (and again after every reconnect). Resolves once consuming; rejects
   * if the first setup fails (say the queue exists with other arguments): a
   * configuration error is better reported at start than retried forever.
   */
  start(): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => { this.firstReady = { resolve, reject }; });
    this.unsubscribe = this.connection.onConnected((event) => this.open(event));
    return ready;
  }

  /** Stop receiving (basic.cancel). Deliveries in hand stay settle-able; no resubscribe on reconnect. */
  async pause(): Promise<void> {
    this.paused = true;
    const ch = this.channel;
    const tag = this.consumerTag;
    this.consumerTag = undefined;
    if (ch && tag) await ch.cancel(tag).catch((err: Error) => this.log.debug(`cancel failed: ${err.message}`));
  }

  /** Receive again after `pause()`, on the same channel if it is still open (so deliveries in hand keep theirs). */
  async resume(): Promise<void> {
    if (this.closed || !this.paused) return;
    this.paused = false;
    const channel = this.channel;
    if (channel && this.consumerTag === undefined) {
      const generation = this.channelGen;
      try {
        const reply = await channel.consume(this.options.queue, (msg) => this.onRaw(channel, generation, msg), { noAck: false });
        this.consumerTag = reply.consumerTag;
        return;
      } catch (err) {
        this.log.debug(`consuming again on channel #${generation} failed: ${(err as Error).message}`);
      }
    }
    const now = this.connection.current();
    if (now && !this.channel) this.open(now);
  }

  /** Close the channel; unsettled deliveries go back to the queue. */
  async close(): Promise<void> {
    this.closed = true;
    this.paused = true;
    this.unsubscribe?.();
    const ch = this.channel;
    this.channel = undefined;
    this.consumerTag = undefined;
    if (ch) await ch.close().catch(() => undefined);
    for (const d of this.live) d.markDead();
    this.live.clear();
  }

  private open(event: ConnectedEvent): void {
    if (this.closed || this.paused) return;
    this.opening ??= this.openChannel(event).finally(() => { this.opening = undefined; });
  }

  private async openChannel(event: ConnectedEvent): Promise<void> {
    for (let attempt = 1; !this.closed && !this.paused; attempt++) {
      if (this.connection.current()?.model !== event.model) return; // a newer connection takes over
      let channel: Channel | undefined;
      try {
        channel = await this.connection.createChannel();
        const generation = ++this.channelGeneration;
        channel.on('close', () => this.onChannelClosed(channel!, generation, event));
        if (this.options.setup) await this.options.setup(channel);
        await channel.prefetch(this.options.prefetch);
        const reply = await channel.consume(this.options.queue, (msg) => this.onRaw(channel!, generation, msg), { noAck: false });
        if (this.closed || this.paused) {
          await channel.cancel(reply.consumerTag).catch(() => undefined);
          this.channel = channel;
          this.channelGen = generation;
          return;
        }
        this.channel = channel;
        this.channelGen = generation;
        this.consumerTag = reply.consumerTag;
        this.log.debug(`consuming ${this.options.queue} (channel #${generation}, prefetch ${this.options.prefetch})`);
        this.firstReady?.resolve();
        this.firstReady = undefined;
        return;
      } catch (err) {
        const error = err as Error;
        await channel?.close().catch(() => undefined);
        if (this.firstReady && isConfigurationError(error)) {
          this.firstReady.reject(error);
          this.firstReady = undefined;
          this.closed = true;
          return;
        }
        if (!this.connection.connected) return; // the next 'connected' retries
        this.options.onProblem?.(error);
        const delay = backoffDelay(attempt, { initialDelayMs: 500, maxDelayMs: 15_000, jitter: 'equal' });
        this.log.warn(`cannot consume ${this.options.queue}: ${error.message}; retrying in ${Math.round(delay)} ms`);
        await delayFor(delay);
      }
    }
  }

  private onRaw(channel: Channel, generation: number, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // the broker cancelled us (queue deleted): set up again, which re-declares it
      this.consumerTag = undefined;
      const err = new Error(`the broker cancelled the consumer of ${this.options.queue} (was the queue deleted?)`);
      this.log.warn(err.message);
      this.options.onProblem?.(err);
      const now = this.connection.current();
      if (now && this.channel === channel) {
        this.channel = undefined;
        void channel.close().catch(() => undefined);
      }
      return;
    }
    const delivery = new Delivery(msg, channel, generation, this.log, (d) => this.live.delete(d));
    this.live.add(delivery);
    try {
      this.options.onMessage(delivery);
    } catch (err) {
      this.log.error(`handling a message from ${this.options.queue} failed: ${(err as Error).message}`);
    }
  }

  private onChannelClosed(channel: Channel, generation: number, event: ConnectedEvent): void {
    for (const d of [...this.live]) {
      if (d.channelGeneration === generation) d.markDead();
    }
    if (this.channel === channel) {
      this.channel = undefined;
      this.consumerTag = undefined;
    }
    // a channel error with the connection still up: open a new channel on it
    if (!this.closed && !this.paused && this.connection.current()?.model === event.model) {
      setTimeout(() => this.open(event), 200).unref();
    }
  }
}

/** Errors that retrying will not fix: the topology in the broker differs from the configuration. */
function isConfigurationError(err: Error): boolean {
  if (err instanceof FatalError) return true;
  return /PRECONDITION_FAILED|ACCESS_REFUSED|NOT_ALLOWED|inequivalent arg/i.test(err.message);
}
