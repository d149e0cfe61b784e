/**
 * pv-archiver-status — a Cassandra PV Archiver cluster's state as Prometheus metrics and
 * a JSON snapshot, from the admin API: which servers are online, how many channels are
 * in each state on each server, samples written and dropped.
 *
 * Channel states come from each server's channel list (`/channels/by-server/<id>`); a
 * server that is offline has no status for its channels (`statusAvailable: false`): its
 * channels count under `state="unknown"`. Series of a server or state that vanished are
 * dropped at the next successful run.
 */
import path from 'node:path';
import { mergeMap, pipe } from 'rxjs';
import { z } from 'zod';
import { definePipeline, item } from '../runtime/pipeline.ts';
import { prometheus } from '../sinks/prometheus.ts';
import { snapshot } from '../sinks/snapshot.ts';
import { PvArchiverAdmin, type ChannelInfo, type ClusterServer, type ServerStatus } from '../sources/http/pv-archiver/admin.ts';
import { where } from '../sinks/where.ts';

const STATES = ['ok', 'error', 'disconnected', 'disabled', 'initializing', 'destroyed'];

export interface PvStatusDocument {
  scrapedAt: string;
  url: string;
  thisServer: ServerStatus;
  cluster: ClusterServer[];
  channelsByServer: { serverId: string; serverName: string; statusAvailable: boolean; channels: ChannelInfo[] }[];
}

interface ServerRow { kind: 'server'; server_id: string; server_name: string; online: number; last_online: number }
interface StateRow { kind: 'state'; server_id: string; server_name: string; state: string; channels: number }
interface CounterRow { kind: 'counters'; server_id: string; server_name: string; written: number; dropped: number; cassandra_error: number }
interface DocumentRow extends PvStatusDocument { kind: 'document' }
type StatusRow = ServerRow | StateRow | CounterRow | DocumentRow;

export function statusRows(doc: PvStatusDocument): StatusRow[] {
  const rows: StatusRow[] = [{ kind: 'document', ...doc }];
  for (const s of doc.cluster) {
    rows.push({ kind: 'server', server_id: s.serverId, server_name: s.serverName, online: s.online ? 1 : 0, last_online: s.lastOnlineTime / 1000 });
  }
  for (const list of doc.channelsByServer) {
    const counts = new Map<string, number>(list.statusAvailable ? STATES.map((st) => [st, 0]) : []);
    let written = 0;
    let dropped = 0;
    for (const c of list.channels) {
      const state = list.statusAvailable && c.state ? c.state : 'unknown';
      counts.set(state, (counts.get(state) ?? 0) + 1);
      written += c.totalSamplesWritten ?? 0;
      dropped += c.totalSamplesDropped ?? 0;
    }
    for (const [state, n] of counts) rows.push({ kind: 'state', server_id: list.serverId, server_name: list.serverName, state, channels: n });
    if (list.statusAvailable) {
      const cassandraError = list.serverId === doc.thisServer.serverId && doc.thisServer.cassandraError ? 1 : 0;
      rows.push({ kind: 'counters', server_id: list.serverId, server_name: list.serverName, written, dropped, cassandra_error: cassandraError });
    }
  }
  return rows;
}

const is = <K extends StatusRow['kind']>(kind: K) => (r: StatusRow): r is Extract<StatusRow, { kind: K }> => r.kind === kind;

export default definePipeline({
  name: 'pv-archiver-status',
  description: 'Cassandra PV Archiver cluster status (servers online, channels by state, samples written/dropped) as metrics and a JSON snapshot',
  params: z.object({
    url: z.string().url().describe('the admin API base URL, e.g. http://archiver.example.org:4812'),
    snapshot: z.string().default('.sluice/pv-archiver-status.json').describe('where the JSON snapshot is written'),
    timeoutMs: z.number().int().min(1).default(30_000).describe('total deadline of one request, ms'),
  }),
  permissions: ({ params: p }) => {
    const u = new URL(p.url);
    return { net: [`${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`], write: [path.dirname(p.snapshot)] };
  },
  source: async function* (ctx) {
    const admin = new PvArchiverAdmin(ctx.http, ctx.params.url, { signal: ctx.signal, timeoutMs: ctx.params.timeoutMs });
    const [thisServer, cluster] = await Promise.all([admin.serverStatus(), admin.clusterStatus()]);
    const channelsByServer = await Promise.all(cluster.map(async (s) => ({ serverId: s.serverId, serverName: s.serverName, ...(await admin.serverChannels(s.serverId)) })));
    yield item<PvStatusDocument>(admin.base, { scrapedAt: new Date().toISOString(), url: ctx.params.url, thisServer, cluster, channelsByServer });
  },
  transform: () => pipe(mergeMap((doc: PvStatusDocument) => statusRows(doc))),
  sinks: ({ params: p }) => [
    where(is('document'), snapshot<DocumentRow>({ path: p.snapshot, wrap: (docs) => { const { kind: _k, ...doc } = docs[0]!; return doc; } })),
    where(is('server'), prometheus<ServerRow>({ name: 'pv-servers', resetEachRun: true, metrics: {
      pv_archiver_server_online: { type: 'gauge', help: 'Whether the archive server is online (1) or not (0), from the cluster status', labels: ['server_id', 'server_name'], value: (r) => r.online },
      pv_archiver_server_last_online_timestamp_seconds: { type: 'gauge', help: 'When the archive server was last seen online', labels: ['server_id', 'server_name'], value: (r) => r.last_online },
    } })),
    where(is('state'), prometheus<StateRow>({ name: 'pv-states', resetEachRun: true, metrics: {
      pv_archiver_channels: { type: 'gauge', help: 'Channels of an archive server by state ("unknown" while the server is offline)', labels: ['server_id', 'server_name', 'state'], value: (r) => r.channels },
    } })),
    where(is('counters'), prometheus<CounterRow>({ name: 'pv-counters', resetEachRun: true, metrics: {
      pv_archiver_samples_written: { type: 'gauge', help: 'Samples the server\'s channels have written since it started', labels: ['server_id', 'server_name'], value: (r) => r.written },
      pv_archiver_samples_dropped: { type: 'gauge', help: 'Samples the server\'s channels have dropped since it started', labels: ['server_id', 'server_name'], value: (r) => r.dropped },
      pv_archiver_cassandra_error: { type: 'gauge', help: 'Whether the server reports a Cassandra error (1) or not (0)', labels: ['server_id', 'server_name'], value: (r) => r.cassandra_error },
    } })),
  ],
});
