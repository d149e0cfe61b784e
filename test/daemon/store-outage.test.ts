/**
 * The store goes away (a TCP proxy in front of the ClickHouse server is cut): the run
 * that cannot be recorded is handed back, not dead-lettered; the daemon stops taking
 * messages and says so on /healthz; when the store answers again it consumes again and
 * the run succeeds.
 */
import net from 'node:net';
import { URL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseEnv, Broker, cli, clickhouseUrl, names, sleep, startDaemon, testStore, type DaemonProcess, type Names } from './support.ts';

/** A TCP proxy that can be cut (listener closed, every connection destroyed) and restored on the same port. */
class CuttableProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  constructor(private readonly target: { host: string; port: number }) {}

  async up(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  async cut(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server?.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

let n: Names;
let broker: Broker;
let dropDb: () => Promise<void>;
let proxy: CuttableProxy;
let daemon: DaemonProcess | undefined;

beforeAll(async () => {
  n = names('store-outage');
  broker = await Broker.open();
  ({ drop: dropDb } = await testStore(n));
  const target = new URL(clickhouseUrl());
  proxy = new CuttableProxy({ host: target.hostname, port: Number(target.port || 8123) });
  await proxy.up();
});

afterAll(async () => {
  if (daemon && daemon.child.exitCode === null) {
    daemon.kill('SIGTERM');
    await daemon.exited;
  }
  await proxy.cut().catch(() => undefined);
  await broker?.cleanup(n);
  await broker?.close();
  await dropDb?.();
}, 120_000);

describe('the store goes away mid-service', () => {
  it('hands the run back, stops consuming until the store answers, then runs it', async () => {
    const env = baseEnv(n, { SLUICE_CLICKHOUSE_URL: `http://127.0.0.1:${proxy.port}` });
    daemon = await startDaemon(env);
    const ok = await cli(['fire', 'flaky', '--param', 'items=1', '--wait'], env);
    expect(ok.code, ok.stderr).toBe(0);

    await proxy.cut();
    const id = `${n.id}-during-outage`;
    const fired = cli(['fire', 'flaky', '--param', 'items=1', '--id', id, '--wait', '--timeout', '300s'], env, 320_000);
    await daemon.waitFor(/the store is unreachable: not taking messages until it answers again/, 120_000);
    await daemon.waitFor(new RegExp(`flaky \\(trigger ${id}\\): the store is unreachable .*; handed back to the queue`));
    const health = await fetch(`${daemon.url}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'unhealthy', broker: 'connected, not consuming', store: expect.stringMatching(/^unreachable: /) });
    expect((await broker.count(n.queue)).messages).toBe(1); // kept, not consumed meanwhile
    expect((await broker.count(n.dead)).messages).toBe(0);

    await sleep(1000);
    await proxy.up();
    await daemon.waitFor(/the store answers again: consuming/, 120_000);
    const r = await fired;
    expect(r.code, `${r.stderr}\n${daemon.log()}`).toBe(0);
    expect(r.stderr).toMatch(/flaky succeeded/);
    expect((await fetch(`${daemon.url}/healthz`)).status).toBe(200);
    expect((await broker.count(n.dead)).messages).toBe(0);
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).toMatch(/^sluice_daemon_messages_total\{outcome="requeued",reason=""\} [1-9]\d*$/m); // once, or again if it was taken before the pause
    expect(metrics).toMatch(/^sluice_daemon_messages_total\{outcome="acked",reason=""\} 2$/m);
    daemon.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
  });
});
