/**
 * What every source, operator and sink of a run can reach: identity, cancellation,
 * the permission-checked file system and HTTP client, the logger and the metrics
 * registry. The runtime builds one per run.
 */
import type { Registry } from 'prom-client';
import type { ClickHouseStore } from './clickhouse/store.ts';
import type { GuardedFs } from './guarded-fs.ts';
import type { HttpClient } from './http-client.ts';
import type { Logger } from './log.ts';
import type { Permissions } from './permissions.ts';

export interface RunContext {
  readonly runId: string;
  readonly pipeline: string;
  /** aborted when the run is asked to stop (Ctrl-C, SIGTERM, fatal error) */
  readonly signal: AbortSignal;
  readonly permissions: Permissions;
  readonly fs: GuardedFs;
  readonly http: HttpClient;
  readonly log: Logger;
  /** where sluice keeps its state: `.sluice/` under the working directory by default */
  readonly stateDir: string;
  /** the process's Prometheus registry; sinks and sources may register data metrics */
  readonly metrics: Registry;
  /**
   * the run's ClickHouse store (embedded chDB or a server), opened on first call and
   * closed when the run ends; sinks, the `seen` operator and run records share it
   */
  store(): Promise<ClickHouseStore>;
}
