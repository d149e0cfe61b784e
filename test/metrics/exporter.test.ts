import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../../runtime/context.ts';
import { EngineMetrics } from '../../runtime/engine-metrics.ts';
import { describeError } from '../../runtime/errors.ts';
import { GuardedFs } from '../../runtime/guarded-fs.ts';
import { HttpClient } from '../../runtime/http-client.ts';
import { createLogger } from '../../runtime/log.ts';
import { serveMetrics, writeMetricsTextfile } from '../../runtime/metrics-exporter.ts';
import { Permissions } from '../../runtime/permissions.ts';
import { prometheus } from '../../sinks/prometheus.ts';

let dir: string;
let http: HttpClient;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-metrics-'));
});
afterAll(async () => {
  await http?.close();
  await rm(dir, { recursive: true, force: true });
});

function runContext(registry: Registry): RunContext {
  const permissions = new Permissions({ read: [dir], write: [dir] });
  http ??= new HttpClient(permissions);
  return {
    runId: 'run-1',
    pipeline: 'cvmfs',
    signal: new AbortController().signal,
    permissions,
    fs: new GuardedFs(permissions),
    http,
    log: createLogger({ level: 'silent' }),
    stateDir: path.join(dir, '.sluice'),
    metrics: registry,
    store: () => Promise.reject(new Error('no ClickHouse store in this test')),
  };
}

interface Repo { repo: string; server: string; revision: number }

/** A registry as after one run of a pipeline: engine metrics plus the data metrics of a prometheus sink. */
async function populated(): Promise<{ registry: Registry; ctx: RunContext }> {
  const registry = new Registry();
  const ctx = runContext(registry);
  const engine = new EngineMetrics(registry, 'cvmfs');
  const sink = prometheus<Repo>({
    name: 'revisions',
    metrics: {
      cvmfs_revision: { type: 'gauge', help: 'Repository revision', labels: ['server', 'repo'], value: (r) => r.revision },
      cvmfs_repositories_total: { type: 'counter', help: 'Repositories seen', labels: ['server'], value: () => 1 },
    },
  });
  await sink.open?.(ctx);
  const records: Repo[] = [
    { repo: 'atlas.cern.ch', server: 'stratum1.example.org', revision: 4711 },
    { repo: 'cms.cern.ch', server: 'stratum1.example.org', revision: 93 },
    { repo: 'broken "quoted"\\repo', server: 'stratum1.example.org', revision: Number.NaN },
  ];
  engine.itemReceived(2048);
  engine.itemReceived(1024);
  engine.setInFlight(2);
  engine.recordsEmitted(records.length);
  await sink.write(records, { signal: ctx.signal, itemIds: ['a', 'b'], attempt: 1 });
  engine.sinkSent(sink.name, sink.kind, records.length, 300);
  engine.discarded('transform', 'transform', 1, 'filtered');
  engine.error('source', 'source', 'transient');
  engine.itemDone(0.042);
  engine.itemDone(1.5);
  engine.setInFlight(0);
  await sink.close?.({ status: 'succeeded' });
  engine.runFinished(3.25, 'succeeded');
  return { registry, ctx };
}

function promtoolCheck(file: string): { status: number | null; stdout: string; stderr: string } {
  const fd = openSync(file, 'r');
  try {
    const result = spawnSync('promtool', ['check', 'metrics'], { stdio: [fd, 'pipe', 'pipe'], encoding: 'utf8' });
    if (result.error) {
      throw new Error(`cannot run promtool (${result.error.message}): install it with apt-get install prometheus`);
    }
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  } finally {
    closeSync(fd);
  }
}

describe('serveMetrics', () => {
  it('serves the registry on GET /metrics with its content type, and 404 elsewhere', async () => {
    const { registry } = await populated();
    const server = await serveMetrics(registry, { port: 0 });
    try {
      expect(server.port).toBeGreaterThan(0);
      const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(registry.contentType);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const body = await res.text();
      expect(body).toContain('# TYPE cvmfs_revision gauge');
      expect(body).toContain('cvmfs_revision{server="stratum1.example.org",repo="atlas.cern.ch"} 4711');
      expect(body).toContain('cvmfs_repositories_total{server="stratum1.example.org"} 3');
      expect(body).toContain('cvmfs_revision{server="stratum1.example.org",repo="broken \\"quoted\\"\\\\repo"} NaN\n');
      expect(body).toContain(
        'sluice_component_received_bytes_total{pipeline="cvmfs",component_id="source",component_kind="source"} 3072',
      );
      expect(body).toContain(
        'sluice_component_sent_events_total{pipeline="cvmfs",component_id="revisions",component_kind="sink",component_type="prometheus"} 3',
      );
      expect(body).toContain('sluice_runs_total{pipeline="cvmfs",status="succeeded"} 1');
      expect(body).toContain('sluice_run_duration_seconds{pipeline="cvmfs"} 3.25');
      expect(body).toContain('sluice_item_latency_seconds_bucket{le="0.05",pipeline="cvmfs"} 1');

      // the page follows the registry: a later change shows on the next scrape
      new EngineMetrics(registry, 'cvmfs').runFinished(1, 'failed');
      expect(await (await fetch(`http://127.0.0.1:${server.port}/metrics?x=1`)).text())
        .toContain('sluice_runs_total{pipeline="cvmfs",status="failed"} 1');

      const notFound = await fetch(`http://127.0.0.1:${server.port}/`);
      expect(notFound.status).toBe(404);
      await notFound.text();
      const post = await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: 'POST' });
      expect(post.status).toBe(405);
      await post.text();
    } finally {
      await server.close();
    }
    await expect(fetch(`http://127.0.0.1:${server.port}/metrics`)).rejects.toThrow();
    await server.close(); // twice is fine
  });

  it('stops when its signal is aborted', async () => {
    const controller = new AbortController();
    const server = await serveMetrics(new Registry(), { port: 0, signal: controller.signal });
    expect((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(200);
    controller.abort();
    await server.close();
    await expect(fetch(`http://127.0.0.1:${server.port}/metrics`)).rejects.toThrow();
  });

  it('says which address is taken when it cannot listen', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const err = await serveMetrics(new Registry(), { port }).then(() => undefined, (e: unknown) => e);
      expect(describeError(err)).toMatch(new RegExp(`cannot serve metrics on 127\\.0\\.0\\.1:${port}: EADDRINUSE \\(another process`));
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});

describe('writeMetricsTextfile', () => {
  it('writes a file promtool accepts without a lint warning, leaving no temp file', async () => {
    const { registry, ctx } = await populated();
    const file = path.join(dir, 'textfile', 'sluice_cvmfs.prom');
    await writeMetricsTextfile(registry, file, ctx.fs);

    const content = await readFile(file, 'utf8');
    expect(content).toBe((await (async () => {
      const server = await serveMetrics(registry, { port: 0 });
      try {
        return (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
      } finally {
        await server.close();
      }
    })()));
    expect(content).toContain('cvmfs_revision{server="stratum1.example.org",repo="cms.cern.ch"} 93');
    expect(content).toMatch(/^cvmfs_revision\{[^\n]*\} NaN$/m);
    expect(content).not.toMatch(/ Nan$/m);
    expect(await readdir(path.dirname(file))).toEqual(['sluice_cvmfs.prom']);

    const check = promtoolCheck(file);
    expect({ status: check.status, stdout: check.stdout, stderr: check.stderr }).toEqual({ status: 0, stdout: '', stderr: '' });
  });

  it('promtool does flag a bad exposition (the check above can fail)', async () => {
    const file = path.join(dir, 'bad.prom');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, '# HELP files x\n# TYPE files counter\nfiles 1\n');
    const check = promtoolCheck(file);
    expect(check.status).not.toBe(0);
    expect(check.stdout + check.stderr).toMatch(/counter metrics should have "_total" suffix/);
  });

  it('replaces the previous file whole', async () => {
    const { registry, ctx } = await populated();
    const file = path.join(dir, 'replace', 'sluice.prom');
    await writeMetricsTextfile(new Registry(), file, ctx.fs);
    expect(await readFile(file, 'utf8')).toBe('\n');
    await writeMetricsTextfile(registry, file, ctx.fs);
    expect(await readFile(file, 'utf8')).toContain('sluice_runs_total{pipeline="cvmfs",status="succeeded"} 1');
    expect(await readdir(path.dirname(file))).toEqual(['sluice.prom']);
  });

  it('refuses a path node_exporter would ignore, and a path outside the write permission', async () => {
    const { registry, ctx } = await populated();
    await expect(writeMetricsTextfile(registry, path.join(dir, 'metrics.txt'), ctx.fs)).rejects.toThrow(/does not end in \.prom/);
    await expect(writeMetricsTextfile(registry, path.join(os.tmpdir(), 'elsewhere.prom'), ctx.fs)).rejects.toThrow(/not allowed/);
  });
});
