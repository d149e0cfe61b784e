/**
 * openio-meta0 — the meta0 prefix map of an OpenIO SDS namespace (up to 65,536 prefixes,
 * each to its meta1 services), streamed from the proxy into a JSON Lines file, never held
 * whole, with metrics of how many prefixes each meta1 service holds.
 *
 * A stream cut mid-map is asked for again (up to twice) and only the prefixes not yet
 * written are kept; the file is published only when the whole map was read.
 */
import path from 'node:path';
import { mergeMap, pipe } from 'rxjs';
import { z } from 'zod';
import { classifyError } from '../runtime/errors.ts';
import { definePipeline, item } from '../runtime/pipeline.ts';
import { prometheus } from '../sinks/prometheus.ts';
import { snapshot } from '../sinks/snapshot.ts';
import { OpenIoProxy } from '../sources/http/openio/proxy.ts';
import { where } from '../sinks/where.ts';

export interface PrefixRow { kind: 'prefix'; prefix: string; services: string[] }
interface ServiceCountRow { kind: 'service'; ns: string; service: string; prefixes: number }
interface TotalRow { kind: 'total'; ns: string; prefixes: number }
type Row = PrefixRow | ServiceCountRow | TotalRow;

type Chunk = { kind: 'prefixes'; entries: [string, string[]][] } | { kind: 'summary'; perService: [string, number][]; total: number };

const ENTRIES_PER_ITEM = 4096;

const is = <K extends Row['kind']>(kind: K) => (r: Row): r is Extract<Row, { kind: K }> => r.kind === kind;

export default definePipeline({
  name: 'openio-meta0',
  description: 'OpenIO SDS meta0 prefix map, streamed into JSON Lines, with prefixes per meta1 service as metrics',
  params: z.object({
    proxy: z.string().url().describe('the proxy, e.g. http://127.0.0.1:6000'),
    ns: z.string().describe('the namespace'),
    out: z.string().default('.sluice/openio-meta0.jsonl').describe('where the map is written, one {prefix, services} per line'),
    timeoutMs: z.number().int().min(1).default(300_000).describe('total deadline of the map\'s request, ms'),
  }),
  permissions: ({ params: p }) => {
    const u = new URL(p.proxy);
    return { net: [`${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`], write: [path.dirname(p.out)] };
  },
  source: async function* (ctx) {
    const proxy = new OpenIoProxy(ctx.http, ctx.params.proxy, ctx.params.ns, { signal: ctx.signal, timeoutMs: ctx.params.timeoutMs });
    // bounded by the map's size (≤ 65,536 short keys), so a resumed stream writes each prefix once
    const seen = new Set<string>();
    const perService = new Map<string, number>();
    let sequence = 0;
    for (let attempt = 1; ; attempt++) {
      let batch: [string, string[]][] = [];
      try {
        for await (const [prefix, services] of proxy.meta0List()) {
          if (seen.has(prefix)) continue;
          seen.add(prefix);
          for (const s of services) perService.set(s, (perService.get(s) ?? 0) + 1);
          batch.push([prefix, services]);
          if (batch.length === ENTRIES_PER_ITEM) {
            yield item<Chunk>(`${proxy.base}/admin/meta0_list#${++sequence}`, { kind: 'prefixes', entries: batch });
            batch = [];
          }
        }
        if (batch.length) yield item<Chunk>(`${proxy.base}/admin/meta0_list#${++sequence}`, { kind: 'prefixes', entries: batch });
        break;
      } catch (err) {
        if (batch.length) yield item<Chunk>(`${proxy.base}/admin/meta0_list#${++sequence}`, { kind: 'prefixes', entries: batch });
        if (classifyError(err) !== 'transient' || attempt >= 3 || ctx.signal.aborted) throw err;
        ctx.log.warn(`openio-meta0: ${(err as Error).message}; asking again (${seen.size} prefixes read so far)`);
      }
    }
    yield item<Chunk>(`${proxy.base}/admin/meta0_list#summary`, { kind: 'summary', perService: [...perService], total: seen.size });
  },
  transform: (ctx) => pipe(mergeMap((chunk: Chunk): Row[] => (chunk.kind === 'prefixes'
    ? chunk.entries.map(([prefix, services]) => ({ kind: 'prefix', prefix, services }))
    : [
      ...chunk.perService.map(([service, prefixes]): Row => ({ kind: 'service', ns: ctx.params.ns, service, prefixes })),
      { kind: 'total', ns: ctx.params.ns, prefixes: chunk.total },
    ]))),
  sinks: ({ params: p }) => [
    where(is('prefix'), snapshot<Omit<PrefixRow, 'kind'>>({ path: p.out, format: 'jsonl' }), ({ prefix, services }) => ({ prefix, services })),
    where(is('service'), prometheus<ServiceCountRow>({ name: 'openio-meta0-services', resetEachRun: true, metrics: {
      openio_meta0_prefixes: { type: 'gauge', help: 'meta0 prefixes whose meta1 replicas include the service', labels: ['ns', 'service'], value: (r) => r.prefixes },
    } })),
    where(is('total'), prometheus<TotalRow>({ name: 'openio-meta0-total', resetEachRun: true, metrics: {
      openio_meta0_mapped_prefixes: { type: 'gauge', help: 'meta0 prefixes in the map (65,536 when complete)', labels: ['ns'], value: (r) => r.prefixes },
    } })),
  ],
});
