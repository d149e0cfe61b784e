/**
 * `scrapeServer`: everything one stratum server publishes about itself and its
 * repositories, in one record. It never throws: what failed is in `errors` (of the
 * server, or of the repository it concerns), next to what worked, so one failing
 * repository never sinks its server and one failing server never sinks the scrape.
 *
 * What is read (all under `<base>/cvmfs/`):
 * - `info/v1/repositories.json`: the server's type (non-empty `replicas` → Stratum 1,
 *   else non-empty `repositories` → Stratum 0, else as configured) and repositories. A
 *   Stratum 1 answering 403 or 404 is taken as S3-backed: only forced repositories can
 *   be scraped there.
 * - `info/v1/meta.json` when present (404/403 → `meta: null`).
 * - per repository, concurrently (at most `repoConcurrency` at a time): `.cvmfspublished`
 *   (required) and `.cvmfs_status.json` (optional; 404/403 → `status: null`).
 * - the GeoAPI of the first repository (by name) on a Stratum 1, asked to order the
 *   configured hosts; Stratum 0 servers are not asked (status 0, as the old exporter).
 *
 * gzip is asked for where it pays (the index, meta.json); the per-repository files and
 * the GeoAPI answer are a few hundred bytes, where compressing costs both sides more
 * than it saves.
 *
 * Repositories: those the index lists, minus `ignoredRepos`, plus `forcedRepos` (forced
 * beats ignored; a forced repository is scraped even when the index does not list it);
 * with `forcedOnly`, just the forced ones. Sorted by name.
 *
 * @example
 * ```ts
 * const result = await scrapeServer(ctx.http, parseServerAddress('s1.example.org'), 'stratum1', options);
 * result.repositories.map((r) => [r.name, r.manifest?.revision]);
 * ```
 */
import { describeError, classifyError, type ErrorKind } from '../../../runtime/errors.ts';
import { HttpError, type HttpClient, type HttpRequestOptions } from '../../../runtime/http-client.ts';
import { parseManifest, type CvmfsManifest } from './manifest.ts';
import type { ServerAddress } from './server-address.ts';
import { cvmfsDate, parseStatusFile, type CvmfsDate, type CvmfsStatusFile } from './status-file.ts';

export type StratumType = 'stratum0' | 'stratum1';

/** The GeoAPI status codes of the old exporter. */
export const GeoApiStatus = { OK: 0, LOCATION_ERROR: 1, NO_RESPONSE: 2, NOT_FOUND: 9, NOT_YET_TESTED: 99 } as const;
export type GeoApiStatusCode = (typeof GeoApiStatus)[keyof typeof GeoApiStatus];

export interface ScrapeError {
  /** the URL whose request or content failed */
  url: string;
  /** the request phase (connect, headers, status, body, decode) or `content` for a bad file */
  phase: string;
  kind: ErrorKind;
  message: string;
  status?: number;
}

export interface CvmfsRepositoryScrape {
  name: string;
  /** the repository's base URL */
  url: string;
  /** listed by the server's index (false: only forced) */
  listed: boolean;
  forced: boolean;
  /** the manifest was read */
  ok: boolean;
  manifest?: CvmfsManifest;
  /** the status file; null when the server publishes none */
  status?: CvmfsStatusFile | null;
  /** the highest revision of this repository on the Stratum 0 servers scraped */
  stratum0Revision?: number;
  /** stratum0Revision minus this server's revision */
  revisionDifference?: number;
  errors: ScrapeError[];
}

export interface GeoApiResult {
  status: GeoApiStatusCode;
  /** the repository asked */
  repository?: string;
  url?: string;
  /** the server's answer, 1-based indices of `hosts` */
  answer?: number[];
  expected: number[];
  hosts: string[];
  error?: string;
}

export interface CvmfsIndexInfo {
  schema?: number;
  lastGeodbUpdate?: CvmfsDate;
  cvmfsVersion?: string;
  osId?: string;
  osVersionId?: string;
  osPrettyName?: string;
  /** every key of repositories.json except the repository lists */
  fields: Record<string, unknown>;
}

export interface CvmfsServerScrape {
  /** the `server` label */
  server: string;
  /** as configured */
  spec: string;
  base: string;
  configuredType: StratumType;
  /** 0 for Stratum 0, 1 for Stratum 1 (from the index when it says, else as configured) */
  serverType: 0 | 1;
  /** `s3` when a Stratum 1 has no repositories.json (403/404) */
  backend: 'cvmfs' | 's3';
  /** the index was read (or the server is S3-backed): its repositories are current */
  ok: boolean;
  scrapedAt: string;
  durationMs: number;
  /** response bytes received */
  bytes: number;
  index?: CvmfsIndexInfo;
  /** meta.json; null when the server publishes none */
  meta?: Record<string, unknown> | null;
  geoapi: GeoApiResult;
  repositories: CvmfsRepositoryScrape[];
  /** errors of the server itself (index, meta.json, GeoAPI); repositories carry their own */
  errors: ScrapeError[];
}

export interface CvmfsScrapeOptions {
  forcedRepos: readonly string[];
  ignoredRepos: readonly string[];
  forcedOnly: boolean;
  geoapi: { hosts: readonly string[]; expectedOrder: readonly number[]; proxy: string };
  repoConcurrency: number;
  /** total deadline per request */
  timeoutMs: number;
  connectTimeoutMs: number;
  /** caps by endpoint kind: index, meta, manifest, status, geoapi */
  sizeCaps: Readonly<Record<'index' | 'meta' | 'manifest' | 'status' | 'geoapi', number>>;
  signal?: AbortSignal;
}

export const DEFAULT_SIZE_CAPS: CvmfsScrapeOptions['sizeCaps'] = {
  index: 4 * 1024 * 1024,
  meta: 256 * 1024,
  manifest: 64 * 1024,
  status: 64 * 1024,
  geoapi: 4 * 1024,
};

const REPO_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function toError(err: unknown, url: string, phase = 'content'): ScrapeError {
  const e = err instanceof HttpError ? err : undefined;
  return {
    url: e?.url ?? url,
    phase: e?.phase ?? phase,
    kind: classifyError(err),
    message: describeError(err),
    ...(e?.status !== undefined ? { status: e.status } : {}),
  };
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

interface IndexEntry {
  name: string;
  url?: string;
}

function entries(list: unknown): IndexEntry[] | undefined {
  if (!Array.isArray(list)) return undefined;
  const out: IndexEntry[] = [];
  for (const e of list) {
    if (e && typeof e === 'object' && typeof (e as { name?: unknown }).name === 'string') {
      out.push({ name: (e as { name: string }).name, url: str((e as { url?: unknown }).url) });
    }
  }
  return out;
}

/** Scrape one server. Never rejects. */
export async function scrapeServer(
  http: HttpClient,
  address: ServerAddress,
  configuredType: StratumType,
  options: CvmfsScrapeOptions,
): Promise<CvmfsServerScrape> {
  const started = performance.now();
  const scrapedAt = new Date();
  let bytes = 0;
  const req = (kind: keyof CvmfsScrapeOptions['sizeCaps'], extra: HttpRequestOptions = {}): HttpRequestOptions => ({
    kind,
    maxBytes: options.sizeCaps[kind],
    timeoutMs: options.timeoutMs,
    connectTimeoutMs: options.connectTimeoutMs,
    signal: options.signal,
    ...extra,
  });
  const result: CvmfsServerScrape = {
    server: address.label,
    spec: address.spec,
    base: address.base,
    configuredType,
    serverType: configuredType === 'stratum0' ? 0 : 1,
    backend: 'cvmfs',
    ok: false,
    scrapedAt: scrapedAt.toISOString(),
    durationMs: 0,
    bytes: 0,
    geoapi: { status: GeoApiStatus.NOT_YET_TESTED, expected: [...options.geoapi.expectedOrder], hosts: [...options.geoapi.hosts] },
    repositories: [],
    errors: [],
  };
  const finish = () => {
    result.durationMs = Math.round(performance.now() - started);
    result.bytes = bytes;
    return result;
  };

  // ---- the index ------------------------------------------------------------------------
  const indexUrl = `${address.base}/cvmfs/info/v1/repositories.json`;
  let listed: IndexEntry[] = [];
  try {
    const res = await http.request(indexUrl, req('index', { okStatus: configuredType === 'stratum1' ? [403, 404] : [], headers: { accept: 'application/json' } }));
    bytes += res.body.length;
    if (res.status === 403 || res.status === 404) {
      result.backend = 's3';
    } else {
      const json = parseJsonBody(res.body, res.headers['content-type'], indexUrl);
      if (!json || typeof json !== 'object' || Array.isArray(json)) throw contentError(indexUrl, 'repositories.json is not a JSON object');
      const doc = json as Record<string, unknown>;
      const replicas = entries(doc.replicas);
      const repositories = entries(doc.repositories);
      if (replicas === undefined && repositories === undefined) {
        throw contentError(indexUrl, 'repositories.json has neither "replicas" nor "repositories"');
      }
      if (replicas?.length) {
        result.serverType = 1;
        listed = replicas;
      } else if (repositories?.length) {
        result.serverType = 0;
        listed = repositories;
      }
      const fields: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(doc)) if (k !== 'replicas' && k !== 'repositories') fields[k] = v;
      const info: CvmfsIndexInfo = { fields };
      if (typeof doc.schema === 'number') info.schema = doc.schema;
      const geodb = cvmfsDate(doc.last_geodb_update);
      if (geodb) info.lastGeodbUpdate = geodb;
      if (str(doc.cvmfs_version)) info.cvmfsVersion = str(doc.cvmfs_version);
      if (str(doc.os_id)) info.osId = str(doc.os_id);
      if (str(doc.os_version_id)) info.osVersionId = str(doc.os_version_id);
      if (str(doc.os_pretty_name)) info.osPrettyName = str(doc.os_pretty_name);
      result.index = info;
    }
    result.ok = true;
  } catch (err) {
    result.errors.push(toError(err, indexUrl));
    return finish();
  }

  // ---- which repositories ---------------------------------------------------------------
  const forced = new Set(options.forcedRepos);
  const ignored = new Set(options.ignoredRepos);
  const chosen = new Map<string, CvmfsRepositoryScrape>();
  const add = (name: string, url: string | undefined, isListed: boolean) => {
    if (chosen.has(name)) return;
    const cleanUrl = url && /^\/cvmfs\/[A-Za-z0-9._-]+$/.test(url) ? url : `/cvmfs/${name}`;
    chosen.set(name, { name, url: `${address.base}${cleanUrl}`, listed: isListed, forced: forced.has(name), ok: false, errors: [] });
  };
  if (!options.forcedOnly) {
    for (const e of listed) if (!ignored.has(e.name) || forced.has(e.name)) add(e.name, e.url, true);
  }
  const listedNames = new Set(listed.map((e) => e.name));
  for (const name of options.forcedRepos) add(name, listed.find((e) => e.name === name)?.url, listedNames.has(name));
  result.repositories = [...chosen.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  // ---- meta.json, the GeoAPI and the repositories, side by side ---------------------------
  const metaUrl = `${address.base}/cvmfs/info/v1/meta.json`;
  const meta = (async () => {
    try {
      const res = await http.request(metaUrl, req('meta', { okStatus: [403, 404], headers: { accept: 'application/json' } }));
      bytes += res.body.length;
      if (res.status === 403 || res.status === 404) {
        result.meta = null;
        return;
      }
      const json = parseJsonBody(res.body, res.headers['content-type'], metaUrl);
      if (!json || typeof json !== 'object' || Array.isArray(json)) throw contentError(metaUrl, 'meta.json is not a JSON object');
      result.meta = json as Record<string, unknown>;
    } catch (err) {
      result.errors.push(toError(err, metaUrl));
    }
  })();

  const geo = (async () => {
    if (result.serverType === 0) {
      result.geoapi.status = GeoApiStatus.OK;
      return;
    }
    const first = result.repositories[0];
    if (!first) {
      result.geoapi.status = GeoApiStatus.NOT_FOUND;
      return;
    }
    const url = `${first.url}/api/v1.0/geo/${encodeURIComponent(options.geoapi.proxy)}/${options.geoapi.hosts.join(',')}`;
    result.geoapi.repository = first.name;
    result.geoapi.url = url;
    try {
      const res = await http.request(url, req('geoapi', { decompress: false }));
      bytes += res.body.length;
      const answer = parseGeoAnswer(res.body.toString('utf8'), options.geoapi.hosts.length);
      if (!answer) throw contentError(url, `GeoAPI answer ${JSON.stringify(res.body.subarray(0, 80).toString('utf8'))} is not an order of ${options.geoapi.hosts.length} hosts`);
      result.geoapi.answer = answer;
      const expected = options.geoapi.expectedOrder;
      result.geoapi.status = answer.length === expected.length && answer.every((v, i) => v === expected[i]) ? GeoApiStatus.OK : GeoApiStatus.LOCATION_ERROR;
    } catch (err) {
      result.geoapi.status = GeoApiStatus.NO_RESPONSE;
      const e = toError(err, url);
      result.geoapi.error = e.message;
      result.errors.push(e);
    }
  })();

  const scrapeRepo = async (repo: CvmfsRepositoryScrape) => {
    if (!REPO_NAME.test(repo.name)) {
      repo.errors.push({ url: repo.url, phase: 'content', kind: 'permanent', message: `repository name ${JSON.stringify(repo.name)} is not a valid CVMFS repository name` });
      return;
    }
    const manifestUrl = `${repo.url}/.cvmfspublished`;
    const statusUrl = `${repo.url}/.cvmfs_status.json`;
    await Promise.all([
      (async () => {
        try {
          const res = await http.request(manifestUrl, req('manifest', { decompress: false }));
          bytes += res.body.length;
          repo.manifest = parseManifest(res.body, manifestUrl);
          repo.ok = true;
        } catch (err) {
          repo.errors.push(toError(err, manifestUrl));
        }
      })(),
      (async () => {
        try {
          const res = await http.request(statusUrl, req('status', { okStatus: [403, 404], headers: { accept: 'application/json' }, decompress: false }));
          bytes += res.body.length;
          if (res.status === 403 || res.status === 404) {
            repo.status = null;
            return;
          }
          repo.status = parseStatusFile(parseJsonBody(res.body, res.headers['content-type'], statusUrl));
        } catch (err) {
          repo.errors.push(toError(err, statusUrl));
        }
      })(),
    ]);
  };
  const repos = (async () => {
    let next = 0;
    const worker = async () => {
      while (next < result.repositories.length && !options.signal?.aborted) await scrapeRepo(result.repositories[next++]!);
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(options.repoConcurrency, result.repositories.length)) }, worker));
  })();

  await Promise.all([meta, geo, repos]);
  return finish();
}

class ContentError extends Error {
  constructor(readonly url: string, message: string) {
    super(`${url}: ${message}`);
  }
}

function contentError(url: string, message: string): ContentError {
  return new ContentError(url, message);
}

/** JSON of a body, with errors that name the URL; an HTML page is called what it is. */
function parseJsonBody(body: Buffer, contentType: string | string[] | undefined, url: string): unknown {
  const type = (Array.isArray(contentType) ? contentType[0] : contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (/^(text\/html|application\/xhtml|application\/xml|text\/xml)/.test(type)) {
    throw contentError(url, `expected JSON but the server sent ${type} (${JSON.stringify(body.subarray(0, 60).toString('utf8'))})`);
  }
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw contentError(url, `invalid JSON: ${(err as Error).message} (${body.length} bytes)`);
  }
}

/** `2,1,3\n` → [2, 1, 3], when it is a permutation of 1..n. */
export function parseGeoAnswer(text: string, n: number): number[] | undefined {
  const parts = text.trim().split(',');
  if (parts.length !== n || !parts.every((p) => /^\d+$/.test(p.trim()))) return undefined;
  const order = parts.map((p) => Number(p.trim()));
  const sorted = [...order].sort((a, b) => a - b);
  return sorted.every((v, i) => v === i + 1) ? order : undefined;
}
