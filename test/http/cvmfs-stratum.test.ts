import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pipeline from '../../pipelines/cvmfs-stratum.ts';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { createLogger } from '../../runtime/log.ts';
import { runPipeline } from '../../runtime/runner.ts';
import type { CvmfsServerScrape } from '../../sources/http/cvmfs/cvmfs.ts';
import { dateUtc, hash40, SIGNATURE, startStratum, type ModelRepo, type StratumModel } from '../servers/cvmfs-stratum.ts';
import type { FaultyServer } from '../servers/faulty-server.ts';

type Stratum = FaultyServer & { model: StratumModel };

const NOW = Math.floor(Date.now() / 1000);
const repo = (name: string, revision: number, extra: Partial<ModelRepo> = {}): ModelRepo => ({
  name,
  revision,
  timestamp: NOW - 3600,
  status: { last_snapshot: dateUtc(NOW - 600), last_gc: dateUtc(NOW - 86_400), last_check: dateUtc(NOW - 7200), check_status: 'succeeded' },
  ...extra,
});

let dir: string;
const servers: Stratum[] = [];

async function stratum(model: StratumModel): Promise<Stratum> {
  const s = await startStratum(model);
  servers.push(s);
  return s;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-cvmfs-'));
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

interface Scrape {
  status: string;
  snapshot: { scrapedAt: string; servers: CvmfsServerScrape[] };
  metrics: string;
  samples: Map<string, number>;
  record: Awaited<ReturnType<typeof runPipeline>>;
}

let runCount = 0;
async function scrape(params: Record<string, unknown>, registry = new Registry(), store?: ClickHouseStore): Promise<Scrape> {
  const snapshotPath = path.join(dir, `snapshot-${++runCount}.json`);
  const record = await runPipeline({
    pipeline,
    params: { geoapiOrder: [1, 2, 3], snapshot: snapshotPath, timeoutMs: 3000, history: store !== undefined, ...params },
    stateDir: path.join(dir, 'state'),
    ...(store ? { openStore: async () => store, keepStoreOpen: true } : {}),
    log: createLogger({ level: 'silent' }),
    registry,
  });
  let snapshot = { scrapedAt: '', servers: [] as CvmfsServerScrape[] };
  try {
    snapshot = JSON.parse(await readFile(snapshotPath, 'utf8'));
  } catch {
    // no snapshot: the run failed
  }
  const metrics = await registry.metrics();
  const samples = new Map<string, number>();
  for (const line of metrics.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { status: record.status, snapshot, metrics, samples, record };
}

const server = (s: Scrape, label: string) => s.snapshot.servers.find((x) => x.server === label)!;

describe('a full scrape', () => {
  let s0: Stratum;
  let s1: Stratum;
  let s3: Stratum;
  let result: Scrape;

  beforeAll(async () => {
    s0 = await stratum({ type: 0, versions: true, meta: { administrator: 'Ada', email: 'ada@example.org', organisation: 'Example', custom: { site: 'x' } },
      repos: [repo('b.example.org', 20), repo('a.example.org', 10, { status: { last_gc: dateUtc(NOW - 100) } }), repo('c.example.org', 30), repo('ignored.example.org', 5)] });
    s1 = await stratum({ type: 1, geo: '2,1,3', repos: [
      repo('c.example.org', 30, { extraLines: ['Lmicro', 'Ztip-one', 'Ztip-two', 'Qsomething-new'] }),
      repo('a.example.org', 10),
      repo('b.example.org', 18, { status: undefined }),
      repo('ignored.example.org', 5),
      repo('forced-ignored.example.org', 2),
    ] });
    s3 = await stratum({ type: 1, s3: 404, repos: [repo('a.example.org', 9)] });
    result = await scrape({
      stratum0: [s0.hostPort],
      stratum1: [s1.hostPort, s3.hostPort],
      ignoreRepos: ['ignored.example.org', 'forced-ignored.example.org'],
      repos: ['forced-ignored.example.org', 'a.example.org'],
    });
  });

  it('succeeds and snapshots servers → repositories (sorted by name) → fields', () => {
    expect(result.status).toBe('succeeded');
    expect(result.snapshot.servers.map((x) => [x.server, x.serverType, x.backend, x.ok])).toEqual([
      [s0.hostPort, 0, 'cvmfs', true],
      [s1.hostPort, 1, 'cvmfs', true],
      [s3.hostPort, 1, 's3', true],
    ].sort((a, b) => (a[1] as number) - (b[1] as number) || String(a[0]).localeCompare(String(b[0]))));
    const one = server(result, s1.hostPort);
    // ignored is left out; forced beats ignored
    expect(one.repositories.map((r) => r.name)).toEqual(['a.example.org', 'b.example.org', 'c.example.org', 'forced-ignored.example.org']);
    const c = one.repositories.find((r) => r.name === 'c.example.org')!;
    expect(c.manifest).toMatchObject({ revision: 30, microCatalogs: 'micro', channelTips: ['tip-one', 'tip-two'], rootCatalogHash: hash40('c.example.org/30/catalog') });
    expect(c.manifest!.fields.Q).toBe('something-new');
    expect(Buffer.from(c.manifest!.signature, 'base64')).toEqual(SIGNATURE);
    expect(c.status!.lastSnapshot!.unix).toBe(NOW - 600);
    expect(c.status!.checkStatus).toBe('succeeded');
    // a repository without a status file is fine: status null, no error
    const b = one.repositories.find((r) => r.name === 'b.example.org')!;
    expect(b.status).toBeNull();
    expect(b.errors).toEqual([]);
    expect(b.revisionDifference).toBe(2);
    expect(one.index?.lastGeodbUpdate?.unix).toBe(1_699_000_000);
  });

  it('keeps the index fields and meta.json of a Stratum 0, and marks a missing meta.json as null', () => {
    const zero = server(result, s0.hostPort);
    expect(zero.index).toMatchObject({ schema: 1, cvmfsVersion: '2.11.2', osId: 'rhel', osVersionId: '9' });
    expect(zero.meta).toEqual({ administrator: 'Ada', email: 'ada@example.org', organisation: 'Example', custom: { site: 'x' } });
    expect(server(result, s1.hostPort).meta).toBeNull();
    // a forced repository is asked for on every server, listed or not
    expect(zero.repositories.map((r) => [r.name, r.listed, r.ok])).toEqual([
      ['a.example.org', true, true], ['b.example.org', true, true], ['c.example.org', true, true], ['forced-ignored.example.org', false, false],
    ]);
  });

  it('an S3-backed Stratum 1 (404 on repositories.json) gets its forced repositories scraped', () => {
    const s3Result = server(result, s3.hostPort);
    expect(s3Result.repositories.map((r) => [r.name, r.ok])).toEqual([['a.example.org', true], ['forced-ignored.example.org', false]]);
    expect(s3Result.repositories[0]!.revisionDifference).toBe(1);
    expect(s3Result.repositories[1]!.errors[0]!.message).toContain(`${s3.origin}/cvmfs/forced-ignored.example.org/.cvmfspublished: status: HTTP 404`);
  });

  it('GeoAPI: Stratum 0 not asked (0), wrong order → 1, with the first repository by name', () => {
    expect(server(result, s0.hostPort).geoapi.status).toBe(0);
    const geo = server(result, s1.hostPort).geoapi;
    expect(geo).toMatchObject({ status: 1, repository: 'a.example.org', answer: [2, 1, 3], expected: [1, 2, 3] });
    expect(s1.requests.some((r) => r.path === '/cvmfs/a.example.org/api/v1.0/geo/x/cvmfs-s1fnal.opensciencegrid.org,cvmfs-stratum-one.cern.ch,cvmfs-stratum-one.ihep.ac.cn')).toBe(true);
    expect(s0.hits('/api/v1.0/geo/')).toBe(0);
  });

  it('exports the old exporter\'s metric names and labels', () => {
    const m = result.samples;
    const one = s1.hostPort;
    const zero = s0.hostPort;
    expect(m.get(`server_type{server="${zero}"}`)).toBe(0);
    expect(m.get(`server_type{server="${one}"}`)).toBe(1);
    expect(m.get(`server_geoapi_status{server="${one}"}`)).toBe(1);
    expect(m.get(`repo_revision{server="${one}",repository="b.example.org"}`)).toBe(18);
    expect(m.get(`repo_revision_difference{server="${one}",repository="b.example.org"}`)).toBe(2);
    expect(m.get(`repo_revision_difference{server="${zero}",repository="b.example.org"}`)).toBe(0);
    expect(m.get(`repo_revision_timestamp{server="${one}",repository="c.example.org"}`)).toBe(NOW - 3600);
    expect(m.get(`repo_snapshot{server="${one}",repository="c.example.org"}`)).toBe(NOW - 600);
    expect(m.get(`repo_last_gc{server="${one}",repository="c.example.org"}`)).toBe(NOW - 86_400);
    expect(m.get(`repo_root_size{server="${one}",repository="c.example.org"}`)).toBe(43008);
    expect(m.get(`repo_root_catalogue_ttl{server="${one}",repository="c.example.org"}`)).toBe(240);
    expect(m.get(`repo_snapshot_age_seconds{server="${one}",repository="c.example.org"}`)).toBeGreaterThanOrEqual(600);
    // Stratum 0 has no snapshot series; a repository without a status file has no gc series
    expect(m.has(`repo_snapshot{server="${zero}",repository="c.example.org"}`)).toBe(false);
    expect(m.has(`repo_last_gc{server="${one}",repository="b.example.org"}`)).toBe(false);
    expect(m.get(`repo_up{server="${s3.hostPort}",repository="forced-ignored.example.org"}`)).toBe(0);
    expect(m.get(`server_up{server="${one}"}`)).toBe(1);
    expect(m.get(`server_last_success_timestamp_seconds{server="${one}"}`)).toBeGreaterThanOrEqual(NOW);
    expect(m.get(`sluice_http_client_requests_total{host="${one}",method="GET",status="200"}`)).toBeGreaterThan(5);
  });

  it('the Grafana dashboard only queries metrics the scrape exports', async () => {
    const dashboard = JSON.parse(await readFile(path.resolve(import.meta.dirname, '../../dashboards/cvmfs-stratum.json'), 'utf8')) as {
      panels: { targets?: { expr: string }[] }[];
      templating: { list: { query?: { query: string } | string }[] };
    };
    const exprs = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dashboard.templating.list.map((v) => (typeof v.query === 'object' ? v.query.query : '')),
    ];
    const used = new Set(exprs.map((e) => e.replace(/\b(by|without)\s*\([^)]*\)/g, '')).flatMap((e) => [...e.matchAll(/([a-z_:][a-z0-9_:]*)\s*[{[,]/g)].map((m) => m[1]!)).filter((n) => !['by', 'label_values'].includes(n)));
    expect(used.size).toBeGreaterThan(12);
    const exported = new Set([...result.samples.keys()].map((k) => k.replace(/\{.*$/, '')));
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
  });

  it('the exposition passes promtool check metrics', async () => {
    const file = path.join(dir, 'cvmfs.prom');
    await writeFile(file, result.metrics.replace(/^([^#\n][^\n]*) Nan$/gm, '$1 NaN'));
    const check = spawnSync('sh', ['-c', `promtool check metrics < ${JSON.stringify(file)}`], { encoding: 'utf8' });
    if (check.error) throw new Error(`cannot run promtool: ${check.error.message}`);
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
  });
});

describe('failures stay where they happen', () => {
  it('one failing repository never sinks its server; errors name the URL', async () => {
    const s1 = await stratum({ type: 1, repos: [repo('good.example.org', 3), repo('broken.example.org', 4), repo('bigger.example.org', 5), repo('garbled.example.org', 6, { manifestBody: Buffer.from('<html>oops</html>') })] });
    s1.fault('/broken.example.org/.cvmfspublished', { kind: 'status', status: 500 });
    s1.fault('/bigger.example.org/.cvmfspublished', { kind: 'oversize', bytes: 200_000 });
    s1.fault('/good.example.org/.cvmfs_status.json', { kind: 'truncate' });
    const r = await scrape({ stratum1: [s1.hostPort] });
    expect(r.status).toBe('succeeded');
    const srv = server(r, s1.hostPort);
    expect(srv.ok).toBe(true);
    const by = Object.fromEntries(srv.repositories.map((x) => [x.name, x]));
    expect(by['good.example.org']!.ok).toBe(true);
    expect(by['good.example.org']!.manifest!.revision).toBe(3);
    expect(by['good.example.org']!.errors[0]!.message).toContain(`${s1.origin}/cvmfs/good.example.org/.cvmfs_status.json: body:`);
    expect(by['broken.example.org']!.errors[0]).toMatchObject({ phase: 'status', status: 500, kind: 'permanent' });
    expect(by['broken.example.org']!.errors[0]!.message).toContain(`${s1.origin}/cvmfs/broken.example.org/.cvmfspublished`);
    expect(by['bigger.example.org']!.errors[0]!.message).toContain('over the 65536-byte cap for manifest');
    expect(by['garbled.example.org']!.errors[0]!.message).toContain('garbled.example.org/.cvmfspublished: manifest lacks the required fields C, R, D, S');
    expect(r.samples.get(`repo_up{server="${s1.hostPort}",repository="broken.example.org"}`)).toBe(0);
    expect(r.samples.get(`repo_revision{server="${s1.hostPort}",repository="good.example.org"}`)).toBe(3);
    expect(r.samples.has(`repo_revision{server="${s1.hostPort}",repository="broken.example.org"}`)).toBe(false);
    // a 500 is permanent: tried once
    expect(s1.hits('/broken.example.org/.cvmfspublished')).toBe(1);
  });

  it('a 503 with Retry-After is retried; a server that stays down or answers garbage fails alone', async () => {
    const flaky = await stratum({ type: 1, repos: [repo('a.example.org', 1)] });
    flaky.fault('/a.example.org/.cvmfspublished', { kind: 'status', status: 503, retryAfter: '0' }, 1);
    const garbage = await stratum({ type: 1, repos: [repo('a.example.org', 1)] });
    garbage.fault('repositories.json', { kind: 'invalid-json' });
    const portal = await stratum({ type: 1, repos: [repo('a.example.org', 1)] });
    portal.fault('repositories.json', { kind: 'html' });
    const hanging = await stratum({ type: 1, repos: [repo('a.example.org', 1)] });
    hanging.fault('repositories.json', { kind: 'hang' });
    const r = await scrape({ stratum1: [flaky.hostPort, garbage.hostPort, portal.hostPort, hanging.hostPort], timeoutMs: 500 });
    expect(r.status).toBe('succeeded');
    expect(server(r, flaky.hostPort).repositories[0]!.ok).toBe(true);
    expect(flaky.hits('/a.example.org/.cvmfspublished')).toBe(2);
    const g = server(r, garbage.hostPort);
    expect(g.ok).toBe(false);
    expect(g.errors[0]!.message).toContain(`${garbage.origin}/cvmfs/info/v1/repositories.json: invalid JSON`);
    expect(g.geoapi.status).toBe(99);
    expect(server(r, portal.hostPort).errors[0]!.message).toContain('expected JSON but the server sent text/html');
    const h = server(r, hanging.hostPort);
    expect(h.errors[0]).toMatchObject({ phase: 'headers', kind: 'transient' });
    expect(h.errors[0]!.message).toContain(`GET ${hanging.origin}/cvmfs/info/v1/repositories.json: headers: timed out`);
    expect(r.samples.get(`server_up{server="${hanging.hostPort}"}`)).toBe(0);
    expect(r.samples.get(`server_up{server="${flaky.hostPort}"}`)).toBe(1);
  });

  it('GeoAPI status codes: 2 when it fails, 9 with no repository, 0 when the order matches', async () => {
    const failing = await stratum({ type: 1, geo: 'fail', repos: [repo('a.example.org', 1)] });
    const empty = await stratum({ type: 1, repos: [] });
    const right = await stratum({ type: 1, geo: '1,2,3', repos: [repo('a.example.org', 1)] });
    const r = await scrape({ stratum1: [failing.hostPort, empty.hostPort, right.hostPort] });
    expect(server(r, failing.hostPort).geoapi.status).toBe(2);
    expect(server(r, failing.hostPort).geoapi.error).toContain('HTTP 400');
    expect(server(r, empty.hostPort).geoapi.status).toBe(9);
    expect(server(r, right.hostPort).geoapi.status).toBe(0);
  });

  it('S3 403 and forcedOnly: only the forced repositories, none from the index', async () => {
    const s3 = await stratum({ type: 1, s3: 403, repos: [repo('a.example.org', 1), repo('b.example.org', 2)] });
    const normal = await stratum({ type: 1, repos: [repo('a.example.org', 1), repo('b.example.org', 2)] });
    const r = await scrape({ stratum1: [s3.hostPort, normal.hostPort], repos: ['b.example.org'], forcedOnly: true });
    expect(server(r, s3.hostPort).backend).toBe('s3');
    expect(server(r, s3.hostPort).repositories.map((x) => [x.name, x.ok])).toEqual([['b.example.org', true]]);
    expect(server(r, normal.hostPort).repositories.map((x) => x.name)).toEqual(['b.example.org']);
    expect(normal.hits('/a.example.org/')).toBe(0);
  });
});

describe('repeated scrapes (exporter mode)', () => {
  it('drops the series of a vanished repository; a failed server keeps only its up/last-success series', async () => {
    const s1 = await stratum({ type: 1, repos: [repo('stay.example.org', 1), repo('vanish.example.org', 2)] });
    const other = await stratum({ type: 1, repos: [repo('x.example.org', 7)] });
    const registry = new Registry();
    const params = { stratum1: [s1.hostPort, other.hostPort], timeoutMs: 500 };
    const first = await scrape(params, registry);
    expect(first.samples.get(`repo_revision{server="${s1.hostPort}",repository="vanish.example.org"}`)).toBe(2);
    const lastSuccess = first.samples.get(`server_last_success_timestamp_seconds{server="${other.hostPort}"}`)!;
    expect(lastSuccess).toBeGreaterThan(0);

    s1.model.repos = s1.model.repos.filter((r) => r.name !== 'vanish.example.org');
    s1.model.repos[0]!.revision = 5;
    other.fault('repositories.json', { kind: 'status', status: 500 });
    const second = await scrape(params, registry);
    expect(second.status).toBe('succeeded');
    expect(second.samples.get(`repo_revision{server="${s1.hostPort}",repository="stay.example.org"}`)).toBe(5);
    expect([...second.samples.keys()].filter((k) => k.includes('vanish.example.org'))).toEqual([]);
    expect(second.samples.get(`server_up{server="${other.hostPort}"}`)).toBe(0);
    expect(second.samples.get(`server_last_success_timestamp_seconds{server="${other.hostPort}"}`)).toBe(lastSuccess);
    expect([...second.samples.keys()].filter((k) => k.includes('x.example.org'))).toEqual([]);
  });
});

describe('params', () => {
  it('refuses a server that is not a host or URL, naming the param', async () => {
    await expect(scrape({ stratum1: ['http://s1.example.org/some/path'] })).rejects.toThrow(/invalid param "stratum1.0": not a host, host:port or http\(s\):\/\/host\[:port\]/);
  });

  it('a run with no servers fails with a message saying what to pass', async () => {
    const r = await scrape({});
    expect(r.status).toBe('failed');
    expect(r.record.errors[0]!.message).toContain('no servers given; pass --param stratum0=<host>');
  });
});

describe('history in ClickHouse (embedded)', () => {
  it('one row per server, repository and scrape; a failed server leaves its own row', async () => {
    const store = await openEmbeddedStore({ dir: path.join(dir, 'clickhouse'), database: 'sluice' });
    try {
      const s0 = await stratum({ type: 0, repos: [repo('a.example.org', 12), repo('b.example.org', 3)] });
      const s1 = await stratum({ type: 1, repos: [repo('a.example.org', 10), repo('b.example.org', 3, { status: undefined })] });
      const down = await stratum({ type: 1, repos: [repo('a.example.org', 1)] });
      down.fault('repositories.json', { kind: 'status', status: 502 });
      const params = { stratum0: [s0.hostPort], stratum1: [s1.hostPort, down.hostPort], timeoutMs: 1000 };
      const first = await scrape(params, new Registry(), store);
      expect(first.status).toBe('succeeded');
      s1.model.repos[0]!.revision = 12;
      const second = await scrape(params, new Registry(), store);
      expect(second.status).toBe('succeeded');
      const rows = await store.query<{ run_id: string; server: string; repository: string; ok: number; revision: string | number | null; revision_difference: string | number | null; errors: string[] }>(
        'SELECT run_id, server, repository, ok, revision, revision_difference, errors FROM cvmfs_scrapes ORDER BY scraped_at, server, repository');
      expect(new Set(rows.map((r) => r.run_id))).toEqual(new Set([first.record.id, second.record.id]));
      const of = (run: string) => rows.filter((r) => r.run_id === run).map((r) => [r.server, r.repository, Number(r.ok), r.revision === null ? null : Number(r.revision), r.revision_difference === null ? null : Number(r.revision_difference)]);
      const sorted = (xs: unknown[][]) => xs.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
      expect(sorted(of(second.record.id))).toEqual(sorted([
        [s0.hostPort, '', 1, null, null],
        [s0.hostPort, 'a.example.org', 1, 12, 0],
        [s0.hostPort, 'b.example.org', 1, 3, 0],
        [s1.hostPort, '', 1, null, null],
        [s1.hostPort, 'a.example.org', 1, 12, 0],
        [s1.hostPort, 'b.example.org', 1, 3, 0],
        [down.hostPort, '', 0, null, null],
      ]));
      expect(of(first.record.id).find((r) => r[0] === s1.hostPort && r[1] === 'a.example.org')).toEqual([s1.hostPort, 'a.example.org', 1, 10, 2]);
      const downRow = rows.find((r) => r.server === down.hostPort)!;
      expect(downRow.errors[0]).toContain(`${down.origin}/cvmfs/info/v1/repositories.json: status: HTTP 502`);
    } finally {
      await store.close();
    }
  }, 60_000);
});
