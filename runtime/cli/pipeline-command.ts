/**
 * `sluice pipeline …`: `list`, `check`, `runs`, and `<name>` to run one pipeline.
 */
import path from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { delayFor } from '../backoff.ts';
import { migrate } from '../clickhouse/migrate.ts';
import { openStore, storeConfigFromEnv } from '../clickhouse/open-store.ts';
import { ClickHouseRunStore } from '../clickhouse/run-store.ts';
import type { ClickHouseStore } from '../clickhouse/store.ts';
import { runsTable, type TableDefinition } from '../clickhouse/table.ts';
import { openStoreOrDaemon } from '../daemon/query-client.ts';
import { describeError, SluiceError } from '../errors.ts';
import { GuardedFs } from '../guarded-fs.ts';
import { createLogger, type LogFormat } from '../log.ts';
import { serveMetrics, writeMetricsTextfile } from '../metrics-exporter.ts';
import { formatParamsHelp, paramsFromArgs } from '../params-cli.ts';
import { ParamsError } from '../params-error.ts';
import { parseAllowFlag, Permissions, type PermissionSpec } from '../permissions.ts';
import { listPipelineNames, loadPipeline, pipelinesDir, PipelineLoadError } from '../pipeline-loader.ts';
import type { AnyPipeline, ErrorPolicy } from '../pipeline.ts';
import { formatProgress, formatSummary } from '../progress.ts';
import type { RunRecord } from '../run-record.ts';
import { runPipeline } from '../runner.ts';
import { flagNumber, flagString, flagStrings, parseArgs, UsageError, type FlagSpec } from './args.ts';

const RUN_FLAGS: Record<string, FlagSpec> = {
  help: {},
  param: { value: true, repeat: true },
  'params-json': { value: true },
  'allow-net': { value: true, optionalValue: true, repeat: true },
  'allow-read': { value: true, optionalValue: true, repeat: true },
  'allow-write': { value: true, optionalValue: true, repeat: true },
  'allow-run': { value: true, optionalValue: true, repeat: true },
  'max-in-flight': { value: true },
  'on-error': { value: true },
  'log-format': { value: true },
  'metrics-port': { value: true },
  'metrics-textfile': { value: true },
  'state-dir': { value: true },
  every: { value: true },
  quiet: {},
};

export const RUN_FLAGS_HELP = `Run flags:
  --param key=value          a param (repeat for array params)
  --params-json '{...}'      params as a JSON object (--param wins)
  --allow-net[=host[:port],…]  widen the pipeline's permissions for this run
  --allow-read[=path,…]      (a bare --allow-* allows everything of that kind)
  --allow-write[=path,…]
  --allow-run[=program,…]
  --max-in-flight N          items pulled and not yet written (default: the pipeline's, or 64)
  --on-error fail|skip|dead-letter   what to do with an item that fails for good
  --log-format text|json     logs on stderr (json: pino lines)
  --metrics-port P           serve /metrics on 127.0.0.1:P and keep serving after the run (Ctrl-C ends)
  --metrics-textfile PATH    write the metrics for node_exporter's textfile collector at the end
  --state-dir DIR            state: embedded ClickHouse, dead letters (default .sluice, or $SLUICE_STATE_DIR)
  --clickhouse-url URL       write to this ClickHouse server instead of the embedded one ($SLUICE_CLICKHOUSE_URL)
  --every DURATION           run again every DURATION (e.g. 60s, 5m, 1h) until Ctrl-C; never two runs at once;
                             with --metrics-port, /metrics keeps answering between runs
  --quiet                    no progress line and no summary`;

/** `--every` durations: `500ms`, `60s`, `5m`, `1h`, or plain seconds. */
function parseEvery(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'] : NaN;
  if (!(ms >= 1)) throw new UsageError(`--every must be a duration like 60s, 5m or 1h, not "${text}"`);
  return ms;
}

function stateDirOf(args: ReturnType<typeof parseArgs>): string {
  return path.resolve(flagString(args, 'state-dir') ?? process.env.SLUICE_STATE_DIR ?? '.sluice');
}

export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (err) {
    // configuration and store problems are one line that says what to do, not a stack trace
    if (err instanceof SluiceError) {
      process.stderr.write(`sluice: ${describeError(err)}\n`);
      return 1;
    }
    throw err;
  }
}

/** Open the configured ClickHouse store (embedded chDB unless a URL is given). */
function openConfiguredStore(args: ReturnType<typeof parseArgs>): Promise<ClickHouseStore> {
  const config = storeConfigFromEnv(process.env, { url: flagString(args, 'clickhouse-url') });
  return openStore(config, { stateDir: stateDirOf(args) });
}

async function dispatch(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case undefined:
    case '--help':
    case 'help':
      process.stdout.write(usage());
      return sub === undefined ? 2 : 0;
    case 'list':
      return listCommand();
    case 'check':
      return checkCommand();
    case 'runs':
      return runsCommand(rest);
    case 'migrate':
      return migrateCommand(rest);
    case 'users':
      return (await import('./users-command.ts')).main(rest);
    default:
      return runCommand(sub, rest);
  }
}

function usage(): string {
  return `usage: npm run pipeline -- <command>

  list                          pipelines with their descriptions
  check                         load and validate every pipeline file
  runs [--pipeline X] [--limit N] [--format table|json]   recent runs
  migrate [--dry-run]           create missing ClickHouse tables, add new columns
  users add|list|remove         admin API users (users add <name> --role admin|operator|viewer; password on stdin)
  <name> [run flags]            run a pipeline
  <name> --help                 its params

${RUN_FLAGS_HELP}
`;
}

async function listCommand(): Promise<number> {
  const names = await listPipelineNames();
  const rows: [string, string][] = [];
  for (const name of names) {
    try {
      const p = await loadPipeline(name);
      rows.push([name, p.description]);
    } catch (err) {
      rows.push([name, `(cannot load: ${(err as Error).message})`]);
    }
  }
  const width = Math.max(4, ...rows.map(([n]) => n.length));
  process.stdout.write(rows.map(([n, d]) => `${n.padEnd(width)}  ${d}`).join('\n') + '\n');
  return 0;
}

async function checkCommand(): Promise<number> {
  const names = await listPipelineNames();
  let failed = 0;
  for (const name of names) {
    try {
      await loadPipeline(name);
      process.stdout.write(`ok    ${name}\n`);
    } catch (err) {
      failed++;
      process.stdout.write(`FAIL  ${name}: ${(err as Error).message}\n`);
    }
  }
  if (names.length === 0) process.stdout.write(`no pipelines in ${pipelinesDir()}\n`);
  process.stdout.write(`${names.length - failed} of ${names.length} pipelines ok\n`);
  return failed ? 1 : 0;
}

async function runsCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { pipeline: { value: true }, limit: { value: true }, format: { value: true }, 'state-dir': { value: true }, 'clickhouse-url': { value: true } });
  // while a daemon holds the embedded store, read the runs through its query endpoint
  const store = await openStoreOrDaemon(storeConfigFromEnv(process.env, { url: flagString(args, 'clickhouse-url') }), { stateDir: stateDirOf(args) });
  let runs: RunRecord[];
  try {
    runs = await new ClickHouseRunStore(store).list({ pipeline: flagString(args, 'pipeline'), limit: flagNumber(args, 'limit') ?? 20 });
  } finally {
    await store.close();
  }
  if (flagString(args, 'format') === 'json') {
    process.stdout.write(JSON.stringify(runs, null, 2) + '\n');
    return 0;
  }
  if (runs.length === 0) {
    process.stdout.write('no runs yet\n');
    return 0;
  }
  const header = ['id', 'pipeline', 'trigger', 'status', 'started', 'seconds', 'items', 'records', 'errors'];
  const table = runs.map((r) => [
    r.id, r.pipeline, r.trigger, r.status, r.startedAt, ((r.durationMs ?? 0) / 1000).toFixed(2),
    String(r.counts.items), String(r.counts.records),
    String(r.counts.errors.permanent + r.counts.errors.fatal),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd();
  process.stdout.write([line(header), ...table.map(line)].join('\n') + '\n');
  return 0;
}

async function migrateCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { 'state-dir': { value: true }, 'clickhouse-url': { value: true } });
  const tables: TableDefinition<unknown>[] = [runsTable as TableDefinition<unknown>];
  for (const name of await listPipelineNames()) {
    const pipeline = await loadPipeline(name);
    for (const table of pipeline.tables ?? []) if (!tables.some((t) => t.name === table.name)) tables.push(table);
  }
  const store = await openConfiguredStore(args);
  try {
    const report = await migrate(store, tables);
    process.stdout.write(`${store.description}\n`);
    for (const line of report.summary) process.stdout.write(`  ${line}\n`);
    for (const note of report.notes) process.stdout.write(`  note: ${note}\n`);
    if (report.summary.length === 0) process.stdout.write(`  all ${tables.length} tables up to date\n`);
  } finally {
    await store.close();
  }
  return 0;
}

function allowFromArgs(args: ReturnType<typeof parseArgs>): PermissionSpec {
  const spec: Record<string, string[]> = {};
  for (const kind of ['net', 'read', 'write', 'run'] as const) {
    const given = args.flags.get(`allow-${kind}`);
    if (given) spec[kind] = given.flatMap((v) => parseAllowFlag(v));
  }
  return spec;
}

async function runCommand(name: string, argv: string[]): Promise<number> {
  const args = parseArgs(argv, RUN_FLAGS);
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"; params are given as --param key=value`);
  let pipeline: AnyPipeline;
  try {
    pipeline = await loadPipeline(name);
  } catch (err) {
    if (err instanceof PipelineLoadError) {
      process.stderr.write(`sluice: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (args.flags.has('help')) {
    process.stdout.write(`${pipeline.name}: ${pipeline.description}\n\nParams:\n${formatParamsHelp(pipeline.params)}\n\n${RUN_FLAGS_HELP}\n`);
    return 0;
  }
  const logFormat = (flagString(args, 'log-format') ?? 'text') as LogFormat;
  if (logFormat !== 'text' && logFormat !== 'json') throw new UsageError(`--log-format must be text or json, not "${logFormat}"`);
  const onError = flagString(args, 'on-error') as ErrorPolicy | undefined;
  if (onError && !['fail', 'skip', 'dead-letter'].includes(onError)) throw new UsageError(`--on-error must be fail, skip or dead-letter, not "${onError}"`);
  const quiet = args.flags.has('quiet');
  const everyText = flagString(args, 'every');
  const everyMs = everyText === undefined ? undefined : parseEvery(everyText);
  const log = createLogger({ format: logFormat });

  let params: Record<string, unknown>;
  try {
    params = paramsFromArgs(pipeline.params, flagStrings(args, 'param'), flagString(args, 'params-json'));
  } catch (err) {
    if (err instanceof ParamsError) {
      process.stderr.write(`sluice: ${name}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client names these gauges `_total`, which promtool rejects (counters only)
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  const metricsPort = flagNumber(args, 'metrics-port');
  const metricsServer = metricsPort !== undefined ? await serveMetrics(registry, { port: metricsPort }) : undefined;
  if (metricsServer) log.info(`metrics on http://127.0.0.1:${metricsServer.port}/metrics`);

  // first Ctrl-C / SIGTERM: stop pulling and flush; a second one: exit at once
  const stop = new AbortController();
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    const code = signal === 'SIGINT' ? 130 : 143;
    if (signalled) {
      process.stderr.write(`\nsluice: ${signal} again: aborting now\n`);
      process.exit(code);
    }
    signalled = signal;
    process.stderr.write(`\nsluice: ${signal}: stopping — finishing in-flight items and flushing sinks (again to abort)\n`);
    stop.abort(new Error(`stopped by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  // one store for all runs of this command (chDB allows one process per directory)
  const store = await openConfiguredStore(args);
  const runStore = new ClickHouseRunStore(store);
  const tty = process.stderr.isTTY && !quiet && logFormat === 'text';
  let record: RunRecord;
  // --every: one run after another, each starting `everyMs` after the one before (or at once when it ran longer)
  for (;;) {
    const started = Date.now();
    try {
      record = await runPipeline({
        pipeline,
        params,
        trigger: 'cli',
        openStore: () => Promise.resolve(store),
        keepStoreOpen: true,
        runStore,
        allow: allowFromArgs(args),
        maxInFlight: flagNumber(args, 'max-in-flight'),
        onError,
        stateDir: stateDirOf(args),
        signal: stop.signal,
        log,
        registry,
        onProgress: tty ? (counts, inFlight) => process.stderr.write(`\r\x1b[2K${formatProgress(counts, inFlight, Date.now() - started)}`) : undefined,
      });
    } catch (err) {
      await store.close();
      if (err instanceof ParamsError) {
        process.stderr.write(`sluice: ${name}: ${err.message}\n`);
        await metricsServer?.close();
        return 2;
      }
      throw err;
    }
    if (tty) process.stderr.write('\r\x1b[2K');

    const textfile = flagString(args, 'metrics-textfile');
    if (textfile) {
      const target = path.resolve(textfile);
      try {
        await writeMetricsTextfile(registry, target, new GuardedFs(new Permissions({ write: [path.dirname(target)] })));
      } catch (err) {
        log.error(`cannot write the metrics textfile ${target}: ${describeError(err)}`);
      }
    }
    if (logFormat === 'json') log.info('run finished', { ...record });
    else if (!quiet) process.stderr.write(formatSummary(record) + '\n');
    if (!quiet && record.status === 'succeeded' && pipeline.nextSteps) {
      process.stderr.write(pipeline.nextSteps({ params: record.params }).map((line) => `${line}\n`).join(''));
    }
    if (everyMs === undefined || stop.signal.aborted) break;
    const wait = started + everyMs - Date.now();
    if (wait <= 0) log.warn(`the run took longer than --every ${everyText}; starting the next one at once`);
    else if (!quiet) log.info(`next run in ${Math.round(wait / 1000)} s`);
    await delayFor(Math.max(0, wait), stop.signal).catch(() => undefined);
    if (stop.signal.aborted) break;
  }
  await store.close();

  if (metricsServer) {
    if (!signalled) {
      log.info(`run done; still serving http://127.0.0.1:${metricsServer.port}/metrics (Ctrl-C to exit)`);
      await new Promise<void>((resolve) => {
        process.removeAllListeners('SIGINT');
        process.removeAllListeners('SIGTERM');
        process.once('SIGINT', () => { signalled = 'SIGINT'; resolve(); });
        process.once('SIGTERM', () => { signalled = 'SIGTERM'; resolve(); });
      });
    }
    await metricsServer.close();
  }
  if (signalled) return signalled === 'SIGINT' ? 130 : 143;
  return record.status === 'succeeded' ? 0 : 1;
}
