import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Counter, Histogram, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../../runtime/context.ts';
import { FatalError, describeError } from '../../runtime/errors.ts';
import { GuardedFs } from '../../runtime/guarded-fs.ts';
import { HttpClient } from '../../runtime/http-client.ts';
import { createLogger } from '../../runtime/log.ts';
import { Permissions } from '../../runtime/permissions.ts';
import type { Sink, SinkWriteContext } from '../../runtime/pipeline.ts';
import { prometheus } from '../../sinks/prometheus.ts';

let dir: string;
const clients: HttpClient[] = [];
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-prom-sink-'));
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await rm(dir, { recursive: true, force: true });
});

function runContext(registry: Registry, pipeline = 'cvmfs', warnings: string[] = []): RunContext {
  const permissions = new Permissions({ read: [dir], write: [dir] });
  const http = new HttpClient(permissions);
  clients.push(http);
  return {
    runId: `run-${Math.random().toString(36).slice(2)}`,
    pipeline,
    signal: new AbortController().signal,
    permissions,
    fs: new GuardedFs(permissions),
    http,
    log: createLogger({ level: 'warn', write: (line) => warnings.push(line) }),
    stateDir: path.join(dir, '.sluice'),
    metrics: registry,
    store: () => Promise.reject(new Error('no ClickHouse store in this test')),
  };
}

const writeCtx: SinkWriteContext = { signal: new AbortController().signal, itemIds: ['item-1'], attempt: 1 };

/** One run of `sink`: open, write each batch, close with `status`. */
async function run<R>(sink: Sink<R>, ctx: RunContext, batches: R[][], status: 'succeeded' | 'failed' = 'succeeded') {
  await sink.open?.(ctx);
  for (const batch of batches) await sink.write(batch, writeCtx);
  await sink.close?.({ status });
}

interface Repo { repo: string; server: string; revision: number }

function revisions(resetEachRun = false, name?: string) {
  return prometheus<Repo>({
    name,
    resetEachRun,
    metrics: {
      cvmfs_revision: { type: 'gauge', help: 'Repository revision', labels: ['server', 'repo'], value: (r) => r.revision },
      cvmfs_files_total: { type: 'counter', help: 'Files seen', labels: [], value: () => 1 },
    },
  });
}

async function text(registry: Registry, name: string): Promise<string> {
  return registry.getSingleMetricAsString(name);
}

describe('prometheus sink', () => {
  it('sets gauges and increases counters from records', async () => {
    const registry = new Registry();
    const sink = revisions();
    expect(sink.kind).toBe('prometheus');
    await run(sink, runContext(registry), [
      [{ repo: 'atlas.cern.ch', server: 's1', revision: 10 }, { repo: 'cms.cern.ch', server: 's1', revision: 7 }],
      [{ repo: 'atlas.cern.ch', server: 's1', revision: 11 }],
    ]);
    const gauge = await text(registry, 'cvmfs_revision');
    expect(gauge).toContain('# HELP cvmfs_revision Repository revision');
    expect(gauge).toContain('# TYPE cvmfs_revision gauge');
    expect(gauge).toContain('cvmfs_revision{server="s1",repo="atlas.cern.ch"} 11');
    expect(gauge).toContain('cvmfs_revision{server="s1",repo="cms.cern.ch"} 7');
    expect(await text(registry, 'cvmfs_files_total')).toContain('cvmfs_files_total 3');
  });

  it('takes labels from labelsOf when given', async () => {
    const registry = new Registry();
    const sink = prometheus<{ serverName: string; bytes: number }>({
      metrics: {
        mirror_size_bytes: {
          type: 'gauge', help: 'Mirror size', labels: ['server_name'],
          labelsOf: (r) => ({ server_name: r.serverName.toLowerCase() }), value: (r) => r.bytes,
        },
      },
    });
    await run(sink, runContext(registry), [[{ serverName: 'EU-1', bytes: 1024 }]]);
    expect(await text(registry, 'mirror_size_bytes')).toContain('mirror_size_bytes{server_name="eu-1"} 1024');
  });

  it('keeps counting across runs in one process, reusing the registered metrics', async () => {
    const registry = new Registry();
    await run(revisions(), runContext(registry), [[{ repo: 'a', server: 's', revision: 1 }]]);
    await run(revisions(), runContext(registry), [[{ repo: 'a', server: 's', revision: 2 }, { repo: 'b', server: 's', revision: 3 }]]);
    expect(await text(registry, 'cvmfs_files_total')).toContain('cvmfs_files_total 3');
    expect(await text(registry, 'cvmfs_revision')).toContain('cvmfs_revision{server="s",repo="a"} 2');
  });

  it('with resetEachRun, drops a series that vanished on a successful run, and only then', async () => {
    const registry = new Registry();
    const all = [
      { repo: 'atlas', server: 's1', revision: 1 },
      { repo: 'gone', server: 's1', revision: 5 },
    ];
    await run(revisions(true), runContext(registry), [all]);
    expect(await text(registry, 'cvmfs_revision')).toContain('repo="gone"');

    // a failed run that did not see "gone" must not drop it
    await run(revisions(true), runContext(registry), [[{ repo: 'atlas', server: 's1', revision: 2 }]], 'failed');
    expect(await text(registry, 'cvmfs_revision')).toContain('cvmfs_revision{server="s1",repo="gone"} 5');

    // a successful run without it drops it
    await run(revisions(true), runContext(registry), [[{ repo: 'atlas', server: 's1', revision: 3 }]]);
    const after = await text(registry, 'cvmfs_revision');
    expect(after).not.toContain('repo="gone"');
    expect(after).toContain('cvmfs_revision{server="s1",repo="atlas"} 3');
  });

  it('with resetEachRun, leaves alone the series other pipelines or sinks wrote', async () => {
    const registry = new Registry();
    await run(revisions(true), runContext(registry, 'other'), [[{ repo: 'theirs', server: 's9', revision: 9 }]]);
    await run(revisions(true, 'revisions-s1'), runContext(registry), [[{ repo: 'old', server: 's1', revision: 1 }]]);
    await run(revisions(true, 'revisions-s2'), runContext(registry), [[{ repo: 'x', server: 's2', revision: 2 }]]);
    await run(revisions(true, 'revisions-s1'), runContext(registry), [[{ repo: 'new', server: 's1', revision: 1 }]]);
    const after = await text(registry, 'cvmfs_revision');
    expect(after).toContain('repo="theirs"');
    expect(after).toContain('repo="x"');
    expect(after).toContain('repo="new"');
    expect(after).not.toContain('repo="old"');
  });

  it('writes "" for a missing label, counts it, and does not fail the batch', async () => {
    const registry = new Registry();
    const warnings: string[] = [];
    const records = [
      { repo: 'atlas', revision: 4 } as unknown as Repo,
      { repo: 'cms', server: 's1', revision: 5 },
    ];
    await run(revisions(), runContext(registry, 'cvmfs', warnings), [records]);
    const gauge = await text(registry, 'cvmfs_revision');
    expect(gauge).toContain('cvmfs_revision{server="",repo="atlas"} 4');
    expect(gauge).toContain('cvmfs_revision{server="s1",repo="cms"} 5');
    expect(await text(registry, 'sluice_prometheus_sink_missing_labels_total')).toContain(
      'sluice_prometheus_sink_missing_labels_total{pipeline="cvmfs",component_id="prometheus",metric="cvmfs_revision",label="server"} 1',
    );
    expect(warnings.join('\n')).toMatch(/no value for label server of cvmfs_revision/);
  });

  it('allows NaN and ±Inf in gauges', async () => {
    const registry = new Registry();
    await run(revisions(), runContext(registry), [[
      { repo: 'nan', server: 's', revision: Number.NaN },
      { repo: 'inf', server: 's', revision: Number.POSITIVE_INFINITY },
      { repo: 'ninf', server: 's', revision: Number.NEGATIVE_INFINITY },
    ]]);
    const gauge = await text(registry, 'cvmfs_revision');
    expect(gauge).toContain('cvmfs_revision{server="s",repo="inf"} +Inf');
    expect(gauge).toContain('cvmfs_revision{server="s",repo="ninf"} -Inf');
    expect(gauge).toMatch(/cvmfs_revision\{server="s",repo="nan"\} NaN/i);
  });

  it('skips and counts values it cannot use, keeping the rest of the batch', async () => {
    const registry = new Registry();
    const sink = prometheus<{ n: number; kind: string }>({
      metrics: {
        objects_total: { type: 'counter', help: 'Objects', labels: ['kind'], value: (r) => r.n },
        object_size_bytes: {
          type: 'gauge', help: 'Size', labels: ['kind'],
          value: (r) => { if (r.kind === 'boom') throw new Error('no size'); return r.n; },
        },
      },
    });
    await run(sink, runContext(registry), [[
      { n: 2, kind: 'a' }, { n: -1, kind: 'b' }, { n: Number.NaN, kind: 'c' },
      { n: 'x' as unknown as number, kind: 'd' }, { n: 1, kind: 'boom' }, { n: 3, kind: 'a' },
    ]]);
    const counter = await text(registry, 'objects_total');
    expect(counter).toContain('objects_total{kind="a"} 5');
    expect(counter).not.toContain('kind="b"');
    expect(counter).not.toContain('kind="c"');
    const invalid = await text(registry, 'sluice_prometheus_sink_invalid_values_total');
    // counter: -1, NaN and 'x' are refused; gauge: 'x' and the throwing value function
    expect(invalid).toContain('{pipeline="cvmfs",component_id="prometheus",metric="objects_total"} 3');
    expect(invalid).toContain('{pipeline="cvmfs",component_id="prometheus",metric="object_size_bytes"} 2');
    expect(await text(registry, 'object_size_bytes')).toContain('object_size_bytes{kind="b"} -1');
  });

  it('refuses bad metric names and labels when the sink is defined, naming the metric', () => {
    type R = { a: string; b: string; fooBar: string; n: number };
    const define = (metrics: Parameters<typeof prometheus<R>>[0]['metrics']) => () => prometheus<R>({ metrics });
    const gauge = { type: 'gauge', help: 'h', labels: [], value: () => 1 } as const;
    const counter = { type: 'counter', help: 'h', labels: [], value: () => 1 } as const;
    const failure = (fn: () => unknown): string => {
      try {
        fn();
      } catch (err) {
        return describeError(err);
      }
      return 'did not throw';
    };

    expect(define({ '1bad': gauge })).toThrow(FatalError);
    // the message names the metric and the problem; describeError adds what to do
    expect(failure(define({ '1bad': gauge }))).toMatch(/metric "1bad" is not a valid Prometheus metric name/);
    expect(failure(define({ 'bad-name': gauge }))).toMatch(/"bad-name" is not a valid/);
    expect(failure(define({ 'a:b': gauge }))).toMatch(/"a:b" contains ":"/);
    expect(failure(define({ files: counter }))).toMatch(/"files" is a counter without the "_total" suffix/);
    expect(failure(define({ files_total: gauge }))).toMatch(/"files_total" is a gauge with the "_total" suffix/);
    expect(failure(define({ fileCount: gauge }))).toMatch(/"fileCount" is camelCase/);
    expect(failure(define({ latency_milliseconds: gauge }))).toMatch(/"latency_milliseconds" uses the unit "milliseconds" \(use the base unit "seconds"/);
    expect(failure(define({ latency_ms: gauge }))).toMatch(/abbreviated unit "ms"/);
    expect(failure(define({ queue_gauge: gauge }))).toMatch(/includes its type "gauge"/);
    expect(failure(define({ x_count: gauge }))).toMatch(/"x_count" ends in "_count"/);
    expect(failure(define({ x: { ...gauge, help: ' ' } }))).toMatch(/"x" has no help text/);
    expect(failure(define({ x: { ...gauge, labels: ['fooBar'] } }))).toMatch(/"x" has the camelCase label "fooBar".*labelsOf/s);
    expect(failure(define({ x: { ...gauge, labels: ['a', 'a'] } }))).toMatch(/"x" lists the label "a" twice/);
    expect(failure(define({ x: { type: 'gauge', help: 'h', labels: ['__x'], labelsOf: () => ({}), value: () => 1 } }))).toMatch(/"x" has the label "__x"/);
    expect(failure(define({ x: { type: 'gauge', help: 'h', labels: ['le'], labelsOf: () => ({}), value: () => 1 } }))).toMatch(/reserved for histograms/);
    expect(failure(define({ x: { type: 'gauge', help: 'h', labels: ['bad-label'], labelsOf: () => ({}), value: () => 1 } }))).toMatch(/invalid label name "bad-label"/);
    expect(() => prometheus<R>({ metrics: {} })).toThrow(/no metrics declared/);
    expect(define({ ok_metric: { ...gauge, labels: ['a', 'b'] } })).not.toThrow();
  });

  it('refuses, on open, a metric already registered with another type or other labels', async () => {
    const registry = new Registry();
    await run(revisions(), runContext(registry), [[{ repo: 'a', server: 's', revision: 1 }]]);

    const otherLabels = prometheus<Repo>({
      metrics: { cvmfs_revision: { type: 'gauge', help: 'Repository revision', labels: ['repo'], value: (r) => r.revision } },
    });
    await expect(Promise.resolve().then(() => otherLabels.open?.(runContext(registry)))).rejects.toThrow(
      /metric "cvmfs_revision" is already registered with labels \[server, repo\], not \[repo\]/,
    );

    const registry2 = new Registry();
    new Counter({ name: 'repo_size_bytes', help: 'h', labelNames: ['repo'], registers: [registry2] });
    new Histogram({ name: 'repo_latency_seconds', help: 'h', labelNames: ['repo'], registers: [registry2] });
    const asGauge = prometheus<Repo>({
      metrics: { repo_size_bytes: { type: 'gauge', help: 'h', labels: ['repo'], value: (r) => r.revision } },
    });
    await expect(Promise.resolve().then(() => asGauge.open?.(runContext(registry2)))).rejects.toThrow(
      /metric "repo_size_bytes" is already registered as a counter, not a gauge/,
    );
    const overHistogram = prometheus<Repo>({
      metrics: { repo_latency_seconds: { type: 'gauge', help: 'h', labels: ['repo'], value: (r) => r.revision } },
    });
    await expect(Promise.resolve().then(() => overHistogram.open?.(runContext(registry2)))).rejects.toThrow(
      /metric "repo_latency_seconds" is already registered as a histogram, not a gauge/,
    );
  });

  it('rejects a label that is not a field of the record at compile time', () => {
    // @ts-expect-error 'missing' is not a key of Repo
    const make = () => prometheus<Repo>({ metrics: { m: { type: 'gauge', help: 'h', labels: ['missing'], value: () => 1 } } });
    expect(make).toBeTypeOf('function');
    // without a type argument, R comes from where the sink goes
    const sinks: ReadonlyArray<Sink<Repo>> = [
      prometheus({ metrics: { cvmfs_revision: { type: 'gauge', help: 'h', labels: ['repo'], value: (r) => r.revision } } }),
    ];
    expect(sinks).toHaveLength(1);
  });
});
