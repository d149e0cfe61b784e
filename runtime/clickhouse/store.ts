/**
 * The ClickHouse store: one interface, two backends — embedded chDB under
 * `.sluice/clickhouse/` (the default, loaded only when used) and a server over HTTP(S)
 * via @clickhouse/client (when `SLUICE_CLICKHOUSE_URL` or `--clickhouse-url` is set).
 * The sink, the `seen` operator, run records and `npm run query` all go through it, so
 * the same SQL runs either way.
 */

export interface ServerVersion {
  major: number;
  minor: number;
  patch: number;
  /** as the server reports it, e.g. "18.16.1" or "26.7.2.1" */
  text: string;
}

/** What a backend can do; decided by version, so SQL and settings adapt to old servers. */
export interface StoreFeatures {
  /** `insert_deduplication_token` setting on INSERT */
  insertDeduplicationToken: boolean;
  /** `non_replicated_deduplication_window` MergeTree setting */
  nonReplicatedDeduplication: boolean;
  lowCardinality: boolean;
  dateTime64: boolean;
  /** `input_format_allow_errors_*`, `IF NOT EXISTS` on ADD COLUMN, etc. can be added here */
  addColumnIfNotExists: boolean;
}

export type InsertRows = AsyncIterable<Record<string, unknown>> | Iterable<Record<string, unknown>>;

export interface InsertOptions {
  /** ClickHouse settings for this INSERT (e.g. insert_deduplication_token) */
  settings?: Record<string, string | number>;
  /** column list for the INSERT; default: the keys present in the rows */
  columns?: readonly string[];
  signal?: AbortSignal;
}

export interface ClickHouseStore {
  readonly kind: 'embedded' | 'server';
  /** for messages: "embedded ClickHouse at /path/.sluice/clickhouse" or "ClickHouse server http://…" */
  readonly description: string;
  /** the database tables live in */
  readonly database: string;
  version(): Promise<ServerVersion>;
  features(): Promise<StoreFeatures>;
  /** a statement that returns nothing (DDL, OPTIMIZE, INSERT … SELECT) */
  command(sql: string, settings?: Record<string, string | number>): Promise<void>;
  /** rows as plain objects (64-bit integers as strings, as ClickHouse's JSON formats give them) */
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  /** the result as text in a ClickHouse output format (PrettyCompact, CSVWithNames, JSONEachRow, …) */
  queryText(sql: string, format: string): Promise<string>;
  /** rows streamed as JSONEachRow (never one giant string); rejects with a classified error */
  insert(table: string, rows: InsertRows, options?: InsertOptions): Promise<void>;
  close(): Promise<void>;
}
