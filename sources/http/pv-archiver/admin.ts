/**
 * `PvArchiverAdmin`: the Cassandra PV Archiver's administrative API
 * (`<base>/admin/api/1.0`, port 4812): cluster and server status, channel lists and
 * channel details, export and import of a server's configuration, and archive
 * configuration commands.
 *
 * GET needs no credentials; POST needs HTTP Basic as `admin` (the server answers 403,
 * not 401, without them). Integers come as strings and are read as numbers. Path
 * parameters use the server's tilde encoding (`a/b` → `a~2Fb`).
 *
 * Partial results are results: an import where some channels failed, and a command
 * batch where some commands failed, come back as 500 with a full body; both are returned
 * (`ok: false`) with every per-channel or per-command outcome, never thrown. A 503 with
 * `results: null` (a database error) is a transient error.
 *
 * @example
 * ```ts
 * const admin = new PvArchiverAdmin(ctx.http, 'http://archiver:4812', { password: process.env.PV_ARCHIVER_ADMIN_PASSWORD });
 * const status = await admin.serverStatus();
 * const { results } = await admin.runCommands([{ commandType: 'remove_channel', channelName: 'old' }]);
 * ```
 */
import { PermanentError, TransientError } from '../../../runtime/errors.ts';
import { HttpError, type HttpClient, type HttpRequestOptions } from '../../../runtime/http-client.ts';

export interface ClusterServer {
  serverId: string;
  serverName: string;
  online: boolean;
  /** ms since the epoch */
  lastOnlineTime: number;
}

export interface ServerStatus {
  serverId: string;
  serverName: string;
  serverOnline: boolean;
  serverLastOnlineTime: number;
  cassandraClusterName?: string;
  cassandraKeyspaceName?: string;
  cassandraError?: string | null;
  channelsTotal: number;
  channelsDisconnected: number;
  channelsError: number;
  totalSamplesWritten: number;
  totalSamplesDropped: number;
}

export interface ChannelInfo {
  channelName: string;
  channelDataId?: string;
  controlSystemName?: string;
  controlSystemType?: string;
  decimationLevels: number[];
  serverId: string;
  serverName?: string;
  /** only with status (by-server lists and single channels) */
  decimationLevelToRetentionPeriod?: Record<string, number>;
  enabled?: boolean;
  errorMessage?: string | null;
  options?: Record<string, string>;
  /** `ok`, `error`, `disconnected`, `disabled`, `initializing`, `destroyed`; null when the server is offline */
  state?: string | null;
  totalSamplesDropped?: number | null;
  totalSamplesSkippedBack?: number | null;
  totalSamplesWritten?: number | null;
}

export interface ImportOptions {
  addChannels?: boolean;
  removeChannels?: boolean;
  updateChannels?: boolean;
  simulate?: boolean;
}

export interface ImportResult {
  /** false when some channel failed (the server answered 500) */
  ok: boolean;
  addOrUpdateSucceeded: string[];
  addOrUpdateFailed: Record<string, string>;
  removeSucceeded: string[];
  removeFailed: Record<string, string>;
  errorMessage: string | null;
}

export type ArchiveCommand = { commandType: string } & Record<string, unknown>;

export interface CommandResult {
  command: ArchiveCommand;
  success: boolean;
  errorMessage?: string | null;
}

export interface CommandsResult {
  /** false when some command failed (the server answered 500) */
  ok: boolean;
  errorMessage: string | null;
  results: CommandResult[];
}

export interface AdminOptions {
  /** for POST: HTTP Basic as this user (default `admin`) */
  username?: string;
  password?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The server's tilde encoding of a path parameter: bytes other than A-Za-z0-9-_ become ~HH. */
export function tildeEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `~${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** An integer the server sent as a string (or a number); undefined when absent. */
function int(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  return undefined;
}

function intOrNull(v: unknown): number | null | undefined {
  return v === null ? null : int(v);
}

function toChannel(raw: Record<string, unknown>): ChannelInfo {
  const c: ChannelInfo = {
    channelName: String(raw.channelName ?? ''),
    decimationLevels: Array.isArray(raw.decimationLevels) ? raw.decimationLevels.map((l) => int(l) ?? 0) : [],
    serverId: String(raw.serverId ?? ''),
  };
  for (const key of ['channelDataId', 'controlSystemName', 'controlSystemType', 'serverName'] as const) {
    if (typeof raw[key] === 'string') c[key] = raw[key] as string;
  }
  if (raw.decimationLevelToRetentionPeriod && typeof raw.decimationLevelToRetentionPeriod === 'object') {
    c.decimationLevelToRetentionPeriod = Object.fromEntries(
      Object.entries(raw.decimationLevelToRetentionPeriod as Record<string, unknown>).map(([k, v]) => [k, int(v) ?? 0]),
    );
  }
  if (typeof raw.enabled === 'boolean') c.enabled = raw.enabled;
  if ('errorMessage' in raw) c.errorMessage = (raw.errorMessage as string | null) ?? null;
  if (raw.options && typeof raw.options === 'object') c.options = raw.options as Record<string, string>;
  if ('state' in raw) c.state = typeof raw.state === 'string' ? raw.state : null;
  for (const key of ['totalSamplesDropped', 'totalSamplesSkippedBack', 'totalSamplesWritten'] as const) {
    if (key in raw) c[key] = intOrNull(raw[key]);
  }
  return c;
}

export class PvArchiverAdmin {
  readonly base: string;
  constructor(private readonly http: HttpClient, baseUrl: string, private readonly options: AdminOptions = {}) {
    this.base = `${baseUrl.replace(/\/+$/, '')}/admin/api/1.0`;
  }

  private get(path: string, extra: HttpRequestOptions = {}): Promise<Record<string, unknown>> {
    return this.http.json(`${this.base}${path}`, { timeoutMs: this.options.timeoutMs ?? 30_000, signal: this.options.signal, kind: 'admin', maxBytes: 64 << 20, ...extra });
  }

  async clusterStatus(): Promise<ClusterServer[]> {
    const doc = await this.get('/cluster-status');
    const servers = Array.isArray(doc.servers) ? (doc.servers as Record<string, unknown>[]) : [];
    return servers.map((s) => ({
      serverId: String(s.serverId ?? ''),
      serverName: String(s.serverName ?? ''),
      online: s.online === true,
      lastOnlineTime: int(s.lastOnlineTime) ?? 0,
    }));
  }

  async serverStatus(): Promise<ServerStatus> {
    const s = await this.get('/server-status/this-server');
    return {
      serverId: String(s.serverId ?? ''),
      serverName: String(s.serverName ?? ''),
      serverOnline: s.serverOnline === true,
      serverLastOnlineTime: int(s.serverLastOnlineTime) ?? 0,
      cassandraClusterName: typeof s.cassandraClusterName === 'string' ? s.cassandraClusterName : undefined,
      cassandraKeyspaceName: typeof s.cassandraKeyspaceName === 'string' ? s.cassandraKeyspaceName : undefined,
      cassandraError: typeof s.cassandraError === 'string' ? s.cassandraError : null,
      channelsTotal: int(s.channelsTotal) ?? 0,
      channelsDisconnected: int(s.channelsDisconnected) ?? 0,
      channelsError: int(s.channelsError) ?? 0,
      totalSamplesWritten: int(s.totalSamplesWritten) ?? 0,
      totalSamplesDropped: int(s.totalSamplesDropped) ?? 0,
    };
  }

  /** Every channel of the cluster (no status). */
  async allChannels(): Promise<ChannelInfo[]> {
    const doc = await this.get('/channels/all');
    return (Array.isArray(doc.channels) ? (doc.channels as Record<string, unknown>[]) : []).map(toChannel);
  }

  /** The channels of one server, with their status (`statusAvailable` false when the server is offline). */
  async serverChannels(serverId: string): Promise<{ channels: ChannelInfo[]; statusAvailable: boolean }> {
    const doc = await this.get(`/channels/by-server/${tildeEncode(serverId)}`);
    return {
      channels: (Array.isArray(doc.channels) ? (doc.channels as Record<string, unknown>[]) : []).map(toChannel),
      statusAvailable: doc.statusAvailable === true,
    };
  }

  /** One channel by name; undefined when there is none (404). */
  async channel(name: string): Promise<ChannelInfo | undefined> {
    try {
      return toChannel(await this.get(`/channels/all/by-name/${tildeEncode(name)}`));
    } catch (err) {
      if (err instanceof HttpError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** A server's channel configuration, as the XML file the server writes. */
  async exportConfiguration(serverId: string): Promise<Buffer> {
    const url = `${this.base}/channels/by-server/${tildeEncode(serverId)}/export`;
    const doc = await this.get(`/channels/by-server/${tildeEncode(serverId)}/export`);
    if (typeof doc.configurationFile !== 'string') throw new PermanentError(`${url}: the answer has no configurationFile`, { item: url });
    return Buffer.from(doc.configurationFile, 'base64');
  }

  /** Import an XML configuration into a server; a 500 with per-channel results is a partial result, returned. */
  async importConfiguration(serverId: string, configurationFile: Buffer, options: ImportOptions = {}): Promise<ImportResult> {
    const url = `${this.base}/channels/by-server/${tildeEncode(serverId)}/import`;
    const doc = await this.post(url, {
      addChannels: options.addChannels ?? false,
      removeChannels: options.removeChannels ?? false,
      updateChannels: options.updateChannels ?? false,
      simulate: options.simulate ?? false,
      configurationFile: configurationFile.toString('base64'),
    }, (d) => Array.isArray(d.addOrUpdateSucceeded) || typeof d.addOrUpdateFailed === 'object');
    return {
      ok: doc.status < 400,
      addOrUpdateSucceeded: (doc.body.addOrUpdateSucceeded as string[] | undefined) ?? [],
      addOrUpdateFailed: (doc.body.addOrUpdateFailed as Record<string, string> | undefined) ?? {},
      removeSucceeded: (doc.body.removeSucceeded as string[] | undefined) ?? [],
      removeFailed: (doc.body.removeFailed as Record<string, string> | undefined) ?? {},
      errorMessage: (doc.body.errorMessage as string | null | undefined) ?? null,
    };
  }

  /** Run archive configuration commands; a 500 with per-command results is a partial result, returned. */
  async runCommands(commands: readonly ArchiveCommand[]): Promise<CommandsResult> {
    const url = `${this.base}/run-archive-configuration-commands`;
    const doc = await this.post(url, { commands }, (d) => Array.isArray(d.results));
    return {
      ok: doc.status < 400,
      errorMessage: (doc.body.errorMessage as string | null | undefined) ?? null,
      results: (doc.body.results as Record<string, unknown>[]).map((r) => ({
        command: r.command as ArchiveCommand,
        success: r.success === true,
        ...('errorMessage' in r ? { errorMessage: (r.errorMessage as string | null) ?? null } : {}),
      })),
    };
  }

  /**
   * POST with Basic auth; a 500 whose body `isResult` accepts is returned (partial
   * result); a 503 is transient; a 403 says the credentials are wrong.
   */
  private async post(url: string, body: unknown, isResult: (doc: Record<string, unknown>) => boolean): Promise<{ status: number; body: Record<string, unknown> }> {
    if (this.options.password === undefined) {
      throw new PermanentError(`${url}: this request needs the admin password`, { item: url, hint: 'set it in the environment variable the pipeline names (default PV_ARCHIVER_ADMIN_PASSWORD)' });
    }
    const auth = Buffer.from(`${this.options.username ?? 'admin'}:${this.options.password}`).toString('base64');
    let res;
    try {
      res = await this.http.request(url, {
        method: 'POST',
        headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        okStatus: [500],
        timeoutMs: this.options.timeoutMs ?? 120_000,
        signal: this.options.signal,
        kind: 'admin',
        maxBytes: 64 << 20,
      });
    } catch (err) {
      if (err instanceof HttpError && err.status === 403) {
        throw new PermanentError(`${url}: the server refused the credentials (HTTP 403)`, { item: url, hint: 'check the admin user name and password', cause: err });
      }
      if (err instanceof HttpError && err.status === 503) {
        const message = parseJson(err.response?.body)?.errorMessage;
        throw new TransientError(`${url}: the server could not run the request (HTTP 503${typeof message === 'string' ? `: ${message}` : ''})`, { item: url, retryAfterMs: err.retryAfterMs, cause: err });
      }
      throw err;
    }
    const doc = parseJson(res.body);
    if (!doc || !isResult(doc)) {
      throw new PermanentError(`${url}: HTTP ${res.status} without the expected result body (${JSON.stringify(res.body.subarray(0, 120).toString('utf8'))})`, { item: url });
    }
    return { status: res.status, body: doc };
  }
}

function parseJson(body: Buffer | undefined): Record<string, unknown> | undefined {
  if (!body) return undefined;
  try {
    const v = JSON.parse(body.toString('utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
