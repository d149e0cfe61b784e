/**
 * Which ClickHouse store a process uses, from its environment: a server when
 * `SLUICE_CLICKHOUSE_URL` (or `--clickhouse-url`) is set, else embedded chDB under
 * `<stateDir>/clickhouse`. The embedded store's module (and with it chDB, ~600 MB
 * mapped) is imported only on that path, so `--help`, the server path and commands
 * that never touch the store do not load it.
 *
 * | variable                     | meaning                                         |
 * | ---------------------------- | ----------------------------------------------- |
 * | `SLUICE_CLICKHOUSE_URL`      | http(s)://host:port of a server; unset: embedded |
 * | `SLUICE_CLICKHOUSE_USER`     | server user (default `default`)                 |
 * | `SLUICE_CLICKHOUSE_PASSWORD` | server password (default empty)                 |
 * | `SLUICE_CLICKHOUSE_DATABASE` | database of sluice's tables (default `sluice`)  |
 *
 * @example
 * ```ts
 * const store = await openStore(storeConfigFromEnv(), { stateDir: '.sluice' });
 * ```
 */
import path from 'node:path';
import { FatalError } from '../errors.ts';
import type { ClickHouseStore } from './store.ts';

export interface StoreConfig {
  /** a server URL; undefined means embedded chDB */
  url?: string;
  user?: string;
  password?: string;
  database: string;
  /** server requests only; default 30 000 ms */
  requestTimeoutMs?: number;
  /** embedded only: the data directory; default `<stateDir>/clickhouse` */
  dir?: string;
}

/** The store configuration from `SLUICE_CLICKHOUSE_*`; `overrides.url` (a CLI flag) wins over the variable. */
export function storeConfigFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: { url?: string } = {}): StoreConfig {
  const url = (overrides.url ?? env.SLUICE_CLICKHOUSE_URL)?.trim() || undefined;
  const database = env.SLUICE_CLICKHOUSE_DATABASE?.trim() || 'sluice';
  const config: StoreConfig = { database };
  if (url) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new FatalError(`SLUICE_CLICKHOUSE_URL "${url}" is not a URL`, { hint: 'give http(s)://host:port' });
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new FatalError(`SLUICE_CLICKHOUSE_URL "${parsed.protocol}//${parsed.host}" must be http:// or https:// (ClickHouse's HTTP interface, usually port 8123 or 8443)`);
    }
    config.url = url;
  }
  if (env.SLUICE_CLICKHOUSE_USER) config.user = env.SLUICE_CLICKHOUSE_USER;
  if (env.SLUICE_CLICKHOUSE_PASSWORD !== undefined) config.password = env.SLUICE_CLICKHOUSE_PASSWORD;
  return config;
}

/** Open the configured store and create its database if missing. */
export async function openStore(config: StoreConfig, options: { stateDir: string }): Promise<ClickHouseStore> {
  if (config.url) {
    const { openServerStore } = await import('./server-store.ts');
    return openServerStore({
      url: config.url,
      user: config.user,
      password: config.password,
      database: config.database,
      requestTimeoutMs: config.requestTimeoutMs,
    });
  }
  const { openEmbeddedStore } = await import('./embedded-store.ts');
  return openEmbeddedStore({ dir: config.dir ?? path.join(options.stateDir, 'clickhouse'), database: config.database });
}

/** Where the store of this configuration is, for messages (without opening it). */
export function describeStoreConfig(config: StoreConfig, options: { stateDir: string }): string {
  if (!config.url) return `embedded ClickHouse at ${path.resolve(config.dir ?? path.join(options.stateDir, 'clickhouse'))}`;
  const u = new URL(config.url);
  u.username = '';
  u.password = '';
  return `ClickHouse server ${u.toString().replace(/\/$/, '')}`;
}
