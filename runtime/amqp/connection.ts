/**
 * The AMQP connection manager: one broker connection that comes back by itself.
 * The daemon, `fire`, the `amqp` source and the `amqp` sink all go through it.
 *
 * - **Connect** with heartbeats on (default 15 s, so a dead peer is noticed within
 *   ~30 s), `amqp://` or `amqps://` (TLS options from `tls`), and a connection name the
 *   broker's management UI shows.
 * - **Reconnect** after any loss (broker restart, `rabbitmqctl close_connection`, a
 *   network cut, a missed heartbeat) with exponential backoff and jitter, forever,
 *   until `close()`. Each new connection gets a new `generation`; whatever was opened
 *   on an older one (channels, and with them delivery tags) is dead and must not be
 *   used again: consumers and publishers listen to `connected` and open fresh channels.
 * - **Flow control**: `blocked` is true while the broker has blocked publishing
 *   (memory or disk alarm); publishers wait for `unblocked`.
 *
 * @example
 * ```ts
 * const conn = new AmqpConnection({ url: amqpUrlFromEnv(), log });
 * await conn.start();                       // retries until the broker answers
 * conn.onConnected(async (model, gen) => { … open channels … });
 * await conn.close();
 * ```
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';
import { backoffDelay, delayFor } from '../backoff.ts';
import { FatalError, TransientError } from '../errors.ts';
import { createLogger, type Logger } from '../log.ts';

/** The broker sluice talks to when nothing else is configured. */
export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

export interface AmqpTlsOptions {
  /** PEM file of the CA(s) that signed the broker's certificate */
  ca?: string;
  /** PEM files of a client certificate and key (for EXTERNAL or mutual TLS) */
  cert?: string;
  key?: string;
  /** default true; false accepts any certificate (tests only) */
  rejectUnauthorized?: boolean;
  /** the name the certificate must carry, when it is not the URL's host */
  servername?: string;
}

export interface AmqpConnectionOptions {
  /** `amqp://user:pass@host:port/vhost` or `amqps://…` */
  url: string;
  /** heartbeat interval in seconds; default 15; 0 turns heartbeats off (not recommended) */
  heartbeatSeconds?: number;
  tls?: AmqpTlsOptions;
  /** shown by the broker (management UI, `rabbitmqctl list_connections name`) */
  connectionName?: string;
  /** reconnect backoff; default 500 ms doubling up to 30 s, jittered */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  /** TCP connect timeout, ms; default 10 000 */
  connectTimeoutMs?: number;
  log?: Logger;
}

export interface ConnectedEvent {
  model: ChannelModel;
  generation: number;
}

/** The URL without its password, for messages and logs. */
export function describeAmqpUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(an invalid AMQP URL)';
  }
}

/** `SLUICE_AMQP_URL`, else the local default broker. */
export function amqpUrlFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env.SLUICE_AMQP_URL?.trim() || DEFAULT_AMQP_URL;
}

/** Check an AMQP URL and split it into what amqplib's connect takes. */
export function parseAmqpUrl(url: string): { connect: Options.Connect; host: string; port: number; tls: boolean } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FatalError(`"${url}" is not an AMQP URL`, { hint: 'give amqp://user:password@host:5672/vhost (or amqps:// for TLS)' });
  }
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:') {
    throw new FatalError(`${describeAmqpUrl(url)}: the scheme must be amqp:// or amqps://, not ${u.protocol}//`);
  }
  const tls = u.protocol === 'amqps:';
  const port = u.port ? Number(u.port) : tls ? 5671 : 5672;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const vhost = u.pathname && u.pathname !== '/' ? decodeURIComponent(u.pathname.slice(1)) : '/';
  const frameMax = u.searchParams.get('frame_max');
  return {
    host,
    port,
    tls,
    connect: {
      protocol: tls ? 'amqps' : 'amqp',
      hostname: host,
      port,
      username: u.username ? decodeURIComponent(u.username) : 'guest',
      password: u.password ? decodeURIComponent(u.password) : 'guest',
      vhost,
      ...(frameMax ? { frameMax: Number(frameMax) } : {}),
    },
  };
}

/** `amqp://host:port` of a URL, with the port always written: what permission checks compare. */
export function amqpNetTarget(url: string): URL {
  const { host, port, tls } = parseAmqpUrl(url);
  return new URL(`${tls ? 'amqps' : 'amqp'}://${host.includes(':') ? `[${host}]` : host}:${port}`);
}

type Events = {
  connected: [ConnectedEvent];
  disconnected: [Error];
  blocked: [string];
  unblocked: [];
  closed: [];
};

export class AmqpConnection extends EventEmitter<Events> {
  readonly description: string;
  private readonly log: Logger;
  private model?: ChannelModel;
  private generationCounter = 0;
  private stopped = false;
  private loop?: Promise<void>;
  private readonly stop = new AbortController();
  private blockedReason?: string;
  /** connections made so far (the first included) */
  connects = 0;

  constructor(readonly options: AmqpConnectionOptions) {
    super();
    parseAmqpUrl(options.url); // fail at once on a bad URL
    this.description = describeAmqpUrl(options.url);
    this.log = options.log ?? createLogger();
    this.setMaxListeners(0);
  }

  /** the current connection's number (1 for the first); 0 before the first */
  get generation(): number {
    return this.generationCounter;
  }

  get connected(): boolean {
    return this.model !== undefined;
  }

  get blocked(): boolean {
    return this.blockedReason !== undefined;
  }

  get closed(): boolean {
    return this.stopped;
  }

  /** the live connection, if there is one */
  current(): ConnectedEvent | undefined {
    return this.model ? { model: this.model, generation: this.generationCounter } : undefined;
  }

  /**
   * Connect, and keep reconnecting after every loss until `close()`. Resolves once
   * connected the first time; with `attempts`, rejects after that many failed tries
   * (a one-shot command should fail, not wait forever, when the broker is down).
   */
  start(options: { attempts?: number } = {}): Promise<void> {
    if (this.stopped) return Promise.reject(new FatalError('the AMQP connection is closed'));
    if (this.model) return Promise.resolve();
    const first = new Promise<void>((resolve, reject) => {
      const onConnected = () => {
        this.off('closed', onClosed);
        resolve();
      };
      const onClosed = () => {
        this.off('connected', onConnected);
        reject(new FatalError(`AMQP connection to ${this.description} closed before it was established`));
      };
      this.once('connected', onConnected);
      this.once('closed', onClosed);
      this.loop ??= this.run(options.attempts, (err) => {
        this.off('connected', onConnected);
        this.off('closed', onClosed);
        reject(err);
      });
    });
    return first;
  }

  /** Run `fn` now if connected and after every (re)connection; returns an unsubscribe function. */
  onConnected(fn: (event: ConnectedEvent) => void): () => void {
    this.on('connected', fn);
    const now = this.current();
    if (now) queueMicrotask(() => { if (this.model === now.model) fn(now); });
    return () => this.off('connected', fn);
  }

  /** Resolves when connected (at once if already); rejects when `signal` aborts or the connection is closed. */
  async waitConnected(signal?: AbortSignal): Promise<ConnectedEvent> {
    for (;;) {
      const now = this.current();
      if (now) return now;
      if (this.stopped) throw new FatalError(`the AMQP connection to ${this.description} is closed`);
      signal?.throwIfAborted();
      await waitEvent(this, ['connected', 'closed'], signal);
    }
  }

  /** Resolves when the broker is not blocking publishers (at once if it is not). */
  async waitUnblocked(signal?: AbortSignal): Promise<void> {
    while (this.blockedReason !== undefined && !this.stopped) {
      signal?.throwIfAborted();
      await waitEvent(this, ['unblocked', 'disconnected', 'closed'], signal);
    }
  }

  /** A new channel on the current connection; a TransientError when there is none right now. */
  async createChannel(confirm: true): Promise<ConfirmChannel>;
  async createChannel(confirm?: false): Promise<Channel>;
  async createChannel(confirm = false): Promise<Channel | ConfirmChannel> {
    const model = this.model;
    if (!model) throw new TransientError(`not connected to the broker ${this.description}`);
    const channel = confirm ? await model.createConfirmChannel() : await model.createChannel();
    // an unhandled 'error' would crash the process; the 'close' that follows is what users watch
    channel.on('error', (err: Error) => this.log.debug(`AMQP channel error: ${err.message}`));
    return channel;
  }

  /** Close the connection for good (no reconnect). */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stop.abort(new Error('connection closed'));
    const model = this.model;
    this.model = undefined;
    if (model) await model.close().catch(() => undefined);
    this.emit('closed');
    await this.loop?.catch(() => undefined);
  }

  private async run(attempts: number | undefined, failFirst: (err: Error) => void): Promise<void> {
    const backoff = { initialDelayMs: this.options.reconnect?.initialDelayMs ?? 500, maxDelayMs: this.options.reconnect?.maxDelayMs ?? 30_000, jitter: 'equal' as const };
    let failures = 0;
    let everConnected = false;
    while (!this.stopped) {
      let model: ChannelModel;
      try {
        model = await this.connectOnce();
      } catch (err) {
        failures++;
        const message = (err as Error)?.message ?? String(err);
        if (!everConnected && attempts !== undefined && failures >= attempts) {
          failFirst(new TransientError(`cannot connect to the broker ${this.description}: ${message}`, {
            hint: 'is RabbitMQ running and the URL right? (SLUICE_AMQP_URL)',
            cause: err,
          }));
          this.loop = undefined;
          return;
        }
        if (err instanceof FatalError) {
          this.log.error(`AMQP: ${message}`);
        }
        const delay = backoffDelay(failures, backoff);
        this.log.warn(`cannot connect to the broker ${this.description}: ${message}; retrying in ${Math.round(delay)} ms`);
        try {
          await delayFor(delay, this.stop.signal);
        } catch {
          return;
        }
        continue;
      }
      if (this.stopped) {
        await model.close().catch(() => undefined);
        return;
      }
      failures = 0;
      everConnected = true;
      this.connects++;
      const lost = new Promise<Error>((resolve) => {
        model.on('error', (err: Error) => this.log.debug(`AMQP connection error: ${err.message}`));
        model.on('close', (err?: Error) => resolve(err ?? new Error('connection closed')));
        model.on('blocked', (reason: string) => {
          this.blockedReason = reason || 'blocked';
          this.log.warn(`the broker blocked publishing: ${this.blockedReason}`);
          this.emit('blocked', this.blockedReason);
        });
        model.on('unblocked', () => {
          this.blockedReason = undefined;
          this.log.info('the broker unblocked publishing');
          this.emit('unblocked');
        });
      });
      this.model = model;
      this.generationCounter++;
      if (this.generationCounter > 1) this.log.info(`reconnected to the broker ${this.description}`);
      this.emit('connected', { model, generation: this.generationCounter });
      const err = await lost;
      if (this.model === model) this.model = undefined;
      if (this.blockedReason !== undefined) {
        this.blockedReason = undefined;
        this.emit('unblocked');
      }
      if (this.stopped) return;
      this.log.warn(`lost the broker connection ${this.description}: ${err.message}; reconnecting`);
      this.emit('disconnected', err);
      failures = 1;
      try {
        await delayFor(backoffDelay(1, backoff), this.stop.signal);
      } catch {
        return;
      }
    }
  }

  private async connectOnce(): Promise<ChannelModel> {
    const parsed = parseAmqpUrl(this.options.url);
    const heartbeat = this.options.heartbeatSeconds ?? 15;
    const socket: Record<string, unknown> = {
      timeout: this.options.connectTimeoutMs ?? 10_000,
      noDelay: true,
      clientProperties: {
        connection_name: this.options.connectionName ?? `sluice ${os.hostname()} pid ${process.pid}`,
        product: 'sluice',
      },
    };
    if (parsed.tls) {
      const tls = this.options.tls ?? {};
      try {
        if (tls.ca) socket.ca = [readFileSync(tls.ca)];
        if (tls.cert) socket.cert = readFileSync(tls.cert);
        if (tls.key) socket.key = readFileSync(tls.key);
      } catch (err) {
        throw new FatalError(`cannot read a TLS file for ${this.description}: ${(err as Error).message}`);
      }
      if (tls.rejectUnauthorized === false) socket.rejectUnauthorized = false;
      if (tls.servername) socket.servername = tls.servername;
    }
    return amqp.connect({ ...parsed.connect, heartbeat }, socket);
  }
}

/** Resolves on the first of `events`; rejects when `signal` aborts. */
function waitEvent(emitter: EventEmitter, events: string[], signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      for (const e of events) emitter.off(e, done);
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = () => {
      for (const e of events) emitter.off(e, done);
      reject(signal!.reason);
    };
    for (const e of events) emitter.on(e, done);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// ---- shared connections ---------------------------------------------------------------

interface SharedEntry {
  connection: AmqpConnection;
  users: number;
  /** owned by someone who closes it (the daemon); releasing the last user leaves it open */
  owned: boolean;
}

const shared = new Map<string, SharedEntry>();

/**
 * One connection per broker URL in the process, counted: the daemon registers its
 * connection here, so the `amqp` source and sink of a run inside the daemon use the
 * same connection (their own channels) instead of opening one per run.
 */
export function acquireAmqpConnection(url: string, options: Omit<AmqpConnectionOptions, 'url'> = {}): { connection: AmqpConnection; release: () => Promise<void> } {
  let entry = shared.get(url);
  if (!entry || entry.connection.closed) {
    entry = { connection: new AmqpConnection({ ...options, url }), users: 0, owned: false };
    shared.set(url, entry);
  }
  entry.users++;
  const e = entry;
  let released = false;
  return {
    connection: e.connection,
    release: async () => {
      if (released) return;
      released = true;
      e.users--;
      if (e.users === 0 && !e.owned) {
        if (shared.get(url) === e) shared.delete(url);
        await e.connection.close();
      }
    },
  };
}

/** Register a connection its owner manages (and closes) as the shared one for its URL. */
export function shareAmqpConnection(connection: AmqpConnection): () => void {
  const url = connection.options.url;
  const entry: SharedEntry = { connection, users: 0, owned: true };
  shared.set(url, entry);
  return () => {
    if (shared.get(url) === entry) shared.delete(url);
  };
}
