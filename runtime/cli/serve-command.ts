/**
 * `sluice serve` (`npm run serve`): the daemon. Consumes trigger messages from
 * RabbitMQ and runs the pipelines they name; see runtime/daemon/daemon.ts for what
 * happens to a message, and docs/daemon.md for the configuration.
 *
 * Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 on a configuration or start-up
 * error (one line saying what to do), 2 on a usage error; a second signal exits at
 * once with 130/143 (unacked messages go back to the queue with the connection).
 */
import path from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { describeAmqpUrl } from '../amqp/connection.ts';
import { describeStoreConfig, openStore, storeConfigFromEnv } from '../clickhouse/open-store.ts';
import type { ClickHouseStore } from '../clickhouse/store.ts';
import { Daemon } from '../daemon/daemon.ts';
import { configPath, loadDaemonConfig, topologyNames, type DaemonConfig } from '../daemon/config.ts';
import { newToken, readDaemonFile, removeDaemonFile, writeDaemonFile } from '../daemon/daemon-file.ts';
import { parseDuration } from '../daemon/duration.ts';
import { serveDaemonHttp, type DaemonHttpServer } from '../daemon/http-server.ts';
import { describeError, FatalError, SluiceError } from '../errors.ts';
import { createLogger, type LogFormat } from '../log.ts';
import { startDaemonServices, type DaemonServices } from '../admin/services.ts';
import { listPipelineNames, pipelinesDir } from '../pipeline-loader.ts';
import { flagNumber, flagString, parseArgs, UsageError } from './args.ts';

const FLAGS = {
  help: {},
  config: { value: true },
  'amqp-url': { value: true },
  exchange: { value: true },
  queue: { value: true },
  'routing-key': { value: true, repeat: true },
  concurrency: { value: true },
  pipelines: { value: true },
  'max-attempts': { value: true },
  'max-redeliveries': { value: true },
  'retry-delay': { value: true },
  grace: { value: true },
  'http-host': { value: true },
  'http-port': { value: true },
  'state-dir': { value: true },
  'clickhouse-url': { value: true },
  'log-format': { value: true },
  'print-config': {},
  'admin-host': { value: true },
  'admin-port': { value: true },
};

export const SERVE_USAGE = `usage: npm run serve -- [flags]

Consume trigger messages from RabbitMQ and run the pipelines they name.

  --config FILE            JSON config file (default $SLUICE_DAEMON_CONFIG, or ./sluice-daemon.json if present)
  --amqp-url URL           broker, amqp:// or amqps:// (default $SLUICE_AMQP_URL, or amqp://guest:guest@127.0.0.1:5672)
  --exchange NAME          trigger exchange (default sluice.triggers)
  --queue NAME             trigger queue, shared by all daemons (default sluice.triggers)
  --routing-key KEY        bind the queue to the trigger exchange with KEY (repeat; default run.#)
  --concurrency N          runs at once, = prefetch (default 4)
  --pipelines a,b|*        pipelines messages may trigger (default *: all)
  --max-attempts N         runs per message before it is dead-lettered (default 3)
  --max-redeliveries N     redeliveries (its daemon died mid-run) before it is dead-lettered (default 5)
  --retry-delay DURATION   wait before the second attempt, doubling after (default 5s)
  --grace DURATION         on SIGTERM, time for running runs to finish (default 30s)
  --http-host HOST         address of /metrics, /healthz, /query (default 127.0.0.1)
  --http-port P            their port (default 9465; 0 = any free port)
  --state-dir DIR          state: embedded ClickHouse, dead letters, daemon.json (default .sluice, or $SLUICE_STATE_DIR)
  --clickhouse-url URL     a ClickHouse server as the store ($SLUICE_CLICKHOUSE_URL); needed to run several daemons
  --log-format text|json   logs on stderr
  --print-config           print the effective configuration and exit
  --admin-port P           serve the admin API (/api/) and web page (/) on P (0 = any free port; default $SLUICE_ADMIN_PORT, else off)
  --admin-host HOST        their address (default $SLUICE_ADMIN_HOST, or 127.0.0.1)

See docs/daemon.md for the config file, the environment variables and scaling out.
`;

export async function main(argv: string[]): Promise<number> {
  try {
    return await serve(argv);
  } catch (err) {
    if (err instanceof SluiceError) {
      process.stderr.write(`sluice serve: ${describeError(err)}\n`);
      return 1;
    }
    throw err;
  }
}

function overridesFromFlags(args: ReturnType<typeof parseArgs>): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const set = (key: string, value: unknown) => {
    if (value === undefined) return;
    const parts = key.split('.');
    let node = o;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]!] = value;
  };
  set('amqp.url', flagString(args, 'amqp-url'));
  set('exchange', flagString(args, 'exchange'));
  set('queue', flagString(args, 'queue'));
  const keys = args.flags.get('routing-key')?.filter((v): v is string => typeof v === 'string');
  if (keys?.length) set('routingKeys', keys);
  set('concurrency', flagNumber(args, 'concurrency'));
  const pipelines = flagString(args, 'pipelines');
  if (pipelines !== undefined) set('pipelines', pipelines.trim() === '*' ? '*' : pipelines.split(',').map((s) => s.trim()).filter(Boolean));
  set('retry.maxAttempts', flagNumber(args, 'max-attempts'));
  set('maxRedeliveries', flagNumber(args, 'max-redeliveries'));
  set('retry.delay', flagString(args, 'retry-delay'));
  set('grace', flagString(args, 'grace'));
  set('http.host', flagString(args, 'http-host'));
  set('http.port', flagNumber(args, 'http-port'));
  return o;
}

function printable(config: DaemonConfig): unknown {
  return { ...config, amqp: { ...config.amqp, url: describeAmqpUrl(config.amqp.url) }, ...topologyNames(config) };
}

async function serve(argv: string[]): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  if (args.flags.has('help')) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  const logFormat = (flagString(args, 'log-format') ?? 'text') as LogFormat;
  if (logFormat !== 'text' && logFormat !== 'json') throw new UsageError(`--log-format must be text or json, not "${logFormat}"`);
  for (const flag of ['retry-delay', 'grace']) {
    const v = flagString(args, flag);
    if (v !== undefined) {
      try {
        parseDuration(v, `--${flag}`);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
    }
  }
  const { config, file } = loadDaemonConfig({ file: configPath(flagString(args, 'config')), overrides: overridesFromFlags(args) });
  if (args.flags.has('print-config')) {
    process.stdout.write(JSON.stringify(printable(config), null, 2) + '\n');
    return 0;
  }
  const log = createLogger({ format: logFormat });
  const stateDir = path.resolve(flagString(args, 'state-dir') ?? process.env.SLUICE_STATE_DIR ?? '.sluice');

  if (config.pipelines !== '*') {
    const known = await listPipelineNames();
    const missing = config.pipelines.filter((p) => !known.includes(p));
    if (missing.length) log.warn(`pipelines in the config that are not in ${pipelinesDir()}: ${missing.join(', ')} (messages for them are dead-lettered)`);
  }
  if (config.routes.length) {
    const known = await listPipelineNames();
    for (const route of config.routes) {
      if (!known.includes(route.pipeline)) log.warn(`route ${route.name ?? `${route.exchange}/${route.routingKey}`} runs pipeline "${route.pipeline}", which is not in ${pipelinesDir()}: its messages will be dead-lettered`);
    }
  }

  // the store: a server (any number of daemons), or the embedded one (one daemon)
  const storeConfig = storeConfigFromEnv(process.env, { url: flagString(args, 'clickhouse-url') });
  const embedded = !storeConfig.url;
  const storeDir = embedded ? path.resolve(storeConfig.dir ?? path.join(stateDir, 'clickhouse')) : undefined;
  if (embedded) {
    const other = readDaemonFile(stateDir);
    if (other && other.pid !== process.pid) throw secondDaemon(other.pid, storeDir!, true);
  }
  let store: ClickHouseStore;
  try {
    store = await openStore(storeConfig, { stateDir });
  } catch (err) {
    const holder = /in use by another process \(pid (\d+)\)/.exec((err as Error).message)?.[1];
    if (embedded && holder) throw secondDaemon(Number(holder), storeDir!, readDaemonFile(stateDir)?.pid === Number(holder));
    throw err;
  }

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const daemon = new Daemon({ config, store, stateDir, log, registry });
  const token = newToken();
  let http: DaemonHttpServer | undefined;
  let stopping: Promise<void> | undefined;
  let services: DaemonServices | undefined;
  const cleanup = async () => {
    await services?.close().catch(() => undefined);
    await http?.close();
    if (embedded) removeDaemonFile(stateDir);
    await store.close().catch(() => undefined);
  };
  try {
    http = await serveDaemonHttp({
      host: config.http.host,
      port: config.http.port,
      registry,
      health: () => daemon.health(),
      query: { token, run: (sql, format) => store.queryText(sql, format) },
    });
    if (embedded) {
      writeDaemonFile(stateDir, { pid: process.pid, startedAt: new Date().toISOString(), url: http.url, token, store: store.description, storeDir });
    }
  } catch (err) {
    await cleanup();
    throw err;
  }

  let signalled: NodeJS.Signals | undefined;
  const stopped = new Promise<void>((resolve) => {
    let firstAt = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      // npm, tsx and a terminal's process group may deliver one Ctrl-C or SIGTERM more
      // than once within milliseconds: only a second signal a second later means "now"
      if (signalled && Date.now() - firstAt < 1000) return;
      if (signalled) {
        process.stderr.write(`sluice serve: ${signal} again: exiting now (unacked messages go back to the queue)\n`);
        process.exit(signal === 'SIGINT' ? 130 : 143);
      }
      signalled = signal;
      firstAt = Date.now();
      log.info(`${signal}: stopping — no new messages; running runs get ${Math.round(config.grace / 1000)} s to finish (${signal} again to exit at once)`);
      stopping ??= (services?.close() ?? Promise.resolve()).catch(() => undefined).then(() => daemon.stop(config.grace));
      void stopping.then(resolve, (err: unknown) => {
        log.error(`stopping failed: ${describeError(err)}`);
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  process.on('unhandledRejection', (err) => log.error(`unexpected error (the daemon goes on): ${describeError(err)}`));

  log.info(`sluice daemon pid ${process.pid}: store ${describeStoreConfig(storeConfig, { stateDir })}; config ${file ?? '(none: defaults and environment)'}; http ${http.url} (/metrics, /healthz${embedded ? ', /query' : ''})`);
  try {
    await Promise.race([daemon.start(), stopped]);
  } catch (err) {
    await daemon.stop(0).catch(() => undefined);
    await cleanup();
    throw err;
  }
  if (!signalled) {
    try {
      // the scheduler and, with --admin-port, the admin API and page (docs/admin.md)
      services = await startDaemonServices({ daemon, store, config, log, registry, adminHost: flagString(args, 'admin-host'), adminPort: flagNumber(args, 'admin-port') });
    } catch (err) {
      await daemon.stop(0).catch(() => undefined);
      await cleanup();
      throw err;
    }
  }
  if (!signalled) log.info('ready');
  await stopped;
  await cleanup();
  log.info('stopped');
  return 0;
}

function secondDaemon(pid: number, dir: string, isDaemon: boolean): FatalError {
  return new FatalError(`${isDaemon ? 'another sluice daemon' : 'another process'} (pid ${pid}) already uses the embedded store at ${dir}; the embedded store (chDB) is single-process, so one daemon per state directory`, {
    hint: 'stop the other daemon, give this one its own --state-dir, or scale out by pointing every daemon at a ClickHouse server (SLUICE_CLICKHOUSE_URL, see docs/daemon.md)',
  });
}
