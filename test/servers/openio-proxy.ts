/**
 * A local OpenIO SDS proxy (see ../shared/specs/openio.md): the conscience list, admin
 * status and info per base (per-peer maps, HTTP 200 even when peers failed), and the
 * meta0 prefix map, over a model the test controls. Routes are per method (a wrong
 * method or path is `404 No handler found`), a wrong namespace is `400 Invalid
 * parameter 'namespace'`, real-valued tags are printed with `%f` (so `nan` and `inf`
 * come out bare), and the meta0 map is sent in chunks.
 */
import { FaultyServer, type RequestInfo, type RouteResponse } from './faulty-server.ts';

export interface ModelService {
  addr: string;
  type: string;
  score: number;
  scores?: Record<string, number>;
  up?: boolean;
  loc?: string;
  vol?: string;
  serviceId?: string;
  /** real-valued stats, printed with %f: NaN and Infinity come out as nan and inf */
  stats?: Record<string, number>;
}

export interface ModelPeer {
  /** 200 master, 303 slave (message = master), anything else a failure */
  status: number;
  message: string;
  /** the service's info JSON for admin/info */
  info?: Record<string, unknown>;
}

export interface OpenIoModel {
  ns: string;
  services: ModelService[];
  /** cid (upper-case hex) → peer address → answer */
  bases: Record<string, Record<string, ModelPeer>>;
  /** number of meta0 prefixes (65,536 in a real namespace) */
  meta0Prefixes?: number;
  meta1Services?: string[];
  /** cut the next meta0 stream after this many bytes */
  meta0CutOnce?: number;
}

function fixed(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  return n.toFixed(6);
}

function serviceJson(s: ModelService, all: boolean, ns: string): string {
  const tags: string[] = [
    `"tag.up":${s.up ?? true}`,
    `"tag.loc":${JSON.stringify(s.loc ?? 'rack1.host1.vol0')}`,
    `"tag.vol":${JSON.stringify(s.vol ?? '/var/lib/oio/sds/vol0')}`,
    ...(s.serviceId ? [`"tag.service_id":${JSON.stringify(s.serviceId)}`] : []),
    `"tag.slots":${JSON.stringify(`${s.type},${s.type}-even`)}`,
    ...Object.entries(s.stats ?? {}).map(([k, v]) => `"stat.${k}":${fixed(v)}`),
  ];
  const scores = Object.entries(s.scores ?? { 'score.put': s.score, 'score.get': s.score }).map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',');
  return `{${all ? `"ns":${JSON.stringify(ns)},"type":${JSON.stringify(s.type)},` : ''}"addr":${JSON.stringify(s.addr)},"score":${s.up === false ? 0 : s.score},"scores":{${scores}},"tags":{${tags.join(',')}}}`;
}

function error(status: number, message: string): RouteResponse {
  return { status, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ status, message }), gzip: false };
}

export function proxyRoute(model: OpenIoModel) {
  return (req: RequestInfo): RouteResponse | undefined => {
    const m = /^\/v3\.0\/([^/]+)\/(.+)$/.exec(req.path);
    if (!m) return error(404, 'No handler found');
    const [, ns, action] = m;
    const route = `${req.method} ${action}`;
    const known = ['GET conscience/list', 'POST admin/status', 'POST admin/info', 'GET admin/meta0_list'];
    if (!known.includes(route)) return error(404, 'No handler found');
    if (decodeURIComponent(ns!) !== model.ns) return error(400, "Invalid parameter 'namespace'");
    const q = req.url.searchParams;
    if (route === 'GET conscience/list') {
      const type = q.get('type');
      if (!type) return error(400, "Missing parameter 'type'");
      const all = type === 'all';
      const list = model.services.filter((s) => all || s.type === type);
      if (!all && list.length === 0 && !model.services.some((s) => s.type === type)) return error(404, `Service type [${type}] not managed`);
      return { headers: { 'Content-Type': 'application/json' }, body: `[${list.map((s) => serviceJson(s, all, model.ns)).join(',')}]` };
    }
    if (route === 'POST admin/status' || route === 'POST admin/info') {
      const cid = (q.get('cid') ?? '').toUpperCase();
      if (!/^[0-9A-F]{64}$/.test(cid)) return error(400, "Invalid parameter 'cid'");
      const peers = model.bases[cid];
      if (!peers) return error(404, 'Base not found');
      const map: Record<string, unknown> = {};
      for (const [addr, p] of Object.entries(peers)) {
        const body = route === 'POST admin/info' ? (p.status === 200 || p.status === 303 ? JSON.stringify(p.info ?? {}) : null) : p.status === 200 || p.status === 303 ? '' : null;
        map[addr] = { status: { status: p.status, message: p.message }, body };
      }
      return { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(map) };
    }
    // GET admin/meta0_list: every 4-hex-digit prefix → its meta1 services, in chunks
    const n = model.meta0Prefixes ?? 65_536;
    const services = model.meta1Services ?? ['127.0.0.1:6010', '127.0.0.2:6010', '127.0.0.3:6010'];
    const chunks: string[] = ['{'];
    let part: string[] = [];
    for (let i = 0; i < n; i++) {
      const prefix = i.toString(16).toUpperCase().padStart(4, '0');
      const owners = [services[i % services.length]!, services[(i + 1) % services.length]!];
      part.push(`${JSON.stringify(prefix)}:${JSON.stringify(owners)}`);
      if (part.length === 4096) {
        chunks.push((chunks.length > 1 ? ',' : '') + part.join(','));
        part = [];
      }
    }
    if (part.length) chunks.push((chunks.length > 1 ? ',' : '') + part.join(','));
    chunks.push('}');
    if (model.meta0CutOnce !== undefined) {
      const text = chunks.join('');
      const cut = model.meta0CutOnce;
      model.meta0CutOnce = undefined;
      return { headers: { 'Content-Type': 'application/json' }, chunks: [text.slice(0, cut)], cutAfterChunks: true };
    }
    return { headers: { 'Content-Type': 'application/json' }, chunks };
  };
}

export async function startOpenIoProxy(model: OpenIoModel): Promise<FaultyServer & { model: OpenIoModel }> {
  const server = await new FaultyServer(proxyRoute(model)).start();
  return Object.assign(server, { model });
}
