/**
 * The `cvmfs` source: scrapes a set of CVMFS Stratum 0 and Stratum 1 servers and yields
 * one item per server (its URL is the item's identity) holding everything the server
 * publishes (see `scrapeServer`): type, backend, index fields, meta.json, GeoAPI status,
 * and per repository the manifest, the status file, and how far it trails Stratum 0.
 *
 * Concurrency is bounded twice: at most `serverConcurrency` servers at once, and per
 * server at most `repoConcurrency` repositories (two requests each) at once. Servers
 * are started only as the consumer pulls, so a slow sink holds the scrape back.
 *
 * Revision differences need every Stratum 0's revisions first: servers are scraped side
 * by side from the start, but results are handed out once every Stratum 0 is done
 * (Stratum 0 servers first, then Stratum 1 servers as they finish).
 *
 * Uses `ctx.http` (the run's permission-checked client) and records its HTTP metrics in
 * `ctx.metrics`.
 *
 * @example
 * ```ts
 * source: (ctx) => cvmfs(ctx, {
 *   stratum0: ['s0.example.org'], stratum1: ['s1a.example.org', 'https://s1b.example.org:8443'],
 *   ignoredRepos: ['test.example.org'],
 * }),
 * ```
 */
import type { RunContext } from '../../../runtime/context.ts';
import { item, type TaggedItem } from '../../../runtime/pipeline.ts';
import { checkDistinctLabels, parseServerAddress, type ServerAddress, type ServerLabelStyle } from './server-address.ts';
import { DEFAULT_SIZE_CAPS, scrapeServer, type CvmfsScrapeOptions, type CvmfsServerScrape, type StratumType } from './scrape-server.ts';

export * from './scrape-server.ts';
export type { CvmfsManifest } from './manifest.ts';
export type { CvmfsDate, CvmfsStatusFile } from './status-file.ts';

/** The Stratum 1 hosts the old scraper asked every GeoAPI to order, and the order it expected (northern Europe). */
export const DEFAULT_GEOAPI_HOSTS = ['cvmfs-s1fnal.opensciencegrid.org', 'cvmfs-stratum-one.cern.ch', 'cvmfs-stratum-one.ihep.ac.cn'];
export const DEFAULT_GEOAPI_ORDER = [2, 1, 3];

export interface CvmfsSourceOptions extends Partial<Omit<CvmfsScrapeOptions, 'geoapi' | 'sizeCaps' | 'signal'>> {
  stratum0?: readonly string[];
  stratum1?: readonly string[];
  /** how servers are labelled (default `short`: the old exporter's first two DNS labels) */
  serverLabel?: ServerLabelStyle;
  /** servers scraped at once (default 64) */
  serverConcurrency?: number;
  geoapi?: Partial<CvmfsScrapeOptions['geoapi']>;
  sizeCaps?: Partial<CvmfsScrapeOptions['sizeCaps']>;
}

interface Job {
  address: ServerAddress;
  type: StratumType;
}

/** Scrape every server; yields one item per server, Stratum 0 first. */
export async function* cvmfs(ctx: RunContext, options: CvmfsSourceOptions): AsyncGenerator<TaggedItem<CvmfsServerScrape>> {
  const style = options.serverLabel ?? 'short';
  const jobs: Job[] = [
    ...(options.stratum0 ?? []).map((s) => ({ address: parseServerAddress(s, style), type: 'stratum0' as const })),
    ...(options.stratum1 ?? []).map((s) => ({ address: parseServerAddress(s, style), type: 'stratum1' as const })),
  ];
  checkDistinctLabels(jobs.map((j) => j.address));
  const scrapeOptions: CvmfsScrapeOptions = {
    forcedRepos: options.forcedRepos ?? [],
    ignoredRepos: options.ignoredRepos ?? [],
    forcedOnly: options.forcedOnly ?? false,
    geoapi: {
      hosts: options.geoapi?.hosts ?? DEFAULT_GEOAPI_HOSTS,
      expectedOrder: options.geoapi?.expectedOrder ?? DEFAULT_GEOAPI_ORDER,
      proxy: options.geoapi?.proxy ?? 'x',
    },
    repoConcurrency: options.repoConcurrency ?? 8,
    timeoutMs: options.timeoutMs ?? 10_000,
    connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
    sizeCaps: { ...DEFAULT_SIZE_CAPS, ...options.sizeCaps },
    signal: ctx.signal,
  };
  const limit = Math.max(1, options.serverConcurrency ?? 64);

  let next = 0;
  let active = 0;
  const finished: CvmfsServerScrape[] = [];
  const held: CvmfsServerScrape[] = [];
  let wake: (() => void) | undefined;
  let stratum0Left = jobs.filter((j) => j.type === 'stratum0').length;
  const stratum0Revisions = new Map<string, number>();

  // started only from the generator (as the consumer pulls): running + waiting ≤ limit
  // (Stratum 0 results waiting for the other Stratum 0 servers do not count: there are few)
  const startMore = () => {
    const waiting = () => finished.length + held.filter((h) => h.configuredType === 'stratum1').length;
    while (next < jobs.length && active + waiting() < limit && !ctx.signal.aborted) {
      const job = jobs[next++]!;
      active++;
      scrapeServer(ctx.http, job.address, job.type, scrapeOptions)
        .catch((err: unknown): CvmfsServerScrape => failedScrape(job, err))
        .then((result) => {
          active--;
          finished.push(result);
          const w = wake;
          wake = undefined;
          w?.();
        });
    }
  };

  let handedOut = 0;
  while (handedOut < jobs.length) {
    startMore();
    if (finished.length === 0) {
      if (active === 0) break; // stopped: nothing more will come
      await new Promise<void>((resolve) => { wake = resolve; });
      continue;
    }
    const result = finished.shift()!;
    if (result.configuredType === 'stratum0') {
      stratum0Left--;
      for (const repo of result.repositories) {
        const rev = repo.manifest?.revision;
        if (rev !== undefined) stratum0Revisions.set(repo.name, Math.max(rev, stratum0Revisions.get(repo.name) ?? -Infinity));
      }
    }
    held.push(result);
    if (stratum0Left > 0) continue;
    // every Stratum 0 is in: hand out what waits, Stratum 0 first
    held.sort((a, b) => (a.configuredType === b.configuredType ? 0 : a.configuredType === 'stratum0' ? -1 : 1));
    while (held.length) {
      const ready = held.shift()!;
      annotate(ready, stratum0Revisions);
      logProblems(ctx, ready);
      handedOut++;
      yield item(ready.base, ready, { bytes: ready.bytes });
    }
  }
}

function annotate(result: CvmfsServerScrape, stratum0Revisions: ReadonlyMap<string, number>): void {
  for (const repo of result.repositories) {
    const s0 = stratum0Revisions.get(repo.name);
    if (s0 === undefined) continue;
    repo.stratum0Revision = s0;
    if (repo.manifest) repo.revisionDifference = s0 - repo.manifest.revision;
  }
}

function logProblems(ctx: RunContext, result: CvmfsServerScrape): void {
  if (!result.ok) {
    ctx.log.warn(`cvmfs: server ${result.server} (${result.base}) failed: ${result.errors[0]?.message ?? 'unknown error'}`);
    return;
  }
  const failed = result.repositories.filter((r) => !r.ok);
  if (failed.length) {
    ctx.log.warn(`cvmfs: server ${result.server}: ${failed.length} of ${result.repositories.length} repositories failed; first: ${failed[0]!.errors[0]?.message ?? 'unknown error'}`);
  }
}

function failedScrape(job: Job, err: unknown): CvmfsServerScrape {
  return {
    server: job.address.label,
    spec: job.address.spec,
    base: job.address.base,
    configuredType: job.type,
    serverType: job.type === 'stratum0' ? 0 : 1,
    backend: 'cvmfs',
    ok: false,
    scrapedAt: new Date().toISOString(),
    durationMs: 0,
    bytes: 0,
    geoapi: { status: 99, expected: [], hosts: [] },
    repositories: [],
    errors: [{ url: job.address.base, phase: 'internal', kind: 'permanent', message: err instanceof Error ? err.message : String(err) }],
  };
}
