/**
 * The embedded store as seen through a running daemon: chDB lets one process open a
 * store directory, so while `npm run serve` holds `.sluice/clickhouse`, `npm run
 * query` and `npm run pipeline -- runs` send their (read-only) SQL to the daemon's
 * query endpoint on loopback instead of failing on the lock. `openStoreOrDaemon` is
 * what those commands call: the daemon's store when a live daemon holds the embedded
 * store of this state directory, else the configured store as usual.
 *
 * @example
 * ```ts
 * const store = await openStoreOrDaemon(storeConfigFromEnv(), { stateDir: '.sluice' });
 * await store.query('SELECT count() AS n FROM sluice_runs FINAL');
 * ```
 */
import path from 'node:path';
import { openStore, type StoreConfig } from '../clickhouse/open-store.ts';
import { parseJsonEachRow, type ClickHouseStore, type ServerVersion, type StoreFeatures } from '../clickhouse/store.ts';
import { featuresFor, parseVersion } from '../clickhouse/version.ts';
import { FatalError, PermanentError } from '../errors.ts';
import { readDaemonFile, type DaemonFile } from './daemon-file.ts';

/** The configured store, or the daemon's query endpoint when a daemon holds the embedded store. */
export async function openStoreOrDaemon(config: StoreConfig, options: { stateDir: string }): Promise<ClickHouseStore> {
  if (!config.url) {
    const daemon = readDaemonFile(options.stateDir);
    const dir = path.resolve(config.dir ?? path.join(options.stateDir, 'clickhouse'));
    if (daemon && daemon.storeDir && path.resolve(daemon.storeDir) === dir) return new DaemonQueryStore(daemon, config.database);
  }
  return openStore(config, options);
}

/** A read-only ClickHouseStore over the daemon's `/query` endpoint. */
export class DaemonQueryStore implements ClickHouseStore {
  readonly kind = 'embedded' as const;
  readonly description: string;
  private versionPromise?: Promise<ServerVersion>;

  constructor(private readonly daemon: DaemonFile, readonly database: string) {
    this.description = `${daemon.store} (through the sluice daemon, pid ${daemon.pid})`;
  }

  version(): Promise<ServerVersion> {
    this.versionPromise ??= this.query<{ v: string }>('SELECT version() AS v').then((rows) => parseVersion(rows[0]!.v));
    return this.versionPromise;
  }

  async features(): Promise<StoreFeatures> {
    return featuresFor(await this.version());
  }

  async query<T = Record<string, unknown>>(sql: string): Promise<T[]> {
    return parseJsonEachRow<T>(await this.queryText(sql, 'JSONEachRow'));
  }

  async queryText(sql: string, format: string): Promise<string> {
    const url = new URL('/query', this.daemon.url);
    url.searchParams.set('format', format);
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.daemon.token}`, 'content-type': 'text/plain; charset=utf-8' },
        body: sql,
        signal: AbortSignal.timeout(120_000),
      });
    } catch (err) {
      throw new FatalError(`the sluice daemon (pid ${this.daemon.pid}) holds the embedded store but does not answer at ${this.daemon.url}: ${(err as Error).message}`, {
        hint: 'check the daemon (npm run serve); its /healthz says what is wrong',
      });
    }
    const text = await response.text();
    if (response.ok) return text;
    let message = text.trim();
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? message;
    } catch {
      // plain text
    }
    throw new PermanentError(`${message} (through the sluice daemon, pid ${this.daemon.pid})`);
  }

  command(): Promise<void> {
    return Promise.reject(this.readOnly());
  }

  insert(): Promise<void> {
    return Promise.reject(this.readOnly());
  }

  async close(): Promise<void> {
    // nothing held
  }

  private readOnly(): FatalError {
    return new FatalError(`the sluice daemon (pid ${this.daemon.pid}) holds ${this.daemon.store}; through it the store is read-only`, {
      hint: 'stop the daemon to write to the embedded store, or run daemons on a ClickHouse server (SLUICE_CLICKHOUSE_URL)',
    });
  }
}
