/**
 * openio-elections — election status of OpenIO SDS bases (meta1/meta2 …) on every peer,
 * as records and metrics that show the master, the slaves, and the peers that failed
 * (which the old Python client silently dropped), plus each peer's election counters
 * from `admin/info`.
 *
 * A base is healthy when exactly one peer answers as master, every slave names that
 * master, and no peer failed. Each base is one item: a base whose status cannot be read
 * (a 503 after its Retry-After retries, an unknown base) fails alone.
 */
import path from 'node:path';
import { mergeMap, pipe } from 'rxjs';
import { z } from 'zod';
import { definePipeline, item } from '../runtime/pipeline.ts';
import { prometheus } from '../sinks/prometheus.ts';
import { snapshot } from '../sinks/snapshot.ts';
import { OpenIoProxy, type ElectionStatus, type PeerAnswer } from '../sources/http/openio/proxy.ts';
import { where } from '../sinks/where.ts';

const ELECTION_STATES = ['total', 'none', 'pending', 'failed', 'slave', 'master'] as const;

interface BaseResult {
  ns: string;
  election: ElectionStatus;
  info: PeerAnswer[];
  scrapedAt: string;
}

interface BaseRow extends ElectionStatus { kind: 'base'; ns: string; base: string; scrapedAt: string; info: { peer: string; elections?: Record<string, number>; error?: string }[] }
interface RoleRow { kind: 'role'; ns: string; type: string; base: string; role: string; peers: number }
interface PeerRow { kind: 'peer'; ns: string; type: string; base: string; peer: string; failed: number }
interface CounterRow { kind: 'counter'; ns: string; type: string; service: string; state: string; value: number }
type Row = BaseRow | RoleRow | PeerRow | CounterRow;

export function electionRows(r: BaseResult): Row[] {
  const e = r.election;
  const info = r.info.map((a) => {
    const elections = (a.body as { elections?: Record<string, unknown> } | null)?.elections;
    return elections && typeof elections === 'object'
      ? { peer: a.peer, elections: Object.fromEntries(Object.entries(elections).filter(([, v]) => typeof v === 'number')) as Record<string, number> }
      : { peer: a.peer, error: `${a.status} ${a.message}`.trim() };
  });
  const rows: Row[] = [{ kind: 'base', ns: r.ns, base: e.cid, scrapedAt: r.scrapedAt, ...e, info }];
  for (const role of ['master', 'slave', 'failed']) {
    rows.push({ kind: 'role', ns: r.ns, type: e.type, base: e.cid, role, peers: e.peers.filter((p) => p.role === role).length });
  }
  for (const p of e.peers) rows.push({ kind: 'peer', ns: r.ns, type: e.type, base: e.cid, peer: p.peer, failed: p.role === 'failed' ? 1 : 0 });
  for (const i of info) {
    if (!i.elections) continue;
    for (const state of ELECTION_STATES) {
      if (typeof i.elections[state] === 'number') rows.push({ kind: 'counter', ns: r.ns, type: e.type, service: i.peer, state, value: i.elections[state]! });
    }
  }
  return rows;
}

const is = <K extends Row['kind']>(kind: K) => (r: Row): r is Extract<Row, { kind: K }> => r.kind === kind;

export default definePipeline({
  name: 'openio-elections',
  description: 'OpenIO SDS election status per base (master, slaves, failed peers) and peers\' election counters, as records and metrics',
  params: z.object({
    proxy: z.string().url().describe('the proxy, e.g. http://127.0.0.1:6000'),
    ns: z.string().describe('the namespace'),
    type: z.string().default('meta2').describe('the service type of the bases (meta1, meta2 …)'),
    cid: z.array(z.string().regex(/^[0-9A-Fa-f]{64}$/, 'a container id is 64 hex digits')).min(1).describe('bases to check, by container id (repeat)'),
    info: z.boolean().default(true).describe('also read each peer\'s admin/info election counters'),
    snapshot: z.string().default('.sluice/openio-elections.json').describe('where the JSON snapshot (one entry per base) is written'),
    timeoutMs: z.number().int().min(1).default(30_000).describe('total deadline of one request, ms'),
  }),
  permissions: ({ params: p }) => {
    const u = new URL(p.proxy);
    return { net: [`${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`], write: [path.dirname(p.snapshot)] };
  },
  onError: 'skip',
  maxInFlight: 8,
  source: (ctx) => ctx.params.cid.map((cid) => item(`${ctx.params.ns}/${ctx.params.type}/${cid.toUpperCase()}`, cid.toUpperCase())),
  transform: (ctx) => {
    const proxy = new OpenIoProxy(ctx.http, ctx.params.proxy, ctx.params.ns, { signal: ctx.signal, timeoutMs: ctx.params.timeoutMs });
    return pipe(mergeMap(async (cid: string) => {
      const [election, info] = await Promise.all([
        proxy.electionStatus(ctx.params.type, cid),
        ctx.params.info ? proxy.adminInfo(ctx.params.type, cid) : Promise.resolve([]),
      ]);
      if (!election.healthy) ctx.log.warn(`openio: base ${ctx.params.type}/${cid}: ${election.problems.join('; ')}`);
      return electionRows({ ns: ctx.params.ns, election, info, scrapedAt: new Date().toISOString() });
    }), mergeMap((rows) => rows));
  },
  sinks: ({ params: p }) => [
    where(is('base'), snapshot<BaseRow>({ path: p.snapshot, sortBy: 'base', wrap: (rows) => ({ ns: p.ns, type: p.type, bases: rows.map(({ kind: _k, ...b }) => b) }) })),
    where(is('base'), prometheus<BaseRow>({ name: 'openio-bases', resetEachRun: true, metrics: {
      openio_election_healthy: { type: 'gauge', help: 'Whether the base has exactly one master that every slave names, and no failed peer', labels: ['ns', 'type', 'base'], value: (r) => (r.healthy ? 1 : 0) },
      openio_election_claimed_masters: { type: 'gauge', help: 'Distinct addresses the base\'s peers name as master (1 when they agree)', labels: ['ns', 'type', 'base'], value: (r) => r.claimedMasters.length },
    } })),
    where(is('role'), prometheus<RoleRow>({ name: 'openio-roles', resetEachRun: true, metrics: {
      openio_election_peers: { type: 'gauge', help: 'Peers of the base by role: master, slave, failed', labels: ['ns', 'type', 'base', 'role'], value: (r) => r.peers },
    } })),
    where(is('peer'), prometheus<PeerRow>({ name: 'openio-peers', resetEachRun: true, metrics: {
      openio_election_peer_failed: { type: 'gauge', help: 'Whether the peer failed to answer the election status (1) or answered as master or slave (0)', labels: ['ns', 'type', 'base', 'peer'], value: (r) => r.failed },
    } })),
    where(is('counter'), prometheus<CounterRow>({ name: 'openio-election-counters', resetEachRun: true, metrics: {
      openio_service_elections: { type: 'gauge', help: 'Elections the service holds, by state (admin/info)', labels: ['ns', 'type', 'service', 'state'], value: (r) => r.value },
    } })),
  ],
});
