/**
 * What `npm run serve` runs next to the daemon: the scheduler (always, unless
 * `SLUICE_SCHEDULER=off`) and, with `--admin-port` (or `$SLUICE_ADMIN_PORT`), the admin
 * API and web page. Both use the daemon's store and broker connection.
 *
 * Scheduler settings (environment; durations like 500ms, 10s, 15m, 24h):
 *
 * | variable | default | meaning |
 * |---|---|---|
 * | `SLUICE_SCHEDULER` | `on` | `off`: this daemon fires no schedules (others may) |
 * | `SLUICE_SCHEDULER_REFRESH` | `10s` | reload schedules changed through other daemons this often |
 * | `SLUICE_SCHEDULER_GRACE` | `60s` | a due time older than this was missed (the `missed` policy applies) |
 * | `SLUICE_SCHEDULER_START_TIMEOUT` | `15m` | a fired trigger not started within this no longer blocks the next run |
 * | `SLUICE_SCHEDULER_STALE` | `24h` | a run `running` longer than this no longer blocks the next run |
 * | `SLUICE_SCHEDULER_CLAIM_TTL` | `10m` | how long a claim queue outlives its last use |
 */
import os from 'node:os';
import type { Registry } from 'prom-client';
import type { ClickHouseStore } from '../clickhouse/store.ts';
import type { DaemonConfig } from '../daemon/config.ts';
import type { Daemon } from '../daemon/daemon.ts';
import { parseDuration } from '../daemon/duration.ts';
import { FatalError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Scheduler } from '../scheduler/scheduler.ts';
import { serveAdmin, type AdminServer } from './server.ts';

export interface DaemonServices {
  scheduler?: Scheduler;
  admin?: AdminServer;
  close(): Promise<void>;
}

export interface DaemonServicesOptions {
  daemon: Daemon;
  store: ClickHouseStore;
  config: DaemonConfig;
  log: Logger;
  registry: Registry;
  /** --admin-host / --admin-port (flags win over the environment) */
  adminHost?: string;
  adminPort?: number;
  env?: NodeJS.ProcessEnv;
  pipelinesDir?: string;
}

function envDuration(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name]?.trim();
  if (!v) return undefined;
  try {
    return parseDuration(v, name);
  } catch (err) {
    throw new FatalError((err as Error).message);
  }
}

export async function startDaemonServices(o: DaemonServicesOptions): Promise<DaemonServices> {
  const env = o.env ?? process.env;
  const schedulerOff = /^(off|0|false|no)$/i.test(env.SLUICE_SCHEDULER?.trim() ?? '');
  const portText = o.adminPort !== undefined ? String(o.adminPort) : env.SLUICE_ADMIN_PORT?.trim();
  const adminPort = portText ? Number(portText) : undefined;
  if (adminPort !== undefined && !(Number.isInteger(adminPort) && adminPort >= 0 && adminPort < 65536)) {
    throw new FatalError(`the admin port must be a port number (0 = any free port), not "${portText}"`);
  }
  const scheduler = new Scheduler({
    store: o.store,
    connection: o.daemon.connection,
    exchange: o.daemon.names.exchange,
    queue: o.daemon.names.queue,
    log: o.log,
    registry: o.registry,
    allowed: o.config.pipelines,
    identity: `${os.hostname()}:${process.pid}`,
    pipelinesDir: o.pipelinesDir,
    refreshMs: envDuration(env, 'SLUICE_SCHEDULER_REFRESH'),
    graceMs: envDuration(env, 'SLUICE_SCHEDULER_GRACE'),
    startTimeoutMs: envDuration(env, 'SLUICE_SCHEDULER_START_TIMEOUT'),
    staleMs: envDuration(env, 'SLUICE_SCHEDULER_STALE'),
    claimTtlMs: envDuration(env, 'SLUICE_SCHEDULER_CLAIM_TTL'),
  });
  // the API reads and changes schedules through the scheduler even when it does not fire them
  if (schedulerOff) {
    await scheduler.refresh();
    o.log.info('scheduler off (SLUICE_SCHEDULER=off): this daemon fires no schedules');
  } else {
    await scheduler.start();
  }
  let admin: AdminServer | undefined;
  if (adminPort !== undefined) {
    try {
      admin = await serveAdmin({
        host: o.adminHost ?? env.SLUICE_ADMIN_HOST?.trim() ?? '127.0.0.1',
        port: adminPort,
        store: o.store,
        scheduler,
        log: o.log,
        allowed: o.config.pipelines,
        pipelinesDir: o.pipelinesDir,
      });
    } catch (err) {
      await scheduler.stop();
      throw err;
    }
    o.log.info(`admin ${admin.url}/ (API under /api/, OpenAPI at /api/openapi.json)`);
  }
  return {
    scheduler,
    admin,
    close: async () => {
      await admin?.close();
      await scheduler.stop();
    },
  };
}
