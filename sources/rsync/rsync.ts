/**
 * The `rsync` source: pulls a module from an rsync daemon into a local directory and
 * yields what changed — one record per changed file (from `--itemize-changes`) and,
 * last, one summary record (from `--stats` and the exit code).
 *
 * - rsync runs from an **argument array** (`spawn`, no shell), so nothing in a param
 *   is ever interpreted by a shell; options are checked against an allow-list
 *   (options.ts) and kept in the order given.
 * - The **password** reaches only this rsync process, as `RSYNC_PASSWORD` in its own
 *   environment (never the process-wide one, never argv, never a log line or an
 *   error message: stderr is scrubbed of it). The child gets a minimal environment
 *   (PATH, HOME, LC_ALL=C), so nothing else leaks into it either.
 * - **Permissions** are checked where the process starts: `run` for the rsync program,
 *   `net` for host:port, `write` for the destination.
 * - **Records** flow as rsync prints them: lines are read only as fast as the sinks
 *   take the records, so a sync of millions of files runs in constant memory. The
 *   summary item is yielded after rsync exits, and the source waits until the sinks
 *   accepted it; when rsync failed it then yields a failed item whose error says
 *   what failed and is classified (a wrong password is permanent, an unreachable host
 *   transient), so the history row of a failed sync is written and the run fails.
 *
 * @example
 * ```ts
 * source: (ctx) => rsync(ctx, {
 *   host: 'mirror.example.org', module: 'fedora/linux', user: 'fedora',
 *   dest: '/srv/mirror/fedora', options: ['-rlptH', '--safe-links'], delete: 'delete-delay',
 *   password: process.env.SLUICE_RSYNC_PASSWORD_FEDORA,
 * }),
 * ```
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { RunContext } from '../../runtime/context.ts';
import { FatalError, PermanentError, TransientError, type SluiceError } from '../../runtime/errors.ts';
import { item, type SourceYield } from '../../runtime/pipeline.ts';
import { rsyncExit } from './exit-codes.ts';
import { parseItemizeLine, type ItemizedChange } from './itemize.ts';
import { checkRsyncOptions, type DeleteMode } from './options.ts';
import { RsyncStatsParser, type RsyncStats } from './stats.ts';

export interface RsyncSourceOptions {
  /** the rsync daemon: a host name or address (IPv6 in brackets) */
  host: string;
  /** default 873 */
  port?: number;
  /** the module, optionally with a path inside it: `fedora` or `fedora/linux/releases` */
  module: string;
  /** the rsync user (`user@host::module`); none for anonymous modules */
  user?: string;
  /** the local directory the module is mirrored into (created if missing) */
  dest: string;
  /** allow-listed rsync flags, in order; default `['-rlptH']` */
  options?: readonly string[];
  /** which of rsync's delete modes, if any; default `none` */
  delete?: DeleteMode;
  /** the module's password; passed to rsync only, in its environment */
  password?: string;
  /** seconds to wait for the daemon's connection (`--contimeout`); default 30 */
  connectTimeoutSeconds?: number;
  /** seconds without I/O before rsync gives up (`--timeout`); default 600 */
  ioTimeoutSeconds?: number;
  /** the rsync program; default `rsync` (found on PATH) */
  program?: string;
}

/** One changed file. */
export interface RsyncFileRecord extends ItemizedChange {
  kind: 'file';
}

/** The end of a sync: what rsync reported and how it exited. */
export interface RsyncSummaryRecord {
  kind: 'summary';
  /** rsync exited 0, or 24 (source files vanished meanwhile) */
  ok: boolean;
  exitCode: number;
  exitMeaning: string;
  startedAt: Date;
  endedAt: Date;
  durationMs: number;
  stats: RsyncStats;
  /** changed files seen in the itemized output, by change */
  changes: Record<ItemizedChange['change'], number>;
  /** bytes of the files received (the itemized sizes of transferred files) */
  bytesOfTransferredFiles: number;
  /** what went wrong (rsync's own messages, password-free), when not ok */
  error?: string;
  /** `rsync://user@host:port/module/` (no password) */
  source: string;
  /** the local directory */
  dest: string;
}

export type RsyncRecord = RsyncFileRecord | RsyncSummaryRecord;


const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$/;
const MODULE = /^[A-Za-z0-9][A-Za-z0-9._+-]*(?:\/[A-Za-z0-9._+-]+)*\/?$/;
const USER = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const MAX_STDERR_LINES = 40;

/** Check the host, module and user the way the source will use them; a message naming the problem, or undefined. */
export function checkRsyncTarget(o: { host: string; module: string; user?: string; port?: number }): string | undefined {
  if (!HOST.test(o.host)) return `host "${o.host}" is not a host name or address`;
  if (!MODULE.test(o.module) || o.module.split('/').some((p) => p === '..' || p === '.')) return `module "${o.module}" is not a module name (with an optional path inside it, no "..")`;
  if (o.user !== undefined && !USER.test(o.user)) return `user "${o.user}" is not a valid rsync user name`;
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port > 0 && o.port < 65536)) return `port ${o.port} is not a port number`;
  return undefined;
}

/** `rsync://user@host:port/module/` for the command line and records. */
export function rsyncUrl(o: { host: string; port?: number; module: string; user?: string }): string {
  const mod = o.module.replace(/\/+$/, '');
  return `rsync://${o.user ? `${o.user}@` : ''}${o.host}:${o.port ?? 873}/${mod}/`;
}

/** The argument array rsync is run with (without the program): flags, then source and destination. */
export function rsyncArgs(o: RsyncSourceOptions, dest: string): string[] {
  const args = [...(o.options ?? ['-rlptH'])];
  if (o.delete && o.delete !== 'none') args.push(`--${o.delete}`);
  args.push(
    '--itemize-changes',
    '--out-format=%i %l %n%L',
    '--stats',
    '--no-motd',
    `--contimeout=${o.connectTimeoutSeconds ?? 30}`,
    `--timeout=${o.ioTimeoutSeconds ?? 600}`,
    '--',
    rsyncUrl(o),
    dest.endsWith('/') ? dest : `${dest}/`,
  );
  return args;
}

/** Pull the module into `dest`; see the file comment. */
export async function* rsync(ctx: RunContext, o: RsyncSourceOptions): AsyncGenerator<SourceYield<RsyncRecord>> {
  const bad = checkRsyncTarget(o) ?? checkRsyncOptions(o.options ?? []);
  if (bad) throw new FatalError(`rsync: ${bad}`);
  const program = o.program ?? 'rsync';
  const source = rsyncUrl(o);
  ctx.permissions.checkRun(program, source);
  ctx.permissions.checkNet(new URL(`rsync://${o.host}:${o.port ?? 873}`), source);
  const dest = ctx.permissions.checkWrite(o.dest, o.dest);
  await fs.mkdir(dest, { recursive: true });

  const args = rsyncArgs(o, dest);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C' };
  if (process.env.HOME) env.HOME = process.env.HOME;
  // with a user, always set it (empty when none was given): rsync would otherwise prompt on the terminal
  if (o.user !== undefined || o.password) env.RSYNC_PASSWORD = o.password ?? '';
  const scrub = (text: string) => (o.password ? text.split(o.password).join('***') : text);

  const startedAt = new Date();
  const started = performance.now();
  ctx.log.info(`rsync ${source} → ${dest}`);
  const child = spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'], shell: false });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
    child.once('error', (err) => resolve({ code: null, signal: null, spawnError: err }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  const onAbort = () => child.kill('SIGTERM');
  ctx.signal.addEventListener('abort', onAbort, { once: true });

  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(scrub(line));
    if (stderr.length > MAX_STDERR_LINES) stderr.splice(0, stderr.length - MAX_STDERR_LINES);
  });

  const stats = new RsyncStatsParser();
  const changes: Record<ItemizedChange['change'], number> = { created: 0, updated: 0, deleted: 0, attributes: 0, hardlink: 0 };
  let bytesOfTransferredFiles = 0;
  try {
    const lines = createInterface({ input: child.stdout!, crlfDelay: Infinity });
    for await (const line of lines) {
      const change = parseItemizeLine(line);
      if (change) {
        changes[change.change]++;
        if (change.transferred && change.type === 'file') bytesOfTransferredFiles += change.size;
        yield item<RsyncRecord>(`${source}${change.path}`, { kind: 'file', ...change }, { bytes: change.transferred ? change.size : 0 });
        continue;
      }
      stats.line(line);
    }
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  }
  const result = await exited;
  const endedAt = new Date();
  if (result.spawnError) {
    const code = (result.spawnError as NodeJS.ErrnoException).code;
    throw new FatalError(`cannot run ${program}: ${code === 'ENOENT' ? 'not found on PATH' : result.spawnError.message}`, { hint: code === 'ENOENT' ? 'install rsync (Debian: apt-get install rsync)' : undefined });
  }
  const exit = rsyncExit(result.code, result.signal);
  const error = exit.ok ? undefined : failure(exit.code, exit.meaning, stderr, o);
  const summary: RsyncSummaryRecord = {
    kind: 'summary',
    ok: exit.ok,
    exitCode: exit.code,
    exitMeaning: exit.meaning,
    startedAt,
    endedAt,
    durationMs: Math.round(performance.now() - started),
    stats: stats.result(),
    changes,
    bytesOfTransferredFiles,
    ...(error ? { error: error.message } : {}),
    source,
    dest,
  };
  if (exit.code === 24) ctx.log.warn(`rsync ${source}: some source files vanished during the transfer (exit 24); counted as a success`);

  // the summary must be written before the run fails: wait until the sinks took it
  let settled!: () => void;
  const accepted = new Promise<void>((resolve) => { settled = resolve; });
  yield item<RsyncRecord>(`${source} (summary)`, summary, { ack: () => settled(), nack: () => settled() });
  if (error) {
    await Promise.race([accepted, new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    })]);
    yield item<RsyncRecord>(source, summary, { error });
  }
}

/** The error of a failed sync: what rsync said (scrubbed), what the exit code means, what to do. */
function failure(code: number, meaning: string, stderr: readonly string[], o: RsyncSourceOptions): SluiceError {
  const said = stderr.filter((l) => l.trim() && !/^rsync error: /.test(l)).slice(-5).join('; ');
  const where = rsyncUrl(o);
  const what = `rsync ${where} failed with exit ${code} (${meaning})${said ? `: ${said}` : ''}`;
  if (/@ERROR: auth failed/.test(said)) {
    return new PermanentError(`rsync ${where}: authentication failed for user "${o.user ?? ''}" (wrong password or user)`, {
      hint: o.password ? 'check the module\'s password for this project' : 'the module needs a password and none was given',
    });
  }
  if (/@ERROR: Unknown module/i.test(said)) return new PermanentError(what, { hint: 'check the module name' });
  if (/@ERROR: max connections/i.test(said)) return new TransientError(what, { hint: 'the server is busy; a later attempt should work' });
  if (code === 10 || code === 35) return new TransientError(what, { hint: 'is the host reachable and its rsync daemon running?' });
  const exit = rsyncExit(code);
  return exit.kind === 'transient' ? new TransientError(what) : new PermanentError(what);
}
