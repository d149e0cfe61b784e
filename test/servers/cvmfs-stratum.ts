/**
 * A local CVMFS stratum server (Stratum 0 or 1), answering what a real one publishes
 * under `/cvmfs/` (see ../shared/specs/cvmfs.md), built from a model the test controls:
 *
 * - `info/v1/repositories.json`: `schema`, `repositories` (Stratum 0) or `replicas`
 *   (Stratum 1), `last_geodb_update` on a Stratum 1, versions when `versions` is set;
 *   403/404 with an S3 XML error when the model is S3-backed;
 * - `info/v1/meta.json` when the model has `meta`;
 * - `<repo>/.cvmfspublished`: field lines, `--`, the SHA-1 of the field lines, and
 *   binary signature bytes (with newlines and high bytes in them, as real ones have);
 * - `<repo>/.cvmfs_status.json` when the repository has a `status`;
 * - `<repo>/api/v1.0/geo/<proxy>/<hosts>`: the model's order (400 when `geo` is `fail`).
 *
 * Faults (slow answers, 503 + Retry-After, cut bodies …) come from FaultyServer.
 */
import { createHash } from 'node:crypto';
import { FaultyServer, type RouteResponse } from './faulty-server.ts';

export interface ModelRepo {
  name: string;
  revision: number;
  /** T: Unix time of the revision */
  timestamp?: number;
  rootSize?: number;
  ttl?: number;
  /** extra manifest lines, e.g. ['Lsomething', 'Zabc', 'Zdef', 'Qunknown'] */
  extraLines?: string[];
  /** a complete manifest body instead of the generated one */
  manifestBody?: Buffer;
  /** the status file's JSON; undefined: no status file (404) */
  status?: Record<string, unknown>;
  /** the index's url for it (default /cvmfs/<name>) */
  url?: string;
  /** listed in repositories.json (default true) */
  listed?: boolean;
}

export interface StratumModel {
  type: 0 | 1;
  repos: ModelRepo[];
  /** S3-backed: repositories.json and meta.json answer 403 or 404 */
  s3?: 403 | 404;
  meta?: Record<string, unknown>;
  /** the GeoAPI's answer, e.g. '2,1,3'; 'fail' answers 400 */
  geo?: string;
  versions?: boolean;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `date --utc` format: `Sat Feb  5 00:00:03 UTC 2022`. */
export function dateUtc(unixSeconds: number): string {
  const d = new Date(unixSeconds * 1000);
  const p2 = (n: number) => String(n).padStart(2, '0');
  return `${WEEKDAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())} UTC ${d.getUTCFullYear()}`;
}

/** A signature as real ones look: binary, newlines and high bytes included. */
export const SIGNATURE = Buffer.from([0x30, 0x0a, 0xff, 0x00, 0x0a, 0x2d, 0x2d, 0x0a, 0x81, 0x9c, 0x42, 0x0d, 0x0a, 0x7f]);

export function hash40(seed: string): string {
  return createHash('sha1').update(seed).digest('hex');
}

/** The manifest bytes of a model repository. */
export function manifestOf(repo: ModelRepo): Buffer {
  if (repo.manifestBody) return repo.manifestBody;
  const lines = [
    `C${hash40(`${repo.name}/${repo.revision}/catalog`)}`,
    `B${repo.rootSize ?? 43008}`,
    'Ano',
    'Rd41d8cd98f00b204e9800998ecf8427e',
    `D${repo.ttl ?? 240}`,
    `S${repo.revision}`,
    'Gyes',
    `H${hash40(`${repo.name}/history`)}`,
    `T${repo.timestamp ?? 1_700_000_000}`,
    `N${repo.name}`,
    `X${hash40(`${repo.name}/cert`)}`,
    `M${hash40(`${repo.name}/meta`)}-rmd160`,
    `Y${hash40(`${repo.name}/reflog`)}`,
    ...(repo.extraLines ?? []),
  ];
  const fields = lines.join('\n') + '\n';
  return Buffer.concat([Buffer.from(fields + '--\n' + hash40(fields) + '\n', 'latin1'), SIGNATURE]);
}

export function stratumRoute(model: StratumModel): (req: { path: string; method: string }) => RouteResponse | undefined {
  return (req) => {
    const path = req.path;
    if (!path.startsWith('/cvmfs/')) return undefined;
    const rest = path.slice('/cvmfs/'.length);
    if (rest === 'info/v1/repositories.json') {
      if (model.s3) return s3Error(model.s3, rest);
      const list = model.repos.filter((r) => r.listed !== false).map((r) => ({ name: r.name, url: r.url ?? `/cvmfs/${r.name}` }));
      const doc: Record<string, unknown> = { schema: 1 };
      if (model.type === 1) {
        doc.replicas = list;
        doc.last_geodb_update = dateUtc(1_699_000_000);
      } else {
        doc.repositories = list;
      }
      if (model.versions) Object.assign(doc, { cvmfs_version: '2.11.2', os_id: 'rhel', os_version_id: '9', os_pretty_name: 'Red Hat Enterprise Linux 9.3 (Plow)' });
      return json(doc);
    }
    if (rest === 'info/v1/meta.json') {
      if (model.s3) return s3Error(model.s3, rest);
      return model.meta ? json(model.meta) : undefined;
    }
    const slash = rest.indexOf('/');
    if (slash < 0) return undefined;
    const name = rest.slice(0, slash);
    const file = rest.slice(slash + 1);
    const repo = model.repos.find((r) => r.name === name);
    if (!repo) return model.s3 ? s3Error(404, rest) : undefined;
    if (file === '.cvmfspublished') return { headers: { 'Content-Type': 'application/x-cvmfs' }, body: manifestOf(repo), gzip: false };
    if (file === '.cvmfs_status.json') return repo.status ? json(repo.status) : model.s3 ? s3Error(404, rest) : undefined;
    const geo = /^api\/v1\.0\/geo\/[^/]+\/([^/]+)$/.exec(file);
    if (geo) {
      if (model.geo === 'fail') return { status: 400, headers: { 'Content-Type': 'text/plain' }, body: 'geo lookup failed\n' };
      const hosts = decodeURIComponent(geo[1]!).split(',');
      const order = model.geo ?? hosts.map((_, i) => i + 1).join(',');
      return { headers: { 'Content-Type': 'text/plain' }, body: `${order}\n`, gzip: false };
    }
    return undefined;
  };
}

function json(doc: unknown): RouteResponse {
  return { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(doc, null, 2) };
}

function s3Error(status: 403 | 404, key: string): RouteResponse {
  const code = status === 403 ? 'AccessDenied' : 'NoSuchKey';
  return {
    status,
    headers: { 'Content-Type': 'application/xml' },
    body: `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${code}</Message><Key>cvmfs/${key}</Key></Error>`,
    gzip: false,
  };
}

/** Start a stratum server for `model` on a free loopback port. */
export async function startStratum(model: StratumModel): Promise<FaultyServer & { model: StratumModel }> {
  const server = await new FaultyServer(stratumRoute(model)).start();
  return Object.assign(server, { model });
}
