/**
 * The `clickhouse` sink: records of a table's row type, inserted in batches through the
 * run's ClickHouse store (embedded chDB or a server), so that a retried batch and a
 * re-run do not leave duplicates. README.md beside this file states the guarantee per
 * backend and how it was measured.
 *
 * - **Batches**: up to `maxRows` rows (default 50 000) or about `maxBytes` (default
 *   16 MiB), or what has gathered after `maxDelayMs` (default 1 s). Each batch is one
 *   INSERT with the table's columns only (fields of a record beyond the table are left
 *   out), in `TabSeparated` when the table's columns are all scalar: each row is encoded
 *   to its line as it reaches the sink (`batch.encode`), so the engine holds one flat
 *   string per row instead of the row's objects. A batch with a row only JSON can
 *   write (see runtime/clickhouse/tab-separated.ts) goes as `JSONEachRow`. Values:
 *   `Date` → the column's format (DateTime as Unix seconds, Date as `YYYY-MM-DD` UTC),
 *   `bigint` → exact integers, the same in both formats.
 * - **Errors**: transient (server down, connection reset, timeouts, 5xx without a
 *   ClickHouse code, TOO_MANY_PARTS, memory pressure) → `TransientError`, so the engine
 *   holds the batch (its items stay unacknowledged) and retries it with backoff; while
 *   the server refuses connections the sink asks for at least `attempt` seconds between
 *   tries (a restart takes seconds, not milliseconds). Bad data (a value that does not
 *   parse as its column's type) → `PermanentError` with the server's message, so the
 *   engine splits the batch and dead-letters only the bad rows. A table that lost a
 *   column or vanished mid-run → `FatalError` (every row would fail; splitting would
 *   only multiply the failures).
 * - **Idempotency**: every INSERT carries `insert_deduplication_token` = SHA-256 of the
 *   table, its columns, the format and the bytes sent, where the server has the setting (22.2+)
 *   and the table keeps a deduplication window; the table is created as
 *   ReplacingMergeTree on its ORDER BY key with `non_replicated_deduplication_window`,
 *   so rows written twice (a retry on an old server, a re-run) collapse to one per key
 *   (read with `FINAL` for exact counts).
 * - **Open**: creates the table if it is missing (`createTable`, default true; never
 *   altered: use `migrate` for that), then checks it has every column of the
 *   definition, so a table that drifted fails the run at once instead of every batch.
 *
 * @example
 * ```ts
 * import { clickhouse } from '../sinks/clickhouse/index.ts';
 * import { defineTable } from '../runtime/clickhouse/table.ts';
 *
 * const packages = defineTable('packages', {
 *   columns: { sha256: 'String', name: 'String', size: 'UInt64', mtime: 'DateTime' },
 *   orderBy: ['sha256'],
 *   versionColumn: 'mtime',
 * });
 *
 * export default definePipeline({
 *   // …
 *   sinks: () => [clickhouse(packages, { maxRows: 20_000 })],
 * });
 * ```
 */
import { createHash } from 'node:crypto';
import { jsonEachRowChunks, quoteString, type ClickHouseStore, type ColumnTypes, type EncodedRows, type StoreFeatures } from '../../runtime/clickhouse/store.ts';
import { linesToChunks, NOT_TABULAR, tabSeparatedEncoder, type TabSeparatedEncoder } from '../../runtime/clickhouse/tab-separated.ts';
import { createTableSql, type TableDefinition } from '../../runtime/clickhouse/table.ts';
import type { RunContext } from '../../runtime/context.ts';
import { classifyError, FatalError, PermanentError, SluiceError, TransientError } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import type { Sink, SinkWriteContext } from '../../runtime/pipeline.ts';

export interface ClickHouseSinkOptions {
  /** rows per INSERT at most; default 50 000, at most 1 000 000 */
  readonly maxRows?: number;
  /** JSON bytes per INSERT, about (estimated from string lengths); default and at most 16 MiB */
  readonly maxBytes?: number;
  /** insert a partial batch this long after its first row; default 1000 ms */
  readonly maxDelayMs?: number;
  /** create the table on open if it does not exist (never alter it); default true */
  readonly createTable?: boolean;
  /**
   * send `insert_deduplication_token` (a hash of the batch) where the server supports
   * it, so a retried batch is written once; default true. Turn it off for a table
   * where the very same batch written again must count twice.
   */
  readonly deduplicate?: boolean;
  /** the sink's name in logs, metrics and dead letters; default `clickhouse:<table>` */
  readonly name?: string;
  /** where to get the store; default the run's, `ctx.store()` */
  readonly store?: () => Promise<ClickHouseStore>;
}

/** The `non_replicated_deduplication_window` the sink gives tables it creates (ClickHouse 21.1+). */
export const DEDUPLICATION_WINDOW = 1000;

const DEFAULTS = { maxRows: 50_000, maxBytes: 16 * 1024 * 1024, maxDelayMs: 1000 } as const;
const LIMITS = { maxRows: 1_000_000, maxBytes: 16 * 1024 * 1024 } as const;

/** What `open` found out, for the writes of one run. */
interface Prepared {
  store: ClickHouseStore;
  /** `db.table` for messages */
  qualified: string;
  /** the INSERT carries a deduplication token */
  dedupe: boolean;
  /** the TabSeparated encoder for the table's column types, when they all have one and the store takes encoded rows */
  encoder: TabSeparatedEncoder | undefined;
  /** column → type as the server has it */
  columnTypes: ColumnTypes;
}

/**
 * A sink that inserts records into a ClickHouse table. The record type is the table's
 * row type, so a stream that lacks a column does not compile.
 */
export function clickhouse<Row>(table: TableDefinition<Row>, options: ClickHouseSinkOptions = {}): Sink<Row> {
  const maxRows = options.maxRows ?? DEFAULTS.maxRows;
  const maxBytes = options.maxBytes ?? DEFAULTS.maxBytes;
  const maxDelayMs = options.maxDelayMs ?? DEFAULTS.maxDelayMs;
  // a batch must stay one INSERT of one block: atomic (a failed batch wrote nothing, so
  // splitting it to isolate a bad row writes nothing twice) and under one token
  if (!(Number.isInteger(maxRows) && maxRows >= 1 && maxRows <= LIMITS.maxRows)) {
    throw new FatalError(`clickhouse sink ${table.name}: maxRows must be an integer from 1 to ${LIMITS.maxRows}, got ${String(maxRows)}`, {
      hint: 'ClickHouse cuts an INSERT into blocks of max_insert_block_size (1 048 576) rows, and a batch must stay one block',
    });
  }
  if (!(maxBytes > 0 && maxBytes <= LIMITS.maxBytes)) {
    throw new FatalError(`clickhouse sink ${table.name}: maxBytes must be > 0 and at most ${LIMITS.maxBytes} (16 MiB), got ${String(maxBytes)}`, {
      hint: 'the size is estimated from string lengths; up to 16 MiB, even text of 3-byte characters stays under the 64 MiB the embedded store writes as one INSERT',
    });
  }
  if (!(maxDelayMs >= 0)) throw new FatalError(`clickhouse sink ${table.name}: maxDelayMs must be >= 0, got ${String(maxDelayMs)}`);

  const columns = Object.keys(table.columns);
  const sizeOfRow = rowSizeEstimator(columns);
  // the runner hands a retried batch over as the same array: encode (and hash) it once
  const bodies = new WeakMap<readonly unknown[], { rows: EncodedRows; token: string | undefined }>();
  let prepared: Prepared | undefined;

  return {
    name: options.name ?? `clickhouse:${table.name}`,
    kind: 'clickhouse',
    batch: {
      maxRecords: maxRows,
      maxBytes,
      maxDelayMs,
      isolateFailures: true,
      // a row becomes its TabSeparated line as it arrives, so the runner holds one flat
      // string per row instead of the row's objects (see tab-separated.ts for the rows
      // that stay objects and go as JSONEachRow)
      encode: ((row: Row): unknown => {
        const encoder = prepared?.encoder;
        if (!encoder) return row;
        try {
          return encoder.encodeLine(row);
        } catch (err) {
          if (err === NOT_TABULAR) return row;
          throw new PermanentError(`clickhouse sink: ${prepared!.qualified}: ${(err as Error).message}`, { cause: err });
        }
      }) as (record: never) => unknown,
      decode: ((held: unknown): unknown => (typeof held === 'string' && prepared?.encoder ? prepared.encoder.decodeLine(held) : held)) as (encoded: never) => unknown,
      sizeOf: ((held: unknown) => (typeof held === 'string' ? held.length : sizeOfRow(held))) as (record: never) => number,
    },

    open: async (ctx: RunContext) => {
      prepared = undefined;
      const store = await (options.store ? options.store() : ctx.store());
      prepared = await prepare(store, table, options, ctx.log);
    },

    write: async (records: readonly unknown[], wctx: SinkWriteContext) => {
      const p = prepared;
      if (!p) throw new FatalError(`clickhouse sink ${table.name}: write before open (or after close)`);
      if (records.length === 0) return;
      try {
        let body = bodies.get(records);
        if (!body) {
          const rows = await encodeBatch(p, columns, records, wctx.signal);
          body = { rows, token: p.dedupe ? bodyToken(p.qualified, p.encoder?.columns ?? columns, rows) : undefined };
          bodies.set(records, body);
        }
        const settings: Record<string, string | number> = {};
        if (body.token !== undefined) settings.insert_deduplication_token = body.token;
        if (p.store.insertEncoded) {
          const insertColumns = body.rows.format === 'TabSeparated' ? p.encoder!.columns : columns;
          await p.store.insertEncoded(table.name, body.rows, { columns: insertColumns, settings, signal: wctx.signal });
        } else {
          // a store that takes only rows (a test double): the token is still the one of the JSON sent
          await p.store.insert(table.name, records as Iterable<Record<string, unknown>>, { columns, settings, signal: wctx.signal });
        }
      } catch (err) {
        if (wctx.signal.aborted) throw err;
        throw classifyInsertError(err, p.qualified, wctx.attempt);
      }
    },

    close: () => {
      prepared = undefined;
    },
  };
}

/**
 * The batch as the bytes of one INSERT: TabSeparated when every row is a line, else
 * JSONEachRow (lines decoded back to values the JSON encoder writes the same).
 */
async function encodeBatch(p: Prepared, columns: readonly string[], records: readonly unknown[], signal: AbortSignal): Promise<EncodedRows> {
  const encoder = p.encoder;
  let lines = encoder !== undefined;
  for (let i = 0; lines && i < records.length; i++) if (typeof records[i] !== 'string') lines = false;
  if (lines) return { format: 'TabSeparated', chunks: linesToChunks(records as readonly string[]) };
  const rows = records.map((r) => (typeof r === 'string' && encoder ? encoder.decodeLine(r) : r)) as Record<string, unknown>[];
  const chunks: Buffer[] = [];
  for await (const chunk of jsonEachRowChunks(rows, { columns, signal, columnTypes: async () => p.columnTypes })) chunks.push(chunk);
  return { format: 'JSONEachRow', chunks };
}

/**
 * The batch's deduplication token: a hash of the table, its columns, the format and the
 * bytes sent. The same rows encode to the same bytes, so a retry and a re-run of the
 * same batch get the same token, and any other rows another. Not a function of the
 * items or the attempt.
 */
function bodyToken(qualified: string, columns: readonly string[], rows: EncodedRows): string {
  const hash = createHash('sha256');
  hash.update(`${qualified}\n${columns.join(',')}\n${rows.format}\n`);
  for (const chunk of rows.chunks) hash.update(chunk);
  return `sluice-${hash.digest('hex')}`;
}

/** Create the table if asked, check it fits the definition, and decide on deduplication. */
async function prepare(
  store: ClickHouseStore,
  table: TableDefinition<unknown>,
  options: ClickHouseSinkOptions,
  log: Logger,
): Promise<Prepared> {
  const database = store.database;
  const qualified = `${database}.${table.name}`;
  const features = await store.features();
  if (options.createTable !== false) {
    await store.command(createTableSql(withDeduplicationWindow(table), database, features));
  }
  const where = `database = ${quoteString(database)} AND name = ${quoteString(table.name)}`;
  const found = await store.query<{ engine: string; engine_full: string }>(`SELECT engine, engine_full FROM system.tables WHERE ${where}`);
  const info = found[0];
  if (!info) {
    throw new FatalError(`clickhouse sink: table ${qualified} does not exist in ${store.description}`, {
      hint: 'create it with migrate(store, [table]), or leave createTable on',
    });
  }
  const actual = await store.query<{ name: string; type: string }>(
    `SELECT name, type FROM system.columns WHERE database = ${quoteString(database)} AND table = ${quoteString(table.name)}`,
  );
  const typeOf = new Map(actual.map((c) => [c.name, c.type]));
  const have = new Set(typeOf.keys());
  const missing = Object.keys(table.columns).filter((c) => !have.has(c));
  if (missing.length) {
    throw new FatalError(
      `clickhouse sink: table ${qualified} lacks column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of its definition (it has ${[...have].join(', ')})`,
      { hint: 'run migrate(store, [table]) to add them; the sink never alters a table' },
    );
  }
  const dedupe = options.deduplicate !== false && canDeduplicate(features, info.engine, info.engine_full);
  if (options.deduplicate !== false && !dedupe) {
    log.info(
      `clickhouse sink ${qualified}: inserts are not deduplicated on retry (${features.insertDeduplicationToken ? 'the table has no deduplication window' : `ClickHouse ${(await store.version()).text} has no insert_deduplication_token`}); ` +
        `rows written twice collapse by key in ${info.engine === 'ReplacingMergeTree' ? 'ReplacingMergeTree merges (read with FINAL)' : `${info.engine}: they do NOT collapse`}`,
    );
  }
  // the column types as the server has them (an old server may have created Bool as UInt8, …)
  const encoder = store.insertEncoded ? tabSeparatedEncoder(Object.keys(table.columns).map((c) => [c, typeOf.get(c)!] as const)) : undefined;
  return { store, qualified, dedupe, encoder, columnTypes: typeOf };
}

/** The definition with a deduplication window, unless it sets its own (left out by createTableSql on servers without it). */
function withDeduplicationWindow<Row>(table: TableDefinition<Row>): TableDefinition<Row> {
  if (table.settings && 'non_replicated_deduplication_window' in table.settings) return table;
  return { ...table, settings: { ...table.settings, non_replicated_deduplication_window: DEDUPLICATION_WINDOW } };
}

/** A token deduplicates only where the server has the setting and the table keeps the hashes. */
function canDeduplicate(features: StoreFeatures, engine: string, engineFull: string): boolean {
  if (!features.insertDeduplicationToken) return false;
  if (engine.startsWith('Replicated')) return true;
  const window = /\bnon_replicated_deduplication_window\s*=\s*'?(\d+)/.exec(engineFull);
  return window !== null && Number(window[1]) > 0;
}

/** A cheap estimate of a row's JSON size, for `maxBytes` (the runner's default would stringify every row). */
function rowSizeEstimator(columns: readonly string[]): (row: unknown) => number {
  const keyBytes = columns.reduce((n, c) => n + c.length + 4, 2);
  return (row) => {
    const r = row as Record<string, unknown>;
    let n = keyBytes;
    for (const c of columns) n += valueSize(r[c]);
    return n;
  };
}

function valueSize(value: unknown): number {
  switch (typeof value) {
    case 'string':
      return value.length + 2;
    case 'number':
      return 12;
    case 'bigint':
      return 20;
    case 'boolean':
      return 5;
    case 'undefined':
      return 0;
    case 'object': {
      if (value === null) return 4;
      if (value instanceof Date) return 12;
      if (Array.isArray(value)) {
        let n = 2;
        for (const v of value) n += valueSize(v) + 1;
        return n;
      }
      let n = 2;
      const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
      for (const [k, v] of entries) n += String(k).length + 4 + valueSize(v);
      return n;
    }
    default:
      return 8;
  }
}

/** Schema drift: the table (or a column) went away; every row would fail the same way. */
const SCHEMA_GONE = /\bUNKNOWN_TABLE\b|\bUNKNOWN_DATABASE\b|\bNO_SUCH_COLUMN_IN_TABLE\b|Table [^ ]+ doesn't exist|Table [^ ]+ does not exist|Database [^ ]+ doesn't exist|Database [^ ]+ does not exist|No such column [^ ]+ in table/;
/** Errors where the server was not reached or went away: worth waiting for a restart. */
const UNREACHABLE = /connection refused|ECONNREFUSED|ECONNRESET|socket hang up|EPIPE|other side closed|UND_ERR_SOCKET/i;
/** Too many partitions in one INSERT: a smaller batch may pass, so let the engine split it. */
const TOO_MANY_PARTITIONS = /Too many partitions for single INSERT block/;

/**
 * The engine's three kinds for an insert failure, with the server's message and the
 * table named. The store classifies first; the sink refines what it knows better.
 */
export function classifyInsertError(err: unknown, qualified: string, attempt: number): SluiceError {
  const text = errorText(err);
  const message = text.includes(qualified) ? text : `${qualified}: ${text}`;
  if (SCHEMA_GONE.test(text)) {
    return new FatalError(`clickhouse sink: ${message}`, {
      cause: err,
      hint: 'the table changed while the run was going; run migrate(store, [table]) and run again',
    });
  }
  if (TOO_MANY_PARTITIONS.test(text)) {
    return new PermanentError(`clickhouse sink: ${message}`, { cause: err, hint: 'a smaller batch (maxRows) or a coarser PARTITION BY' });
  }
  const kind = classifyError(err);
  if (kind === 'transient') {
    const unreachable = UNREACHABLE.test(text) || UNREACHABLE.test(String((err as { cause?: { code?: unknown } }).cause?.code ?? ''));
    const asked = (err as { retryAfterMs?: unknown }).retryAfterMs;
    // a server restarting refuses connections for seconds: wait at least `attempt` seconds
    const retryAfterMs = unreachable ? Math.min(1000 * attempt, 15_000) : typeof asked === 'number' ? asked : undefined;
    return new TransientError(`clickhouse sink: ${message}`, { cause: err, retryAfterMs });
  }
  if (kind === 'fatal') return err instanceof FatalError ? err : new FatalError(`clickhouse sink: ${message}`, { cause: err });
  return new PermanentError(`clickhouse sink: ${message}`, {
    cause: err,
    hint: 'the row does not fit the table: check its values against the column types',
  });
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
