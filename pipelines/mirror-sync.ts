/**
 * mirror-sync — pull one project of a mirror network from its upstream rsync daemon
 * (what the old mirror-sync scheduler's jobs did, without its flaws: no shell, the
 * password only in rsync's own environment, options allow-listed and kept in order).
 *
 * `rsync <options> [--delete-…] --itemize-changes --stats … rsync://<user>@<host>/<module>/ <dest>/<project>/`
 *
 * Records:
 * - ClickHouse `mirror_syncs`: the sync history, one row per sync (also failed ones:
 *   exit code, its meaning, the error);
 * - ClickHouse `mirror_sync_files`: one row per changed file (path, change, type, size);
 * - Prometheus, per project: last success time, last duration, last exit code,
 *   bytes and files transferred, failures.
 *
 * The password of the module comes from `$SLUICE_RSYNC_PASSWORD_<PROJECT>` (the project
 * name upper-cased, other characters than letters and digits as `_`) in the daemon's or
 * the command's environment, or from the file `passwordFile` names; never from a param
 * (params are stored in run records and shown by the admin API).
 *
 * @example
 * ```sh
 * SLUICE_RSYNC_PASSWORD_FEDORA=… npm run pipeline -- mirror-sync --param project=fedora \
 *   --param host=rsync.example.org --param module=fedora-enchilada --param dest=/srv/mirror \
 *   --param options=-rlptH --param options=--safe-links --param delete=delete-delay
 * ```
 */
import path from 'node:path';
import { mergeMap } from 'rxjs';
import { z } from 'zod';
import { defineTable, type RowOf } from '../runtime/clickhouse/table.ts';
import { definePipeline } from '../runtime/pipeline.ts';
import { clickhouse } from '../sinks/clickhouse/index.ts';
import { prometheus } from '../sinks/prometheus.ts';
import { where } from '../sinks/where.ts';
import { checkRsyncOptions, checkRsyncTarget, DELETE_MODES, rsync, type RsyncRecord, type RsyncSummaryRecord } from '../sources/rsync/index.ts';

/** Sync history: one row per sync of a project. */
export const mirrorSyncs = defineTable('mirror_syncs', {
  columns: {
    project: 'LowCardinality(String)',
    run_id: 'String',
    source: 'String',
    dest: 'String',
    started_at: "DateTime64(3, 'UTC')",
    ended_at: "DateTime64(3, 'UTC')",
    duration_ms: 'UInt64',
    ok: 'UInt8',
    exit_code: 'Int32',
    exit_meaning: 'String',
    error: 'String',
    files: 'UInt64',
    files_transferred: 'UInt64',
    files_created: 'UInt64',
    files_updated: 'UInt64',
    files_deleted: 'UInt64',
    total_size: 'UInt64',
    transferred_size: 'UInt64',
    literal_data: 'UInt64',
    matched_data: 'UInt64',
    bytes_sent: 'UInt64',
    bytes_received: 'UInt64',
    speedup: 'Float64',
  },
  orderBy: ['project', 'started_at', 'run_id'],
  partitionBy: 'toYYYYMM(started_at)',
});

/** What changed, one row per file and sync. */
export const mirrorSyncFiles = defineTable('mirror_sync_files', {
  columns: {
    project: 'LowCardinality(String)',
    run_id: 'String',
    synced_at: "DateTime64(3, 'UTC')",
    path: 'String',
    change: 'LowCardinality(String)',
    type: 'LowCardinality(String)',
    size: 'UInt64',
    itemize: 'String',
    target: 'String',
  },
  orderBy: ['project', 'run_id', 'path', 'change'],
  partitionBy: 'toYYYYMM(synced_at)',
});

export type MirrorSyncRow = RowOf<typeof mirrorSyncs>;
export type MirrorSyncFileRow = RowOf<typeof mirrorSyncFiles>;

/** The per-project numbers the metrics are read from. */
export interface MirrorSyncMetricsRow {
  project: string;
  ok: boolean;
  endedSeconds: number;
  durationSeconds: number;
  exitCode: number;
  bytesReceived: number;
  filesTransferred: number;
}

type FileRow = { kind: 'file'; file: MirrorSyncFileRow };
type SummaryRow = { kind: 'summary'; history: MirrorSyncRow; metrics: MirrorSyncMetricsRow };
type Row = FileRow | SummaryRow;

const isFile = (r: Row): r is FileRow => r.kind === 'file';
const isSummary = (r: Row): r is SummaryRow => r.kind === 'summary';
const isSuccess = (r: Row): r is SummaryRow => r.kind === 'summary' && r.metrics.ok;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** `host`, `host:port`, `[v6]` or `[v6]:port`. */
export function splitHost(text: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(text);
  if (!m) return { host: text, port: 873 };
  return { host: m[1]!, port: m[2] ? Number(m[2]) : 873 };
}

const params = z.object({
  project: z.string().regex(NAME, 'letters, digits, ".", "_" and "-", starting with a letter or digit').describe('the project: the rsync user (unless `user`), the directory under dest, the metrics label'),
  host: z.string().refine((h) => !checkRsyncTarget({ ...splitHost(h), module: 'm' }), { message: 'not a host, host:port, [v6] or [v6]:port' }).describe('the upstream rsync daemon: host or host:port (default port 873)'),
  module: z.string().refine((m) => !checkRsyncTarget({ host: 'h', module: m }), { message: 'not a module name (optionally with a path inside it, no "..")' }).describe('the rsync module, optionally with a path inside it'),
  dest: z.string().min(1).describe('the local mirror root; the project is synced into <dest>/<project>/'),
  options: z.array(z.string()).default(['-rlptH', '--safe-links']).superRefine((opts, ctx) => {
    const why = checkRsyncOptions(opts);
    if (why) ctx.addIssue({ code: 'custom', message: why });
  }).describe('rsync flags from the allow-list (docs/mirror-sync.md), in order'),
  delete: z.enum(DELETE_MODES).default('none').describe('delete files gone upstream: none, or which of rsync\'s delete modes'),
  user: z.string().regex(NAME).optional().describe('the rsync user (default: the project)'),
  anonymous: z.boolean().default(false).describe('connect without a user and password (a public module)'),
  passwordFile: z.string().optional().describe('a file holding the module\'s password (else $SLUICE_RSYNC_PASSWORD_<PROJECT>)'),
  connectTimeoutSeconds: z.number().int().min(1).default(30).describe('seconds to wait for the daemon to answer'),
  ioTimeoutSeconds: z.number().int().min(1).default(600).describe('seconds without I/O before rsync gives up'),
  files: z.boolean().default(true).describe('record every changed file in mirror_sync_files'),
});

type Params = z.infer<typeof params>;

/** `$SLUICE_RSYNC_PASSWORD_<PROJECT>` for a project. */
export function passwordVariable(project: string): string {
  return `SLUICE_RSYNC_PASSWORD_${project.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

function historyOf(s: RsyncSummaryRecord, p: Params, runId: string): MirrorSyncRow {
  const st = s.stats;
  return {
    project: p.project,
    run_id: runId,
    source: s.source,
    dest: s.dest,
    started_at: s.startedAt,
    ended_at: s.endedAt,
    duration_ms: s.durationMs,
    ok: s.ok ? 1 : 0,
    exit_code: s.exitCode,
    exit_meaning: s.exitMeaning,
    error: s.error ?? '',
    files: st.files ?? 0,
    files_transferred: st.regularFilesTransferred ?? 0,
    files_created: s.changes.created,
    files_updated: s.changes.updated,
    files_deleted: s.changes.deleted,
    total_size: st.totalFileSize ?? 0,
    transferred_size: st.totalTransferredFileSize ?? 0,
    literal_data: st.literalData ?? 0,
    matched_data: st.matchedData ?? 0,
    bytes_sent: st.bytesSent ?? 0,
    bytes_received: st.bytesReceived ?? 0,
    speedup: st.speedup ?? 0,
  };
}

const metricSink = () => prometheus<MirrorSyncMetricsRow>({
  name: 'mirror-sync-metrics',
  metrics: {
    sluice_mirror_syncs_total: { type: 'counter', help: 'Mirror syncs run, by project', labels: ['project'], value: () => 1 },
    sluice_mirror_sync_failures_total: { type: 'counter', help: 'Mirror syncs that failed (rsync exit code other than 0 and 24), by project', labels: ['project'], value: (r) => (r.ok ? 0 : 1) },
    sluice_mirror_sync_received_bytes_total: { type: 'counter', help: 'Bytes received from upstream by mirror syncs, by project', labels: ['project'], value: (r) => r.bytesReceived },
    sluice_mirror_sync_files_transferred_total: { type: 'counter', help: 'Regular files transferred by mirror syncs, by project', labels: ['project'], value: (r) => r.filesTransferred },
    sluice_mirror_sync_last_duration_seconds: { type: 'gauge', help: 'Duration of the last mirror sync of the project', labels: ['project'], value: (r) => r.durationSeconds },
    sluice_mirror_sync_last_exit_code: { type: 'gauge', help: 'rsync exit code of the last mirror sync of the project', labels: ['project'], value: (r) => r.exitCode },
  },
});

const successSink = () => prometheus<MirrorSyncMetricsRow>({
  name: 'mirror-sync-success',
  metrics: {
    sluice_mirror_sync_last_success_timestamp_seconds: { type: 'gauge', help: 'Unix time the last successful mirror sync of the project ended', labels: ['project'], value: (r) => r.endedSeconds },
  },
});

export default definePipeline({
  name: 'mirror-sync',
  description: 'Sync one mirror project from its upstream rsync daemon; history and changed files into ClickHouse, metrics per project',
  params,
  // rsync is the one program this pipeline runs; it talks to the upstream and writes the mirror
  permissions: ({ params: p }) => ({
    run: ['rsync'],
    net: [(() => { const { host, port } = splitHost(p.host); return `${host}:${port}`; })()],
    write: [path.join(p.dest, p.project)],
    ...(p.passwordFile ? { read: [p.passwordFile] } : {}),
  }),
  tables: [mirrorSyncs, mirrorSyncFiles],
  maxInFlight: 1000,
  syncTransform: true,
  source: async (ctx) => {
    const p = ctx.params;
    let password: string | undefined;
    if (!p.anonymous) {
      if (p.passwordFile) password = (await ctx.fs.readFile(p.passwordFile)).toString('utf8').split('\n')[0]!.replace(/\r$/, '');
      else password = process.env[passwordVariable(p.project)];
    }
    const { host, port } = splitHost(p.host);
    return rsync(ctx, {
      host,
      port,
      module: p.module,
      user: p.anonymous ? undefined : p.user ?? p.project,
      dest: path.join(p.dest, p.project),
      options: p.options,
      delete: p.delete,
      password,
      connectTimeoutSeconds: p.connectTimeoutSeconds,
      ioTimeoutSeconds: p.ioTimeoutSeconds,
    });
  },
  transform: ({ params: p, runId }) => {
    const syncedAt = new Date();
    return mergeMap((r: RsyncRecord): Row[] => {
      if (r.kind === 'file') {
        if (!p.files) return [];
        return [{
          kind: 'file',
          file: { project: p.project, run_id: runId, synced_at: syncedAt, path: r.path, change: r.change, type: r.type, size: r.size, itemize: r.itemize, target: r.target ?? '' },
        }];
      }
      return [{
        kind: 'summary',
        history: historyOf(r, p, runId),
        metrics: {
          project: p.project,
          ok: r.ok,
          endedSeconds: r.endedAt.getTime() / 1000,
          durationSeconds: r.durationMs / 1000,
          exitCode: r.exitCode,
          bytesReceived: r.stats.bytesReceived ?? 0,
          filesTransferred: r.stats.regularFilesTransferred ?? 0,
        },
      }];
    });
  },
  sinks: () => [
    where(isSummary, clickhouse(mirrorSyncs, { maxDelayMs: 100 }), (r) => r.history),
    where(isFile, clickhouse(mirrorSyncFiles), (r) => r.file),
    where(isSummary, metricSink(), (r) => r.metrics),
    where(isSuccess, successSink(), (r) => r.metrics),
  ],
  nextSteps: ({ params: p }) => [
    '',
    'The last syncs of this project:',
    `  npm run query -- "SELECT started_at, ok, exit_code, files_transferred, bytes_received, error FROM mirror_syncs WHERE project = '${p.project}' ORDER BY started_at DESC LIMIT 10"`,
  ],
});
