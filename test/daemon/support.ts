/**
 * Helpers for the daemon tests: daemons and `fire` as child processes (the real CLI),
 * the broker (unique names per test, deleted afterwards: other suites share it) and
 * the test ClickHouse server (a database per test).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import amqp, { type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { openServerStore } from '../../runtime/clickhouse/server-store.ts';
import { quoteIdentifier, type ClickHouseStore } from '../../runtime/clickhouse/store.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const PIPELINES = path.join(ROOT, 'test/pipelines/daemon');
export const AMQP_URL = process.env.SLUICE_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function clickhouseUrl(): string {
  const fromEnv = process.env.SLUICE_TEST_CLICKHOUSE_URL;
  if (fromEnv) return fromEnv;
  const file = path.join(ROOT, '.sluice', 'services', 'env');
  const m = /^SLUICE_TEST_CLICKHOUSE_URL=(.*)$/m.exec(readFileSync(file, 'utf8'));
  if (!m) throw new Error(`no SLUICE_TEST_CLICKHOUSE_URL in ${file}: run scripts/services.sh`);
  return m[1]!.trim();
}

export function randomId(): string {
  return randomBytes(4).toString('hex');
}

/** Names of one test's broker objects and database. */
export interface Names {
  id: string;
  exchange: string;
  queue: string;
  retry: string;
  dlx: string;
  dead: string;
  database: string;
}

export function names(tag = 'd'): Names {
  const id = `sluicetest-${tag}-${randomId()}`;
  return {
    id,
    exchange: `${id}.x`,
    queue: `${id}.q`,
    retry: `${id}.q.retry`,
    dlx: `${id}.q.dlx`,
    dead: `${id}.q.dead`,
    database: `sluice_test_${tag.replace(/\W/g, '_')}_${id.slice(-8)}`,
  };
}

/** The environment a daemon or `fire` of this test runs with (nothing inherited that could point elsewhere). */
export function baseEnv(n: Names, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('SLUICE_') && !k.startsWith('SLUICE_TEST_') && k !== 'SLUICE_SERVICES_DIR') continue;
    env[k] = v;
  }
  return {
    ...env,
    SLUICE_PIPELINES_DIR: PIPELINES,
    SLUICE_AMQP_URL: AMQP_URL,
    SLUICE_DAEMON_EXCHANGE: n.exchange,
    SLUICE_DAEMON_QUEUE: n.queue,
    SLUICE_DAEMON_HTTP_PORT: '0',
    SLUICE_CLICKHOUSE_URL: clickhouseUrl(),
    SLUICE_CLICKHOUSE_DATABASE: n.database,
    ...extra,
  };
}

export interface DaemonProcess {
  child: ChildProcess;
  /** stderr so far */
  log(): string;
  /** http://127.0.0.1:PORT of /metrics, /healthz, /query */
  url: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** resolves when the log matches (polling); rejects after timeoutMs */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): void;
}

/** Daemons this worker started: killed when it exits, so a failed test leaves none running (re-declaring its queues). */
const spawned = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** Start `sluice serve` and wait for "ready". */
export async function startDaemon(env: NodeJS.ProcessEnv, args: string[] = [], options: { expectFailure?: boolean; stateDir?: string } = {}): Promise<DaemonProcess> {
  const stateDir = options.stateDir ?? (await mkdtemp(path.join(os.tmpdir(), 'sluice-daemon-')));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), 'serve', '--state-dir', stateDir, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  spawned.add(child);
  child.once('close', () => spawned.delete(child));
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  child.stdout!.on('data', (d) => { stderr += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  let gone = false;
  void exited.then(() => { gone = true; });
  const waitFor = async (pattern: RegExp, timeoutMs = 60_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const m = pattern.exec(stderr);
      if (m) return m;
      if (gone) throw new Error(`the daemon exited before its log matched ${pattern}:\n${stderr}`);
      if (Date.now() > until) throw new Error(`the daemon's log did not match ${pattern} within ${timeoutMs} ms:\n${stderr}`);
      await sleep(50);
    }
  };
  const daemon: DaemonProcess = {
    child,
    log: () => stderr,
    url: '',
    exited,
    waitFor,
    kill: (signal = 'SIGTERM') => { child.kill(signal); },
  };
  if (options.expectFailure) return daemon;
  const m = await waitFor(/http (http:\/\/[^ ]+) /, 90_000);
  daemon.url = m[1]!;
  await waitFor(/^ready$/m, 90_000);
  return daemon;
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

/** Run the CLI (fire, query, pipeline …) to completion. */
export function cli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), ...args], { cwd: ROOT, env, timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** A plain amqplib connection for looking at and cleaning up the broker. */
export class Broker {
  private constructor(readonly model: ChannelModel, readonly channel: Channel) {}

  static async open(): Promise<Broker> {
    const model = await amqp.connect(AMQP_URL);
    model.on('error', () => undefined);
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    return new Broker(model, channel);
  }

  /** a fresh channel (an error such as a missing queue closes a channel) */
  async fresh(): Promise<Channel> {
    const ch = await this.model.createChannel();
    ch.on('error', () => undefined);
    return ch;
  }

  /** Every message in the queue, taken (acked). */
  async drain(queue: string): Promise<GetMessage[]> {
    const ch = await this.fresh();
    const out: GetMessage[] = [];
    try {
      for (;;) {
        const m = await ch.get(queue, { noAck: true });
        if (!m) break;
        out.push(m);
      }
    } finally {
      await ch.close().catch(() => undefined);
    }
    return out;
  }

  /** Wait until the queue holds at least `n` messages, then take them all. */
  async waitMessages(queue: string, n: number, timeoutMs = 60_000): Promise<GetMessage[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const count = await this.count(queue);
      if (count.messages >= n) return this.drain(queue);
      if (Date.now() > until) throw new Error(`queue ${queue} has ${count.messages} messages, not ${n}, after ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** ready messages and consumers (unacked ones are not counted: see unacked()) */
  async count(queue: string): Promise<{ messages: number; consumers: number }> {
    const ch = await this.fresh();
    try {
      const q = await ch.checkQueue(queue);
      return { messages: q.messageCount, consumers: q.consumerCount };
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  async publish(exchange: string, routingKey: string, body: string | Buffer, options: amqp.Options.Publish = {}): Promise<void> {
    const ch = await this.model.createConfirmChannel();
    ch.on('error', () => undefined);
    try {
      await new Promise<void>((resolve, reject) => {
        ch.publish(exchange, routingKey, Buffer.isBuffer(body) ? body : Buffer.from(body), { persistent: true, ...options }, (err: unknown) => (err ? reject(err) : resolve()));
      });
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** Publish many messages on one confirm channel and wait for all confirms. */
  async publishMany(exchange: string, messages: { routingKey: string; body: string; options?: amqp.Options.Publish }[]): Promise<void> {
    const ch = await this.model.createConfirmChannel();
    ch.on('error', () => undefined);
    try {
      for (const m of messages) {
        if (!ch.publish(exchange, m.routingKey, Buffer.from(m.body), { persistent: true, ...m.options })) await new Promise((r) => ch.once('drain', r));
      }
      await ch.waitForConfirms();
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** Delete a test's queues and exchanges (missing ones are fine). */
  async cleanup(n: Names, extra: { queues?: string[]; exchanges?: string[] } = {}): Promise<void> {
    for (const q of [n.queue, n.retry, n.dead, ...(extra.queues ?? [])]) {
      const ch = await this.fresh();
      await ch.deleteQueue(q).catch(() => undefined);
      await ch.close().catch(() => undefined);
    }
    for (const x of [n.exchange, n.dlx, ...(extra.exchanges ?? [])]) {
      const ch = await this.fresh();
      await ch.deleteExchange(x).catch(() => undefined);
      await ch.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.model.close().catch(() => undefined);
  }
}

/** rabbitmqctl, for what the AMQP protocol cannot do (drop a connection, count unacked). */
export function rabbitmqctl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('rabbitmqctl', ['-q', ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`rabbitmqctl ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(String(stdout));
    });
  });
}

/** messages (ready + unacked) of a queue, from the broker's own count. */
export async function queueTotals(queue: string): Promise<{ ready: number; unacked: number }> {
  const out = await rabbitmqctl(['list_queues', 'name', 'messages_ready', 'messages_unacknowledged']);
  for (const line of out.split('\n')) {
    const [name, ready, unacked] = line.trim().split(/\s+/);
    if (name === queue) return { ready: Number(ready), unacked: Number(unacked) };
  }
  throw new Error(`no queue ${queue} in rabbitmqctl list_queues`);
}

/** Messages unacknowledged on the channels of the daemon with this pid (read from the channels themselves, not sampled stats). */
export async function unackedOf(pid: number): Promise<number> {
  const conns = await rabbitmqctl(['list_connections', 'pid', 'client_properties']);
  const mine = new Set<string>();
  for (const line of conns.split('\n')) {
    if (!line.includes(`sluice daemon `) || !new RegExp(`:${pid}"`).test(line)) continue;
    const p = /^\s*(<[^>]+>)/.exec(line)?.[1];
    if (p) mine.add(p);
  }
  const channels = await rabbitmqctl(['list_channels', 'connection', 'messages_unacknowledged']);
  let total = 0;
  for (const line of channels.split('\n')) {
    const [conn, count] = line.trim().split(/\s+/);
    if (conn && mine.has(conn)) total += Number(count);
  }
  return total;
}

/** Close (server side) every connection whose client-provided name contains `needle`. */
export async function dropConnections(needle: string): Promise<number> {
  const out = await rabbitmqctl(['list_connections', 'pid', 'client_properties']);
  let n = 0;
  for (const line of out.split('\n')) {
    if (!line.includes(needle)) continue;
    const pid = /^\s*(<[^>]+>)/.exec(line)?.[1];
    if (!pid) continue;
    await rabbitmqctl(['close_connection', pid, 'sluice test: dropping the connection']);
    n++;
  }
  return n;
}

/** A store on the test server with the test's database (created), and a function that drops it. */
export async function testStore(n: Names): Promise<{ store: ClickHouseStore; drop: () => Promise<void> }> {
  const store = await openServerStore({ url: clickhouseUrl(), database: n.database });
  return {
    store,
    drop: async () => {
      await store.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(n.database)}`).catch(() => undefined);
      await store.close();
    },
  };
}

/** Header value as text (amqplib gives Buffers for some long strings). */
export function header(m: { properties: { headers?: Record<string, unknown> } }, name: string): unknown {
  const v = m.properties.headers?.[name];
  return Buffer.isBuffer(v) ? v.toString('utf8') : v;
}
