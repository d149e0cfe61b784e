/**
 * A local Cassandra PV Archiver (3.2.x API, see ../shared/specs/pv-archiver.md): the
 * archive access API (`/archive-access/api/1.0`, no auth) and the admin API
 * (`/admin/api/1.0`, Basic auth on POST, 403 without), on two ports, over one model the
 * test controls.
 *
 * Faithful where it matters to a client: sample times are written as bare int64 digits
 * (above 2^53), NaN and infinities as strings, the answer has one extra sample at or
 * before `start` and one at or after `end`, `count` picks the decimation level closest to
 * `(end-start)/count` and answers `minMaxDouble` samples, errors are 400/404/503 as the
 * server's, integers in admin answers are strings, path parameters are tilde-encoded,
 * and partial failures of import and commands are 500 with a full body.
 *
 * Failure injection beyond FaultyServer's: `cutOnce` (cut the next samples stream after
 * N samples, mid-array), `unterminatedOnce` (end the next one cleanly without `]`),
 * `cacheReady = false` (503), `databaseDown` (503 with `results: null` on commands).
 */
import { FaultyServer, type RequestInfo, type RouteResponse } from './faulty-server.ts';

export interface ModelSample {
  /** ns since the epoch */
  time: bigint;
  value: number | string | bigint | Array<number | string | bigint>;
  type?: 'double' | 'long' | 'enum' | 'string';
  severity?: string;
  status?: string;
}

export interface ModelChannel {
  name: string;
  serverId: string;
  controlSystemType?: string;
  /** decimation levels in seconds; 0 is raw */
  decimationLevels?: number[];
  retention?: Record<string, number>;
  enabled?: boolean;
  options?: Record<string, string>;
  state?: string;
  written?: number;
  dropped?: number;
  skippedBack?: number;
  errorMessage?: string | null;
  samples?: ModelSample[];
  units?: string;
}

export interface ModelServer {
  serverId: string;
  serverName: string;
  online: boolean;
  lastOnlineTime: number;
}

export interface PvArchiverModel {
  servers: ModelServer[];
  /** the server the admin API runs on */
  thisServer: string;
  channels: ModelChannel[];
  cacheReady?: boolean;
  databaseDown?: boolean;
  password?: string;
  /** channel names whose import or add fails */
  failing?: string[];
  cutOnce?: number;
  unterminatedOnce?: boolean;
  cassandraError?: string | null;
}

const ARCHIVE = '/archive-access/api/1.0';
const ADMIN = '/admin/api/1.0';

function json(doc: unknown, status = 200): RouteResponse {
  return { status, headers: { 'Content-Type': 'application/json;charset=UTF-8' }, body: typeof doc === 'string' ? doc : JSON.stringify(doc) };
}

function error(status: number, message: string): RouteResponse {
  return json({ status, error: status === 400 ? 'Bad Request' : status === 404 ? 'Not Found' : 'Service Unavailable', message }, status);
}

/** The server's decoding of a path segment: percent-decoding with `+` as a space. */
function formDecode(segment: string): string {
  return decodeURIComponent(segment.replace(/\+/g, ' '));
}

export function tildeDecode(segment: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < segment.length; i++) {
    if (segment[i] === '~') {
      bytes.push(parseInt(segment.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(segment.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

function number(v: number): string {
  if (Number.isNaN(v)) return '"NaN"';
  if (v === Infinity) return '"Infinity"';
  if (v === -Infinity) return '"-Infinity"';
  return Number.isInteger(v) ? `${v}.0` : String(v);
}

function valueText(v: number | string | bigint, type: string): string {
  if (type === 'string') return JSON.stringify(String(v));
  if (typeof v === 'bigint') return v.toString();
  if (type === 'long' || type === 'enum') return String(v);
  return typeof v === 'number' ? number(v) : JSON.stringify(v);
}

/** One sample as the server writes it (field order fixed, time as bare digits). */
export function sampleJson(channel: ModelChannel, s: ModelSample): string {
  const type = s.type ?? 'double';
  const values = Array.isArray(s.value) ? s.value : [s.value];
  const meta = type === 'string' ? ''
    : type === 'enum' ? ',"metaData":{"type":"enum","states":["Off","On"]}'
    : `,"metaData":{"type":"numeric","precision":2,"units":${JSON.stringify(channel.units ?? 'V')},"displayLow":0.0,"displayHigh":0.0,"warnLow":"NaN","warnHigh":12.0,"alarmLow":"NaN","alarmHigh":15.0}`;
  return `{"time":${s.time},"severity":{"level":${JSON.stringify(s.severity ?? 'OK')},"hasValue":true},"status":${JSON.stringify(s.status ?? 'NO_ALARM')},"quality":"Original"${meta},"type":"${type}","value":[${values.map((v) => valueText(v, type)).join(',')}]}`;
}

function decimatedJson(time: bigint, mean: number, min: number, max: number): string {
  return `{"time":${time},"severity":{"level":"OK","hasValue":true},"status":"NO_ALARM","quality":"Interpolated","metaData":{"type":"numeric","precision":2,"units":"V","displayLow":0.0,"displayHigh":0.0,"warnLow":"NaN","warnHigh":"NaN","alarmLow":"NaN","alarmHigh":"NaN"},"type":"minMaxDouble","value":[${number(mean)}],"minimum":${number(min)},"maximum":${number(max)}}`;
}

/** The samples an answer holds: the last at or before start, those in between, the first at or after end. */
function window<T extends { time: bigint }>(all: T[], start: bigint, end: bigint): T[] {
  const sorted = [...all].sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  const before = sorted.filter((s) => s.time <= start).at(-1);
  const inside = sorted.filter((s) => s.time > start && s.time < end);
  const after = sorted.find((s) => s.time >= end && s !== before);
  return [...(before ? [before] : []), ...inside, ...(after ? [after] : [])];
}

function channelDoc(c: ModelChannel, model: PvArchiverModel, withStatus: boolean): Record<string, unknown> {
  const server = model.servers.find((s) => s.serverId === c.serverId);
  const levels = c.decimationLevels ?? [0];
  const doc: Record<string, unknown> = {
    channelDataId: `00000000-0000-4000-8000-${Buffer.from(c.name).toString('hex').slice(0, 12).padEnd(12, '0')}`,
    channelName: c.name,
    controlSystemName: 'Channel Access',
    controlSystemType: c.controlSystemType ?? 'channel_access',
    decimationLevels: levels.map(String),
    serverId: c.serverId,
    serverName: server?.serverName ?? '',
  };
  if (withStatus) {
    const online = server?.online ?? false;
    Object.assign(doc, {
      decimationLevelToRetentionPeriod: Object.fromEntries(levels.map((l) => [String(l), String(c.retention?.[l] ?? 0)])),
      enabled: c.enabled ?? true,
      errorMessage: online ? c.errorMessage ?? null : null,
      options: c.options ?? {},
      state: online ? c.state ?? 'ok' : null,
      totalSamplesDropped: online ? String(c.dropped ?? 0) : null,
      totalSamplesSkippedBack: online ? String(c.skippedBack ?? 0) : null,
      totalSamplesWritten: online ? String(c.written ?? 0) : null,
    });
  }
  return doc;
}

export function configurationXml(channels: ModelChannel[]): string {
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<server-configuration xmlns="http://www.aquenos.com/2016/xmlns/cassandra-pv-archiver-configuration">'];
  for (const c of channels) {
    lines.push(`  <channel name="${esc(c.name)}" control-system-type="${esc(c.controlSystemType ?? 'channel_access')}" enabled="${c.enabled ?? true}">`);
    for (const l of c.decimationLevels ?? [0]) lines.push(`    <decimation-level resolution="${l}" retention-period="${c.retention?.[l] ?? 0}"/>`);
    for (const [k, v] of Object.entries(c.options ?? {})) lines.push(`    <option name="${esc(k)}" value="${esc(v)}"/>`);
    lines.push('  </channel>');
  }
  lines.push('</server-configuration>', '');
  return lines.join('\n');
}

function parseConfigurationXml(xml: string): { name: string; enabled: boolean; levels: number[] }[] {
  const out: { name: string; enabled: boolean; levels: number[] }[] = [];
  for (const m of xml.matchAll(/<channel\s+([^>]*)>([\s\S]*?)<\/channel>/g)) {
    const attr = (name: string) => new RegExp(`${name}="([^"]*)"`).exec(m[1]!)?.[1];
    const name = attr('name');
    if (!name) continue;
    const levels = [...m[2]!.matchAll(/resolution="(\d+)"/g)].map((l) => Number(l[1]));
    out.push({ name: name.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&amp;/g, '&'), enabled: attr('enabled') !== 'false', levels: levels.length ? levels : [0] });
  }
  return out;
}

export function archiveRoute(model: PvArchiverModel) {
  return (req: RequestInfo): RouteResponse | undefined => {
    if (!req.path.startsWith(ARCHIVE)) return undefined;
    const rest = req.path.slice(ARCHIVE.length);
    if (req.method !== 'GET') return error(405, 'method not allowed');
    if (rest === '/archive/' || rest === '/archive') return json([{ key: 1, name: 'Cassandra', description: 'Cassandra PV Archive' }]);
    let m = /^\/archive\/1\/channels-by-pattern\/(.+)$/.exec(rest);
    if (m) {
      const re = globToRegExp(formDecode(m[1]!));
      return json(model.channels.map((c) => c.name).filter((n) => re.test(n)).sort());
    }
    m = /^\/archive\/1\/channels-by-regexp\/(.+)$/.exec(rest);
    if (m) {
      let re: RegExp;
      try {
        re = new RegExp(`^(?:${formDecode(m[1]!)})$`);
      } catch {
        return error(400, 'Invalid regular expression.');
      }
      return json(model.channels.map((c) => c.name).filter((n) => re.test(n)).sort());
    }
    m = /^\/archive\/1\/samples\/(.+)$/.exec(rest);
    if (!m) return error(404, 'No handler');
    const name = formDecode(m[1]!);
    const q = req.url.searchParams;
    const isInt = (v: string | null) => v !== null && /^-?\d+$/.test(v);
    if (!isInt(q.get('start')) || !isInt(q.get('end'))) return error(400, 'start and end must be given as integers');
    const start = BigInt(q.get('start')!);
    const end = BigInt(q.get('end')!);
    const countText = q.get('count');
    if (start < 0n || end < start || (countText !== null && (!isInt(countText) || Number(countText) <= 0))) return error(400, 'invalid time range or count');
    if (model.cacheReady === false) return error(503, 'The channel information cache is not ready yet.');
    const channel = model.channels.find((c) => c.name === name);
    if (!channel) return error(404, `channel "${name}" not found`);
    let pieces: string[];
    const levels = (channel.decimationLevels ?? [0]).filter((l) => l > 0);
    if (countText !== null && levels.length) {
      const periodS = Number(end - start) / Number(countText) / 1e9;
      const level = [0, ...levels].reduce((best, l) => (Math.abs(l - periodS) < Math.abs(best - periodS) ? l : best), 0);
      if (level > 0) {
        const buckets = new Map<bigint, number[]>();
        const step = BigInt(level) * 1_000_000_000n;
        for (const s of channel.samples ?? []) {
          const at = (s.time / step) * step;
          const v = Number(Array.isArray(s.value) ? s.value[0] : s.value);
          buckets.set(at, [...(buckets.get(at) ?? []), v]);
        }
        const decimated = [...buckets].map(([time, vs]) => ({ time, vs }));
        pieces = window(decimated, start, end).map((d) => decimatedJson(d.time, d.vs.reduce((a, b) => a + b, 0) / d.vs.length, Math.min(...d.vs), Math.max(...d.vs)));
      } else {
        pieces = window(channel.samples ?? [], start, end).map((s) => sampleJson(channel, s));
      }
    } else {
      pieces = window(channel.samples ?? [], start, end).map((s) => sampleJson(channel, s));
    }
    if (model.cutOnce !== undefined) {
      const n = model.cutOnce;
      model.cutOnce = undefined;
      // a stream that dies mid-array: the cut falls inside the next sample's text
      const partial = pieces[n] ? pieces[n]!.slice(0, 25) : '';
      return { headers: { 'Content-Type': 'application/json;charset=UTF-8' }, chunks: ['[', pieces.slice(0, n).join(','), ...(n > 0 && partial ? [','] : []), partial], cutAfterChunks: true };
    }
    if (model.unterminatedOnce) {
      model.unterminatedOnce = false;
      const half = Math.ceil(pieces.length / 2);
      return { headers: { 'Content-Type': 'application/json;charset=UTF-8' }, chunks: ['[', pieces.slice(0, half).join(',')] };
    }
    return { headers: { 'Content-Type': 'application/json;charset=UTF-8' }, body: `[${pieces.join(',')}]` };
  };
}

export function adminRoute(model: PvArchiverModel) {
  return (req: RequestInfo): RouteResponse | undefined => {
    if (!req.path.startsWith(ADMIN)) return undefined;
    const rest = req.path.slice(ADMIN.length);
    if (req.method === 'POST') {
      const auth = String(req.headers.authorization ?? '');
      const expected = `Basic ${Buffer.from(`admin:${model.password ?? 'secret'}`).toString('base64')}`;
      if (auth !== expected) return { status: 403, headers: { 'Content-Type': 'application/json' }, body: '{"status":403,"error":"Forbidden","message":"Access Denied"}' };
    }
    const thisServer = model.servers.find((s) => s.serverId === model.thisServer)!;
    if (req.method === 'GET' && rest === '/cluster-status') {
      return json({ servers: model.servers.map((s) => ({ lastOnlineTime: String(s.lastOnlineTime), online: s.online, serverId: s.serverId, serverName: s.serverName })) });
    }
    if (req.method === 'GET' && rest === '/server-status/this-server') {
      const mine = model.channels.filter((c) => c.serverId === thisServer.serverId);
      return json({
        cassandraClusterName: 'Test Cluster', cassandraError: model.cassandraError ?? null, cassandraKeyspaceName: 'pv_archive',
        channelsDisconnected: String(mine.filter((c) => c.state === 'disconnected').length),
        channelsError: String(mine.filter((c) => c.state === 'error').length),
        channelsTotal: String(mine.length),
        serverId: thisServer.serverId, serverLastOnlineTime: String(thisServer.lastOnlineTime), serverName: thisServer.serverName, serverOnline: thisServer.online,
        totalSamplesDropped: String(mine.reduce((a, c) => a + (c.dropped ?? 0), 0)),
        totalSamplesWritten: String(mine.reduce((a, c) => a + (c.written ?? 0), 0)),
      });
    }
    if (req.method === 'GET' && rest === '/channels/all') return json({ channels: model.channels.map((c) => channelDoc(c, model, false)) });
    let m = /^\/channels\/all\/by-name\/([^/]+)$/.exec(rest);
    if (req.method === 'GET' && m) {
      const c = model.channels.find((x) => x.name === tildeDecode(m![1]!));
      return c ? json(channelDoc(c, model, true)) : error(404, 'channel not found');
    }
    m = /^\/channels\/by-server\/([^/]+)(\/export|\/import)?$/.exec(rest);
    if (m) {
      const serverId = tildeDecode(m[1]!);
      const server = model.servers.find((s) => s.serverId === serverId);
      if (!server) return error(404, 'server not found');
      const mine = model.channels.filter((c) => c.serverId === serverId);
      if (req.method === 'GET' && !m[2]) return json({ channels: mine.map((c) => channelDoc(c, model, true)), statusAvailable: server.online });
      if (req.method === 'GET' && m[2] === '/export') return json({ configurationFile: Buffer.from(configurationXml(mine)).toString('base64') });
      if (req.method === 'POST' && m[2] === '/import') {
        const body = JSON.parse(req.body.toString('utf8')) as { addChannels: boolean; removeChannels: boolean; updateChannels: boolean; simulate: boolean; configurationFile: string };
        const wanted = parseConfigurationXml(Buffer.from(body.configurationFile, 'base64').toString('utf8'));
        const result = { addOrUpdateFailed: {} as Record<string, string>, addOrUpdateSucceeded: [] as string[], removeFailed: {} as Record<string, string>, removeSucceeded: [] as string[], errorMessage: null as string | null };
        for (const w of wanted) {
          const existing = model.channels.find((c) => c.name === w.name);
          if (existing ? !body.updateChannels : !body.addChannels) continue;
          if (model.failing?.includes(w.name) || (existing && existing.serverId !== serverId)) {
            result.addOrUpdateFailed[w.name] = existing && existing.serverId !== serverId ? 'The channel exists on a different server.' : 'Could not write the channel configuration.';
            continue;
          }
          result.addOrUpdateSucceeded.push(w.name);
          if (!body.simulate) {
            if (existing) Object.assign(existing, { enabled: w.enabled, decimationLevels: w.levels });
            else model.channels.push({ name: w.name, serverId, enabled: w.enabled, decimationLevels: w.levels, samples: [] });
          }
        }
        if (body.removeChannels) {
          for (const c of mine.filter((x) => !wanted.some((w) => w.name === x.name))) {
            result.removeSucceeded.push(c.name);
            if (!body.simulate) model.channels.splice(model.channels.indexOf(c), 1);
          }
        }
        const failed = Object.keys(result.addOrUpdateFailed).length + Object.keys(result.removeFailed).length;
        return json(result, failed ? 500 : 200);
      }
    }
    if (req.method === 'POST' && rest === '/run-archive-configuration-commands') {
      if (model.databaseDown) return json({ errorMessage: 'Could not access the database: timeout', results: null }, 503);
      const body = JSON.parse(req.body.toString('utf8')) as { commands: ({ commandType: string } & Record<string, unknown>)[] };
      const results = body.commands.map((command) => {
        const fail = (errorMessage: string) => ({ command, success: false, errorMessage });
        const name = String(command.channelName ?? command.oldChannelName ?? '');
        const existing = model.channels.find((c) => c.name === name);
        if (model.failing?.includes(name)) return fail('The operation failed.');
        switch (command.commandType) {
          case 'add_channel':
            if (existing) return fail(`The channel "${name}" cannot be added because it already exists.`);
            model.channels.push({ name, serverId: String(command.serverId), decimationLevels: [0], samples: [] });
            return { command, success: true };
          case 'add_or_update_channel':
            if (existing) existing.enabled = command.enabled !== false;
            else model.channels.push({ name, serverId: String(command.serverId), enabled: command.enabled !== false, samples: [] });
            return { command, success: true };
          case 'remove_channel':
            if (!existing) return fail(`The channel "${name}" cannot be removed because it does not exist.`);
            model.channels.splice(model.channels.indexOf(existing), 1);
            return { command, success: true };
          case 'rename_channel':
            if (!existing) return fail(`The channel "${name}" cannot be renamed because it does not exist.`);
            existing.name = String(command.newChannelName);
            return { command, success: true };
          case 'move_channel':
            if (!existing) return fail(`The channel "${name}" cannot be moved because it does not exist.`);
            existing.serverId = String(command.newServerId);
            return { command, success: true };
          case 'refresh_channel':
          case 'update_channel':
            if (!existing) return fail(`The channel "${name}" does not exist.`);
            if (typeof command.enabled === 'boolean') existing.enabled = command.enabled;
            return { command, success: true };
          default:
            return fail(`Unknown command type "${command.commandType}".`);
        }
      });
      const anyFailed = results.some((r) => !r.success);
      return json({ errorMessage: null, results }, anyFailed ? 500 : 200);
    }
    return json({ status: 404, message: 'No handler found' }, 404);
  };
}

/** Start both APIs: archive access and admin, each on its own free port. */
export async function startPvArchiver(model: PvArchiverModel): Promise<{ archive: FaultyServer; admin: FaultyServer; model: PvArchiverModel; close(): Promise<void> }> {
  const archive = await new FaultyServer(archiveRoute(model)).start();
  const admin = await new FaultyServer(adminRoute(model)).start();
  return { archive, admin, model, close: async () => { await archive.close(); await admin.close(); } };
}
