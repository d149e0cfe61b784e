/**
 * pv-archiver-config — change or save a Cassandra PV Archiver's channel configuration
 * through its admin API:
 *
 * - `action=export`: a server's configuration, written as the XML file the server uses;
 * - `action=import`: an XML configuration file into a server (add, update and/or remove
 *   channels; `simulate` to see what would happen);
 * - `action=commands`: archive configuration commands from a JSON file
 *   (`{"commands": [{"commandType": "add_channel", …}, …]}` or just the array).
 *
 * POST requests authenticate as `username` with the password taken from the environment
 * variable named by `passwordEnv` (never a param: params are kept in run records).
 *
 * Every outcome is a record in the JSON result file (`out`): per channel for an import,
 * per command for commands. When some fail, the server answers 500 with all results:
 * that is a partial result, not a crash: the failures are item errors of the run (shown
 * in its summary and record, exit code 0 unless `--on-error fail`), the successes stand.
 */
import path from 'node:path';
import { concat, mergeMap, of, pipe, throwError } from 'rxjs';
import { z } from 'zod';
import { PermanentError } from '../runtime/errors.ts';
import { definePipeline, item, type Sink } from '../runtime/pipeline.ts';
import { snapshot } from '../sinks/snapshot.ts';
import { PvArchiverAdmin, type ArchiveCommand } from '../sources/http/pv-archiver/admin.ts';

export interface ConfigOutcome {
  action: 'export' | 'import' | 'commands';
  serverId?: string;
  /** the channel (import) or the command (commands) */
  channel?: string;
  operation?: string;
  command?: ArchiveCommand;
  success: boolean;
  errorMessage?: string | null;
  /** export: the configuration file */
  configurationXml?: string;
}

const params = z.object({
  url: z.string().url().describe('the admin API base URL, e.g. http://archiver.example.org:4812'),
  action: z.enum(['export', 'import', 'commands']).describe('what to do'),
  serverId: z.string().default('').describe('the server (UUID) to export from or import into'),
  file: z.string().default('').describe('export: where the XML goes; import: the XML to read; commands: the JSON commands file'),
  addChannels: z.boolean().default(false).describe('import: add channels the server does not have'),
  updateChannels: z.boolean().default(false).describe('import: update channels the server has'),
  removeChannels: z.boolean().default(false).describe('import: remove channels of the server that the file lacks'),
  simulate: z.boolean().default(false).describe('import: only say what would change'),
  username: z.string().default('admin').describe('user for HTTP Basic auth on POST'),
  passwordEnv: z.string().default('PV_ARCHIVER_ADMIN_PASSWORD').describe('environment variable that holds the password'),
  out: z.string().default('.sluice/pv-archiver-config.json').describe('where the JSON result (one entry per channel or command) is written'),
  timeoutMs: z.number().int().min(1).default(120_000).describe('total deadline of one request, ms'),
});

type Params = z.infer<typeof params>;

/** Writes the exported XML (from the record that carries it) to `file`, atomically, when the run succeeds. */
function xmlFile(file: string): Sink<ConfigOutcome> {
  let xml: string | undefined;
  let fs: { writeFileAtomic(path: string, data: string): Promise<void> } | undefined;
  return {
    name: 'xml-file',
    kind: 'file',
    open: (ctx) => { fs = ctx.fs; },
    write: (records) => {
      for (const r of records) if (r.configurationXml !== undefined) xml = r.configurationXml;
    },
    close: async (outcome) => {
      if (outcome.status === 'succeeded' && xml !== undefined && fs) await fs.writeFileAtomic(file, xml);
    },
  };
}

function check(p: Params): void {
  if ((p.action === 'export' || p.action === 'import') && !p.serverId) throw new PermanentError(`pv-archiver-config: action=${p.action} needs --param serverId=<uuid>`);
  if (!p.file) throw new PermanentError(`pv-archiver-config: action=${p.action} needs --param file=<path>`);
}

export default definePipeline({
  name: 'pv-archiver-config',
  description: 'Export or import a Cassandra PV Archiver server\'s channel configuration, or run archive configuration commands',
  params,
  permissions: ({ params: p }) => {
    const u = new URL(p.url);
    const net = [`${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`];
    const write = [path.dirname(p.out), ...(p.action === 'export' && p.file ? [path.dirname(p.file)] : [])];
    const read = p.action !== 'export' && p.file ? [p.file] : [];
    return { net, write, read };
  },
  onError: 'skip',
  source: async function* (ctx) {
    const p = ctx.params;
    check(p);
    const admin = new PvArchiverAdmin(ctx.http, p.url, { signal: ctx.signal, timeoutMs: p.timeoutMs, username: p.username, password: process.env[p.passwordEnv] });
    if (p.action === 'export') {
      const xml = (await admin.exportConfiguration(p.serverId)).toString('utf8');
      yield item<ConfigOutcome>(`${admin.base}/channels/by-server/${p.serverId}/export`, { action: 'export', serverId: p.serverId, success: true, configurationXml: xml });
      return;
    }
    if (p.action === 'import') {
      const xml = await ctx.fs.readFile(p.file);
      const result = await admin.importConfiguration(p.serverId, Buffer.from(xml), { addChannels: p.addChannels, updateChannels: p.updateChannels, removeChannels: p.removeChannels, simulate: p.simulate });
      const outcomes: ConfigOutcome[] = [
        ...result.addOrUpdateSucceeded.map((channel) => ({ channel, operation: 'add-or-update', success: true })),
        ...Object.entries(result.addOrUpdateFailed).map(([channel, errorMessage]) => ({ channel, operation: 'add-or-update', success: false, errorMessage })),
        ...result.removeSucceeded.map((channel) => ({ channel, operation: 'remove', success: true })),
        ...Object.entries(result.removeFailed).map(([channel, errorMessage]) => ({ channel, operation: 'remove', success: false, errorMessage })),
      ].map((o) => ({ action: 'import' as const, serverId: p.serverId, ...o }));
      if (result.errorMessage) ctx.log.warn(`pv-archiver-config: the server says: ${result.errorMessage}`);
      for (const o of outcomes) yield outcomeItem(o, `${o.operation} ${o.channel} (${p.simulate ? 'simulated' : 'import'})`);
      return;
    }
    const text = (await ctx.fs.readFile(p.file)).toString();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new PermanentError(`${p.file}: not JSON: ${(err as Error).message}`, { item: p.file });
    }
    const commands = Array.isArray(parsed) ? parsed : (parsed as { commands?: unknown }).commands;
    if (!Array.isArray(commands) || !commands.every((c) => c && typeof c === 'object' && typeof (c as { commandType?: unknown }).commandType === 'string')) {
      throw new PermanentError(`${p.file}: expected {"commands": [{"commandType": …}, …]}`, { item: p.file });
    }
    const result = await admin.runCommands(commands as ArchiveCommand[]);
    if (result.errorMessage) ctx.log.warn(`pv-archiver-config: the server says: ${result.errorMessage}`);
    for (const [i, r] of result.results.entries()) {
      const name = String(r.command?.channelName ?? r.command?.oldChannelName ?? '');
      yield outcomeItem({ action: 'commands', command: r.command, channel: name, operation: r.command?.commandType, success: r.success, errorMessage: r.errorMessage ?? null }, `command ${i + 1}: ${r.command?.commandType} ${name}`);
    }
  },
  // a failed outcome is still written (to the result file), then fails its item: the run counts it
  transform: () => pipe(mergeMap((o: ConfigOutcome) => (o.success
    ? of(o)
    : concat(of(o), throwError(() => new PermanentError(`${o.operation ?? o.action} ${o.channel ?? ''}: ${o.errorMessage ?? 'failed'}`)))))),
  sinks: ({ params: p }) => [
    snapshot<ConfigOutcome>({ path: p.out, wrap: (outcomes) => ({ action: p.action, url: p.url, serverId: p.serverId || undefined, outcomes: outcomes.map(({ configurationXml: _x, ...o }) => o) }) }),
    ...(p.action === 'export' ? [xmlFile(p.file)] : []),
  ],
});

function outcomeItem(o: ConfigOutcome, id: string) {
  return item<ConfigOutcome>(id, o);
}
