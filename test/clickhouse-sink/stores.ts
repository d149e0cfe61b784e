/**
 * The two backends the clickhouse-sink tests run on: the test ClickHouse server
 * (18.16, from scripts/services.sh via vitest's globalSetup) with a database of the
 * test's own, and embedded chDB in a directory of the test file's own.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import { openServerStore } from '../../runtime/clickhouse/server-store.ts';
import type { ClickHouseStore, EncodedRows, InsertOptions, InsertRows } from '../../runtime/clickhouse/store.ts';
import { quoteIdentifier, quoteString } from '../../runtime/clickhouse/store.ts';
import { createLogger } from '../../runtime/log.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const quiet = createLogger({ level: 'silent' });

/** The test server's URL: from globalSetup, or from the services env file when run alone. */
export function serverUrl(): string {
  const fromEnv = process.env.SLUICE_TEST_CLICKHOUSE_URL;
  if (fromEnv) return fromEnv;
  const file = path.join(process.env.SLUICE_SERVICES_DIR ?? path.join(ROOT, '.sluice', 'services'), 'env');
  const match = /^SLUICE_TEST_CLICKHOUSE_URL=(.*)$/m.exec(readFileSync(file, 'utf8'));
  if (!match) throw new Error(`no SLUICE_TEST_CLICKHOUSE_URL in ${file}: run scripts/services.sh`);
  return match[1]!.trim();
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

export interface Backend {
  readonly name: 'server' | 'embedded';
  readonly store: ClickHouseStore;
  /** drop what the test made, close the store */
  cleanup(): Promise<void>;
}

export async function serverBackend(url = serverUrl()): Promise<Backend> {
  const database = uniqueName('sluice_test_chsink');
  const store = await openServerStore({ url, database });
  return {
    name: 'server',
    store,
    cleanup: async () => {
      await store.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(database)}`).catch(() => undefined);
      await store.close();
    },
  };
}

export async function embeddedBackend(): Promise<Backend> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-chsink-chdb-'));
  const store = await openEmbeddedStore({ dir, database: 'sluice' });
  return {
    name: 'embedded',
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** One number from a query like `SELECT count() AS n FROM …`. */
export async function scalar(store: ClickHouseStore, sql: string): Promise<number> {
  const rows = await store.query<{ n: string | number }>(sql);
  return Number(rows[0]!.n);
}

export interface Counts {
  /** rows as stored, before merges */
  rows: number;
  distinct: number;
  /** rows after collapsing by key (FINAL) */
  final: number;
  /**
   * rows the inserts stored, merged since or not: parts of one block (as inserted), active or not
   * (a merged part stays listed, inactive, for old_parts_lifetime: 8 minutes)
   */
  inserted: number;
}

export async function counts(store: ClickHouseStore, table: string, key: string): Promise<Counts> {
  const t = `${quoteIdentifier(store.database)}.${quoteIdentifier(table)}`;
  const k = quoteIdentifier(key);
  return {
    rows: await scalar(store, `SELECT count() AS n FROM ${t}`),
    distinct: await scalar(store, `SELECT uniqExact(${k}) AS n FROM ${t}`),
    final: await scalar(store, `SELECT count() AS n FROM ${t} FINAL`),
    inserted: await scalar(
      store,
      // an inserted part covers one block number; of the parts covering one block (the
      // inserted one, and what merging it alone made), the lowest level is the insert's
      `SELECT sum(r) AS n FROM (SELECT min_block_number, argMin(rows, level) AS r FROM system.parts
         WHERE database = ${quoteString(store.database)} AND table = ${quoteString(table)} AND min_block_number = max_block_number
         GROUP BY partition_id, min_block_number)`,
    ),
  };
}

/** A store that passes everything through, counting calls, and can make an insert fail after it went through. */
export class SpyStore implements ClickHouseStore {
  queries: string[] = [];
  inserts = 0;
  insertSettings: Record<string, string | number>[] = [];
  /** rows per insert (when given as an array, or encoded) */
  insertSizes: number[] = [];
  /** the format of each encoded insert */
  insertFormats: string[] = [];
  /** called after a successful insert: throw from it to lose the answer */
  afterInsert?: (n: number) => void;

  constructor(private readonly inner: ClickHouseStore) {}
  get kind() { return this.inner.kind; }
  get description() { return this.inner.description; }
  get database() { return this.inner.database; }
  version() { return this.inner.version(); }
  features() { return this.inner.features(); }
  command(sql: string, settings?: Record<string, string | number>) { return this.inner.command(sql, settings); }
  query<T = Record<string, unknown>>(sql: string): Promise<T[]> {
    this.queries.push(sql);
    return this.inner.query<T>(sql);
  }
  queryText(sql: string, format: string) { return this.inner.queryText(sql, format); }
  async insert(table: string, rows: InsertRows, options?: InsertOptions): Promise<void> {
    this.insertSettings.push({ ...options?.settings });
    if (Array.isArray(rows)) this.insertSizes.push(rows.length);
    await this.inner.insert(table, rows, options);
    this.inserts++;
    this.afterInsert?.(this.inserts);
  }
  async insertEncoded(table: string, rows: EncodedRows, options?: InsertOptions): Promise<void> {
    this.insertSettings.push({ ...options?.settings });
    this.insertFormats.push(rows.format);
    this.insertSizes.push(rows.chunks.reduce((n, c) => n + countLines(c), 0));
    await this.inner.insertEncoded!(table, rows, options);
    this.inserts++;
    this.afterInsert?.(this.inserts);
  }
  close() { return this.inner.close(); }
}

/**
 * OPTIMIZE … FINAL until the rows collapse: it does nothing (and says nothing) while a
 * background merge holds the parts, so try again for a while.
 */
export async function optimizeFinal(store: ClickHouseStore, table: string, key: string, timeoutMs = 20_000): Promise<Counts> {
  const t = `${quoteIdentifier(store.database)}.${quoteIdentifier(table)}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await store.command(`OPTIMIZE TABLE ${t} FINAL`);
    const c = await counts(store, table, key);
    if (c.rows === c.distinct || Date.now() > deadline) return c;
    await new Promise((r) => setTimeout(r, 200));
  }
}

function countLines(chunk: Buffer): number {
  let n = 0;
  for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
  return n;
}
