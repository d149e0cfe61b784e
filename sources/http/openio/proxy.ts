/**
 * `OpenIoProxy`: the admin and conscience routes of an OpenIO SDS proxy
 * (`<proxy>/v3.0/<ns>/…`): conscience service lists, election status and service info
 * per base, and the meta0 prefix map.
 *
 * Every request carries `x-oio-req-id` (≤ 63 characters) and `x-oio-timeout`, the time
 * our own deadline leaves in microseconds (less a margin), so the proxy gives up before
 * we do; admin routes add `x-oio-admin: 1`. A 503 (the proxy's answer to network errors,
 * timeouts, excessive load, corrupt or frozen bases) is retried after its `Retry-After`;
 * the admin POSTs are read-only and retried too. Real-valued tags printed as `nan`/`inf`
 * are read as numbers. The meta0 map is streamed, never held whole.
 *
 * @example
 * ```ts
 * const proxy = new OpenIoProxy(ctx.http, 'http://127.0.0.1:6000', 'OPENIO');
 * const rawx = await proxy.conscienceList('rawx');
 * const election = await proxy.electionStatus('meta2', cid);
 * for await (const [prefix, services] of proxy.meta0List()) count(prefix, services);
 * ```
 */
import { randomBytes } from 'node:crypto';
import { PermanentError, TransientError } from '../../../runtime/errors.ts';
import { HttpError, type HttpClient, type HttpRequestOptions } from '../../../runtime/http-client.ts';
import { parseLenientJson } from './lenient-json.ts';
import { ObjectEntryParser } from './object-entry-parser.ts';

export interface ConscienceService {
  addr: string;
  score: number;
  scores: Record<string, number>;
  tags: Record<string, string | number | boolean>;
  /** with type=all */
  type?: string;
  ns?: string;
}

/** One peer's answer in a per-peer map. */
export interface PeerAnswer {
  peer: string;
  /** the peer's status code: 200 master, 303 slave, anything else failed */
  status: number;
  message: string;
  body: unknown;
}

export type PeerRole = 'master' | 'slave' | 'failed';

export interface ElectionPeer {
  peer: string;
  role: PeerRole;
  status: number;
  message: string;
  /** for a slave: the master it names */
  master?: string;
}

export interface ElectionStatus {
  type: string;
  cid: string;
  peers: ElectionPeer[];
  /** peers answering as master */
  masters: string[];
  /** every address named as master, by a master itself or by a slave */
  claimedMasters: string[];
  failed: string[];
  /** exactly one master, every slave names it, no peer failed */
  healthy: boolean;
  /** what is wrong, when not healthy */
  problems: string[];
}

export interface ProxyOptions {
  /** total deadline of one request, ms; default 30 000 */
  timeoutMs?: number;
  /** what x-oio-timeout leaves for the way back, ms; default 10% of the time left, at least 100 */
  marginMs?: number;
  signal?: AbortSignal;
  /** cap on one answer, bytes (the meta0 map is streamed, not capped this way); default 64 MiB */
  maxBytes?: number;
}

const CID = /^[0-9A-Fa-f]{64}$/;

/** Read a per-peer map (`{"ip:port": {"status": {"status", "message"}, "body"}}`) without dropping failed peers. */
export function readPeerMap(doc: unknown, url: string): PeerAnswer[] {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new PermanentError(`${url}: expected a per-peer JSON object`, { item: url });
  return Object.entries(doc as Record<string, unknown>).map(([peer, v]) => {
    const entry = (v ?? {}) as { status?: { status?: unknown; message?: unknown } | unknown; body?: unknown };
    const st = entry.status && typeof entry.status === 'object' ? (entry.status as { status?: unknown; message?: unknown }) : {};
    const status = typeof st.status === 'number' ? st.status : Number(st.status ?? NaN);
    return { peer, status: Number.isFinite(status) ? status : -1, message: typeof st.message === 'string' ? st.message : '', body: entry.body ?? null };
  }).sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0));
}

/** Who is master, who is slave, who failed, and whether they agree. */
export function analyseElection(type: string, cid: string, answers: readonly PeerAnswer[]): ElectionStatus {
  const peers: ElectionPeer[] = answers.map((a) => {
    if (a.status === 200) return { peer: a.peer, role: 'master', status: a.status, message: a.message };
    if (a.status === 303) return { peer: a.peer, role: 'slave', status: a.status, message: a.message, master: a.message };
    return { peer: a.peer, role: 'failed', status: a.status, message: a.message };
  });
  const masters = peers.filter((p) => p.role === 'master').map((p) => p.peer);
  const claimed = [...new Set([...masters, ...peers.filter((p) => p.role === 'slave').map((p) => p.master!)])].sort();
  const failed = peers.filter((p) => p.role === 'failed').map((p) => p.peer);
  const problems: string[] = [];
  if (peers.length === 0) problems.push('no peer answered');
  if (masters.length === 0) problems.push('no master');
  if (masters.length > 1) problems.push(`${masters.length} peers answer as master: ${masters.join(', ')}`);
  if (claimed.length > 1) problems.push(`peers disagree about the master: ${claimed.join(', ')}`);
  for (const p of peers) if (p.role === 'failed') problems.push(`${p.peer} failed: ${p.status} ${p.message}`);
  return { type, cid, peers, masters, claimedMasters: claimed, failed, healthy: problems.length === 0, problems };
}

export class OpenIoProxy {
  readonly base: string;
  private readonly reqPrefix = `sluice-${randomBytes(4).toString('hex')}-`;
  private sequence = 0;

  constructor(private readonly http: HttpClient, proxyUrl: string, readonly ns: string, private readonly options: ProxyOptions = {}) {
    this.base = `${proxyUrl.replace(/\/+$/, '')}/v3.0/${encodeURIComponent(ns)}`;
  }

  private req(kind: string, admin: boolean, extra: HttpRequestOptions = {}): HttpRequestOptions {
    const reqId = `${this.reqPrefix}${++this.sequence}`.slice(0, 63);
    const margin = this.options.marginMs;
    return {
      kind,
      timeoutMs: this.options.timeoutMs ?? 30_000,
      maxBytes: this.options.maxBytes ?? 64 << 20,
      signal: this.options.signal,
      headers: { 'x-oio-req-id': reqId, ...(admin ? { 'x-oio-admin': '1' } : {}), accept: 'application/json' },
      // the proxy's deadline, in µs, kept under ours
      headersFor: ({ remainingMs }) => ({
        'x-oio-timeout': String(Math.max(1, Math.floor((remainingMs - (margin ?? Math.max(100, remainingMs / 10))) * 1000))),
      }),
      ...extra,
    };
  }

  private async json(url: string, options: HttpRequestOptions): Promise<unknown> {
    const res = await this.http.request(url, options);
    const text = res.body.toString('utf8');
    try {
      return parseLenientJson(text);
    } catch (err) {
      throw new HttpError('permanent', { method: options.method ?? 'GET', url, phase: 'decode', status: res.status, reason: `invalid JSON (${(err as Error).message}; starting ${JSON.stringify(text.slice(0, 60))})` });
    }
  }

  /** The conscience's services of a type (`all` for every type, which adds `ns` and `type`). */
  async conscienceList(type: string, full = false): Promise<ConscienceService[]> {
    const url = `${this.base}/conscience/list?type=${encodeURIComponent(type)}${full ? '&full=1' : ''}`;
    const doc = await this.json(url, this.req('conscience', false));
    if (!Array.isArray(doc)) throw new PermanentError(`${url}: expected a JSON array of services`, { item: url });
    return doc.map((raw) => {
      const s = (raw ?? {}) as Record<string, unknown>;
      const service: ConscienceService = {
        addr: String(s.addr ?? ''),
        score: typeof s.score === 'number' ? s.score : Number(s.score ?? NaN),
        scores: (s.scores && typeof s.scores === 'object' ? s.scores : {}) as Record<string, number>,
        tags: (s.tags && typeof s.tags === 'object' ? s.tags : {}) as Record<string, string | number | boolean>,
      };
      if (typeof s.type === 'string') service.type = s.type;
      if (typeof s.ns === 'string') service.ns = s.ns;
      return service;
    });
  }

  private baseQuery(type: string, cid: string): string {
    if (!CID.test(cid)) throw new PermanentError(`base ${JSON.stringify(cid)} is not a container id (64 hex digits)`);
    return `type=${encodeURIComponent(type)}&cid=${cid.toUpperCase()}`;
  }

  /** Election status of a base on every peer; failed peers are kept. */
  async electionStatus(type: string, cid: string): Promise<ElectionStatus> {
    const url = `${this.base}/admin/status?${this.baseQuery(type, cid)}`;
    const doc = await this.json(url, this.req('admin', true, { method: 'POST', retries: 2 }));
    return analyseElection(type, cid, readPeerMap(doc, url));
  }

  /** The info JSON of every peer of a base (`body` parsed when it is a JSON string). */
  async adminInfo(type: string, cid: string): Promise<PeerAnswer[]> {
    const url = `${this.base}/admin/info?${this.baseQuery(type, cid)}`;
    const answers = readPeerMap(await this.json(url, this.req('admin', true, { method: 'POST', retries: 2 })), url);
    for (const a of answers) {
      if (typeof a.body === 'string' && a.body.trim().startsWith('{')) {
        try {
          a.body = parseLenientJson(a.body);
        } catch {
          // keep the text: a peer that answered garbage is still reported
        }
      }
    }
    return answers;
  }

  /** The meta0 prefix map, entry by entry as it streams in. */
  async *meta0List(): AsyncGenerator<[prefix: string, services: string[]]> {
    const url = `${this.base}/admin/meta0_list`;
    const res = await this.http.stream(url, this.req('meta0', true, { maxBytes: 1 << 30, timeoutMs: this.options.timeoutMs ?? 300_000 }));
    const parser = new ObjectEntryParser();
    for await (const chunk of res.body) {
      let entries: [string, unknown][];
      try {
        entries = parser.push(chunk);
      } catch (err) {
        throw new PermanentError(`${url}: not a prefix map: ${(err as Error).message}`, { item: url });
      }
      for (const [prefix, services] of entries) {
        if (!Array.isArray(services)) throw new PermanentError(`${url}: prefix ${prefix} maps to ${JSON.stringify(services)}, not a list of services`, { item: url });
        yield [prefix, services.map(String)];
      }
    }
    if (!parser.complete) throw new TransientError(`${url}: the prefix map ended before its closing "}"`, { item: url });
  }
}
