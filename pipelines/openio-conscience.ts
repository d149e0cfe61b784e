/**
 * openio-conscience — the services an OpenIO SDS conscience knows, per type, as
 * Prometheus metrics (score and up, labelled with the service's address, id and
 * location) and a JSON snapshot of every service with all its scores and tags.
 *
 * Down services show `tag.up: false` and score 0; answers can be cached, hence stale,
 * on the proxy's side: `openio_conscience_scrape_timestamp_seconds` says when we asked.
 * A service that vanished from the conscience loses its series at the next successful
 * run. `nan`/`inf` in real-valued tags (printed with %f) are read, not refused.
 */
import path from 'node:path';
import { mergeMap, pipe } from 'rxjs';
import { z } from 'zod';
import { definePipeline, item } from '../runtime/pipeline.ts';
import { prometheus } from '../sinks/prometheus.ts';
import { snapshot } from '../sinks/snapshot.ts';
import { OpenIoProxy, type ConscienceService } from '../sources/http/openio/proxy.ts';
import { where } from '../sinks/where.ts';

export interface ServiceRow {
  kind: 'service';
  ns: string;
  type: string;
  addr: string;
  service_id: string;
  location: string;
  volume: string;
  up: boolean;
  score: number;
  scores: Record<string, number>;
  tags: Record<string, string | number | boolean>;
  scrapedAt: string;
}

interface TypeRow {
  kind: 'type';
  ns: string;
  type: string;
  services: number;
  up: number;
  scrapedAt: number;
}

type Row = ServiceRow | TypeRow;

interface TypeList {
  type: string;
  services: ConscienceService[];
  scrapedAt: string;
}

export function serviceRows(ns: string, list: TypeList): Row[] {
  const rows: ServiceRow[] = list.services.map((s) => ({
    kind: 'service',
    ns: s.ns ?? ns,
    type: s.type ?? list.type,
    addr: s.addr,
    service_id: String(s.tags['tag.service_id'] ?? ''),
    location: String(s.tags['tag.loc'] ?? ''),
    volume: String(s.tags['tag.vol'] ?? ''),
    up: s.tags['tag.up'] === true,
    score: s.score,
    scores: s.scores,
    tags: s.tags,
    scrapedAt: list.scrapedAt,
  }));
  const types = new Map<string, TypeRow>();
  for (const r of rows) {
    const t = types.get(r.type) ?? { kind: 'type' as const, ns: r.ns, type: r.type, services: 0, up: 0, scrapedAt: Date.parse(list.scrapedAt) / 1000 };
    t.services++;
    if (r.up) t.up++;
    types.set(r.type, t);
  }
  if (list.type !== 'all' && !types.has(list.type)) types.set(list.type, { kind: 'type', ns, type: list.type, services: 0, up: 0, scrapedAt: Date.parse(list.scrapedAt) / 1000 });
  return [...rows, ...types.values()];
}

const SERVICE_LABELS = ['ns', 'type', 'addr', 'service_id', 'location'] as const;

export default definePipeline({
  name: 'openio-conscience',
  description: 'OpenIO SDS conscience services (score, up, location) as Prometheus metrics and a JSON snapshot',
  params: z.object({
    proxy: z.string().url().describe('the proxy, e.g. http://127.0.0.1:6000'),
    ns: z.string().describe('the namespace'),
    types: z.array(z.string()).default(['all']).describe('service types to list (meta0, meta1, meta2, rawx, rdir …; all = every type) (repeat)'),
    full: z.boolean().default(false).describe('ask for the full service descriptions (full=1)'),
    snapshot: z.string().default('.sluice/openio-conscience.json').describe('where the JSON snapshot is written'),
    timeoutMs: z.number().int().min(1).default(30_000).describe('total deadline of one request, ms'),
  }),
  permissions: ({ params: p }) => {
    const u = new URL(p.proxy);
    return { net: [`${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`], write: [path.dirname(p.snapshot)] };
  },
  onError: 'skip',
  source: async function* (ctx) {
    const proxy = new OpenIoProxy(ctx.http, ctx.params.proxy, ctx.params.ns, { signal: ctx.signal, timeoutMs: ctx.params.timeoutMs });
    for (const type of ctx.params.types) {
      const url = `${proxy.base}/conscience/list?type=${type}`;
      try {
        yield item<TypeList>(url, { type, services: await proxy.conscienceList(type, ctx.params.full), scrapedAt: new Date().toISOString() });
      } catch (err) {
        yield item<TypeList>(url, { type, services: [], scrapedAt: new Date().toISOString() }, { error: err });
      }
    }
  },
  transform: (ctx) => pipe(mergeMap((list: TypeList) => serviceRows(ctx.params.ns, list))),
  sinks: ({ params: p }) => [
    where((r: Row): r is ServiceRow => r.kind === 'service', snapshot<ServiceRow>({
      path: p.snapshot,
      wrap: (rows) => ({ ns: p.ns, services: rows.map(({ kind: _k, ...s }) => s).sort((a, b) => a.type.localeCompare(b.type) || a.addr.localeCompare(b.addr)) }),
    })),
    where((r: Row): r is ServiceRow => r.kind === 'service', prometheus<ServiceRow>({ name: 'openio-services', resetEachRun: true, metrics: {
      openio_service_score: { type: 'gauge', help: 'The conscience\'s score of the service (0 when down)', labels: SERVICE_LABELS, value: (r) => r.score },
      openio_service_up: { type: 'gauge', help: 'Whether the conscience says the service is up (tag.up)', labels: SERVICE_LABELS, value: (r) => (r.up ? 1 : 0) },
    } })),
    where((r: Row): r is TypeRow => r.kind === 'type', prometheus<TypeRow>({ name: 'openio-types', resetEachRun: true, metrics: {
      openio_conscience_services: { type: 'gauge', help: 'Services of the type the conscience lists', labels: ['ns', 'type'], value: (r) => r.services },
      openio_conscience_services_up: { type: 'gauge', help: 'Services of the type the conscience says are up', labels: ['ns', 'type'], value: (r) => r.up },
      openio_conscience_scrape_timestamp_seconds: { type: 'gauge', help: 'When the conscience list of the type was read', labels: ['ns', 'type'], value: (r) => r.scrapedAt },
    } })),
  ],
});
