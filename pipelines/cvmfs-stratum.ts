/**
 * cvmfs-stratum — scrape CVMFS Stratum 0 and Stratum 1 servers: every manifest field,
 * status-file fields, meta.json, GeoAPI status, revision lag behind Stratum 0.
 *
 * Sinks:
 * - Prometheus gauges with the names and labels of the old cvmfs-server-scraper exporter
 *   (`server_geoapi_status`, `server_type`, `repo_revision`, `repo_revision_timestamp`,
 *   `repo_revision_difference`, `repo_snapshot`, `repo_last_gc`, `repo_root_size`,
 *   `repo_root_catalogue_ttl`), so its dashboards and alerts keep working, plus
 *   `repo_snapshot_age_seconds`, `repo_up`, `server_up`, `server_scrape_duration_seconds`
 *   and `server_last_success_timestamp_seconds`;
 * - a JSON snapshot of the whole scrape: servers → repositories → fields, with the
 *   errors of each server and repository;
 * - the ClickHouse history table `cvmfs_scrapes`: one row per server, repository and
 *   scrape (plus one row per server and scrape with `repository = ''`, so a server that
 *   failed leaves a trace), unless `--param history=false`.
 *
 * Only current data is served: a series is written when this scrape read its value.
 * A repository that vanished from its server, or that failed this time, loses its
 * series (its `repo_up` says 0 while it is still listed); a server that failed keeps only
 * `server_up 0`, its type and GeoAPI status, and `server_last_success_timestamp_seconds`,
 * which tells how old its last good data is.
 *
 * Exporter mode (what the old tool was run for):
 * `npm run pipeline -- cvmfs-stratum --param stratum1=… --every 60s --metrics-port 9877`.
 */
import path from 'node:path';
import { mergeMap, pipe } from 'rxjs';
import { z } from 'zod';
import { defineTable, type RowOf } from '../runtime/clickhouse/table.ts';
import { definePipeline, type Sink } from '../runtime/pipeline.ts';
import { clickhouse } from '../sinks/clickhouse/index.ts';
import { prometheus } from '../sinks/prometheus.ts';
import { snapshot } from '../sinks/snapshot.ts';
import {
  cvmfs,
  DEFAULT_GEOAPI_HOSTS,
  DEFAULT_GEOAPI_ORDER,
  type CvmfsRepositoryScrape,
  type CvmfsServerScrape,
} from '../sources/http/cvmfs/cvmfs.ts';
import { parseServerAddress } from '../sources/http/cvmfs/server-address.ts';
import { where } from '../sinks/where.ts';

const serverSpec = z.string().refine((s) => {
  try {
    parseServerAddress(s);
    return true;
  } catch {
    return false;
  }
}, { message: 'not a host, host:port or http(s)://host[:port]' });

const params = z.object({
  stratum0: z.array(serverSpec).default([]).describe('Stratum 0 servers: host, host:port or http(s)://host[:port]'),
  stratum1: z.array(serverSpec).default([]).describe('Stratum 1 servers: host, host:port or http(s)://host[:port]'),
  repos: z.array(z.string()).default([]).describe('repositories always scraped (forced beats ignored; scraped even when the index does not list them, e.g. on S3-backed servers)'),
  ignoreRepos: z.array(z.string()).default([]).describe('repositories never scraped, unless forced'),
  forcedOnly: z.boolean().default(false).describe('scrape only the forced repositories (repos)'),
  geoapiHosts: z.array(z.string()).default(DEFAULT_GEOAPI_HOSTS).describe('hosts each Stratum 1 GeoAPI is asked to order'),
  geoapiOrder: z.array(z.number().int().min(1)).default(DEFAULT_GEOAPI_ORDER).describe('the order (1-based) expected from where the scraper runs'),
  serverConcurrency: z.number().int().min(1).default(64).describe('servers scraped at once'),
  repoConcurrency: z.number().int().min(1).default(8).describe('repositories scraped at once on one server'),
  timeoutMs: z.number().int().min(1).default(10_000).describe('total deadline of one request, ms'),
  connectTimeoutMs: z.number().int().min(1).default(5_000).describe('deadline for opening a connection, ms'),
  serverLabel: z.enum(['short', 'host']).default('short').describe('server label: short = first two DNS labels (the old exporter), host = full host name'),
  snapshot: z.string().default('.sluice/cvmfs-stratum.json').describe('where the JSON snapshot of the scrape is written'),
  history: z.boolean().default(true).describe('append one row per server, repository and scrape to the ClickHouse table cvmfs_scrapes'),
});

type Params = z.infer<typeof params>;

/** One server, as the snapshot shows it. */
export interface ServerRow extends CvmfsServerScrape {
  kind: 'server';
  /** the run that scraped it (groups one scrape's rows in the history table) */
  runId: string;
}

/** One repository on one server, flattened for metrics (and history tables). */
export interface RepoRow {
  kind: 'repo';
  runId: string;
  server: string;
  repository: string;
  serverType: 0 | 1;
  serverBase: string;
  backend: 'cvmfs' | 's3';
  geoapiStatus: number;
  scrapedAt: string;
  ok: boolean;
  revision?: number;
  revisionTimestamp?: number;
  revisionDifference?: number;
  lastSnapshot?: number;
  snapshotAgeSeconds?: number;
  lastGc?: number;
  rootSize?: number;
  ttlSeconds?: number;
  repo: CvmfsRepositoryScrape;
}

export type CvmfsRow = ServerRow | RepoRow;

/** The history table: one row per server, repository and scrape; `repository = ''` is the server itself. */
export const cvmfsScrapes = defineTable('cvmfs_scrapes', {
  columns: {
    run_id: 'String',
    scraped_at: 'DateTime',
    server: 'LowCardinality(String)',
    repository: 'String',
    server_base: 'String',
    server_type: 'UInt8',
    backend: 'LowCardinality(String)',
    server_ok: 'UInt8',
    geoapi_status: 'UInt8',
    ok: 'UInt8',
    revision: 'Nullable(Int64)',
    revision_timestamp: 'Nullable(DateTime)',
    stratum0_revision: 'Nullable(Int64)',
    revision_difference: 'Nullable(Int64)',
    root_catalog_hash: 'String',
    root_catalog_size: 'Nullable(UInt64)',
    ttl_seconds: 'Nullable(UInt32)',
    last_snapshot: 'Nullable(DateTime)',
    last_gc: 'Nullable(DateTime)',
    last_check: 'Nullable(DateTime)',
    check_status: 'String',
    manifest_json: 'String',
    status_json: 'String',
    errors: 'Array(String)',
  },
  orderBy: ['server', 'repository', 'scraped_at'],
  partitionBy: 'toYYYYMM(scraped_at)',
});

export type CvmfsScrapeRow = RowOf<typeof cvmfsScrapes>;

export function historyRowOf(row: CvmfsRow): CvmfsScrapeRow {
  const scrapedAt = new Date(row.scrapedAt);
  if (row.kind === 'server') {
    return {
      run_id: row.runId, scraped_at: scrapedAt, server: row.server, repository: '', server_base: row.base, server_type: row.serverType, backend: row.backend,
      server_ok: row.ok ? 1 : 0, geoapi_status: row.geoapi.status, ok: row.ok ? 1 : 0,
      revision: null, revision_timestamp: null, stratum0_revision: null, revision_difference: null,
      root_catalog_hash: '', root_catalog_size: null, ttl_seconds: null, last_snapshot: null, last_gc: null, last_check: null,
      check_status: '', manifest_json: '', status_json: row.meta ? JSON.stringify(row.meta) : '',
      errors: row.errors.map((e) => e.message),
    };
  }
  const m = row.repo.manifest;
  const status = row.repo.status;
  return {
    run_id: row.runId, scraped_at: scrapedAt, server: row.server, repository: row.repository, server_base: row.serverBase, server_type: row.serverType, backend: row.backend,
    server_ok: 1, geoapi_status: row.geoapiStatus, ok: row.ok ? 1 : 0,
    revision: m?.revision ?? null,
    revision_timestamp: m?.timestamp ?? null,
    stratum0_revision: row.repo.stratum0Revision ?? null,
    revision_difference: row.revisionDifference ?? null,
    root_catalog_hash: m?.rootCatalogHash ?? '',
    root_catalog_size: m?.rootCatalogSize ?? null,
    ttl_seconds: m?.ttlSeconds ?? null,
    last_snapshot: status?.lastSnapshot?.unix ?? null,
    last_gc: status?.lastGc?.unix ?? null,
    last_check: status?.lastCheck?.unix ?? null,
    check_status: status?.checkStatus ?? '',
    manifest_json: m ? JSON.stringify({ ...m.fields, '--': m.hash ?? '' }) : '',
    status_json: status ? JSON.stringify(status.fields) : '',
    errors: row.repo.errors.map((e) => e.message),
  };
}

export function rowsOf(scrape: CvmfsServerScrape, runId = ''): CvmfsRow[] {
  const rows: CvmfsRow[] = [{ kind: 'server', runId, ...scrape }];
  const now = Date.parse(scrape.scrapedAt) / 1000;
  for (const repo of scrape.repositories) {
    const m = repo.manifest;
    const lastSnapshot = repo.status?.lastSnapshot?.unix;
    rows.push({
      kind: 'repo',
      runId,
      server: scrape.server,
      repository: repo.name,
      serverType: scrape.serverType,
      serverBase: scrape.base,
      backend: scrape.backend,
      geoapiStatus: scrape.geoapi.status,
      scrapedAt: scrape.scrapedAt,
      ok: repo.ok,
      revision: m?.revision,
      revisionTimestamp: m?.timestamp,
      revisionDifference: repo.revisionDifference,
      lastSnapshot,
      snapshotAgeSeconds: lastSnapshot !== undefined ? Math.max(0, now - lastSnapshot) : undefined,
      lastGc: repo.status?.lastGc?.unix,
      rootSize: m?.rootCatalogSize,
      ttlSeconds: m?.ttlSeconds,
      repo,
    });
  }
  return rows;
}

const isServer = (r: CvmfsRow): r is ServerRow => r.kind === 'server';
const isRepo = (r: CvmfsRow): r is RepoRow => r.kind === 'repo';

/** One gauge, written for the rows that have a value for it. */
function gauge<T extends CvmfsRow>(
  is: (r: CvmfsRow) => r is T,
  name: string,
  help: string,
  labels: readonly ('server' | 'repository')[],
  value: (row: T) => number | undefined,
  resetEachRun = true,
): Sink<CvmfsRow> {
  const has = (r: CvmfsRow): r is T => is(r) && typeof value(r) === 'number';
  return where(has, prometheus<T>({
    name: `cvmfs-${name}`,
    resetEachRun,
    metrics: { [name]: { type: 'gauge', help, labels: labels as readonly (keyof T & string)[], value: (r) => value(r)! } },
  }));
}

function metricSinks(): Sink<CvmfsRow>[] {
  const repo = (name: string, help: string, value: (r: RepoRow) => number | undefined) => gauge(isRepo, name, help, ['server', 'repository'], value);
  const server = (name: string, help: string, value: (r: ServerRow) => number | undefined, reset = true) => gauge(isServer, name, help, ['server'], value, reset);
  return [
    server('server_geoapi_status', 'Status for the GeoAPI (0=OK, 1=Wrong answer, 2=Not responding, 9=No repos on server, testing impossible, 99=Not yet tested)', (s) => s.geoapi.status),
    server('server_type', 'Server type (0=stratum0, 1=stratum1)', (s) => s.serverType),
    server('server_up', 'Whether the last scrape read the server\'s repository index (1) or failed (0)', (s) => (s.ok ? 1 : 0)),
    server('server_scrape_duration_seconds', 'How long the last scrape of the server took', (s) => s.durationMs / 1000),
    server('server_last_success_timestamp_seconds', 'Unix time of the last scrape that read the server\'s repository index', (s) => (s.ok ? Date.parse(s.scrapedAt) / 1000 : undefined), false),
    repo('repo_up', 'Whether the last scrape read the repository\'s manifest (1) or failed (0)', (r) => (r.ok ? 1 : 0)),
    repo('repo_revision', 'Revision for a given repository', (r) => r.revision),
    repo('repo_revision_timestamp', 'The timestamp of the current revision of the repository', (r) => r.revisionTimestamp),
    repo('repo_revision_difference', 'The difference between the current repository\'s revision relative to the same repository on stratum0', (r) => r.revisionDifference),
    repo('repo_snapshot', 'Last snapshot for a given repository', (r) => (r.serverType === 1 ? r.lastSnapshot : undefined)),
    repo('repo_snapshot_age_seconds', 'Seconds between the repository\'s last snapshot and the scrape (Stratum 1)', (r) => (r.serverType === 1 ? r.snapshotAgeSeconds : undefined)),
    repo('repo_last_gc', 'The last time the repository on a specific server ran garbage collection', (r) => r.lastGc),
    repo('repo_root_size', 'Size of the root catalogue of the repository', (r) => r.rootSize),
    repo('repo_root_catalogue_ttl', 'TTL of the root catalogue of the repository', (r) => r.ttlSeconds),
  ];
}

function serverHostPorts(p: Params): string[] {
  const out = new Set<string>();
  for (const spec of [...p.stratum0, ...p.stratum1]) {
    try {
      out.add(parseServerAddress(spec).hostPort);
    } catch {
      // refused by the params schema already
    }
  }
  return [...out];
}

export default definePipeline({
  name: 'cvmfs-stratum',
  description: 'Scrape CVMFS Stratum 0/1 servers into Prometheus metrics (the cvmfs-server-scraper exporter\'s names) and a JSON snapshot',
  params,
  permissions: ({ params: p }) => ({ net: serverHostPorts(p), write: [path.dirname(p.snapshot)] }),
  // servers are scraped side by side inside the source; an item is one finished server
  maxInFlight: 16,
  onError: 'skip',
  tables: [cvmfsScrapes],
  source: (ctx) => {
    const p = ctx.params;
    if (p.stratum0.length + p.stratum1.length === 0) {
      throw new Error('cvmfs-stratum: no servers given; pass --param stratum0=<host> and/or --param stratum1=<host>');
    }
    return cvmfs(ctx, {
      stratum0: p.stratum0,
      stratum1: p.stratum1,
      forcedRepos: p.repos,
      ignoredRepos: p.ignoreRepos,
      forcedOnly: p.forcedOnly,
      geoapi: { hosts: p.geoapiHosts, expectedOrder: p.geoapiOrder },
      serverConcurrency: p.serverConcurrency,
      repoConcurrency: p.repoConcurrency,
      timeoutMs: p.timeoutMs,
      connectTimeoutMs: p.connectTimeoutMs,
      serverLabel: p.serverLabel,
    });
  },
  transform: (ctx) => pipe(mergeMap((scrape: CvmfsServerScrape) => rowsOf(scrape, ctx.runId))),
  sinks: ({ params: p }) => [
    where(isServer, snapshot<ServerRow>({
      path: p.snapshot,
      wrap: (rows) => ({
        scrapedAt: rows.map((r) => r.scrapedAt).sort()[0] ?? new Date().toISOString(),
        servers: rows
          .map(({ kind: _kind, runId: _runId, ...server }) => server)
          .sort((a, b) => a.serverType - b.serverType || (a.server < b.server ? -1 : a.server > b.server ? 1 : 0)),
      }),
    })),
    ...metricSinks(),
    ...(p.history ? [where((r: CvmfsRow): r is CvmfsRow => true, clickhouse(cvmfsScrapes), historyRowOf)] : []),
  ],
  nextSteps: ({ params: p }) => (p.history
    ? ['', 'Repositories behind their Stratum 0 in the last scrape:',
      '  npm run query -- "SELECT server, repository, revision, revision_difference FROM cvmfs_scrapes WHERE run_id = (SELECT argMax(run_id, scraped_at) FROM cvmfs_scrapes) AND revision_difference > 0 ORDER BY revision_difference DESC"']
    : []),
});
