/**
 * The ClickHouse store: one interface, two backends — embedded chDB under
 * `.sluice/clickhouse/` (the default, loaded only when used) and a server over HTTP(S)
 * via @clickhouse/client (when `SLUICE_CLICKHOUSE_URL` or `--clickhouse-url` is set).
 * The sink, the `seen` operator, run records and `npm run query` all go through it, so
 * the same SQL runs either way.
 */

import { PermanentError, type ErrorKind } from '../errors.ts';

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
  /** `IF NOT EXISTS` on `ALTER TABLE … ADD COLUMN` */
  addColumnIfNotExists: boolean;
  /** the `Bool` type (else declared `Bool` columns are created as `UInt8`) */
  bool: boolean;
  /** the `Map(K, V)` type (no fallback: a table with a Map column cannot be created without it) */
  map: boolean;
  /** `Int128`, `UInt128`, `Int256`, `UInt256` */
  wideIntegers: boolean;
  /** `TTL` on MergeTree tables (else the TTL is left out, and migrate's report says so) */
  ttl: boolean;
}

export type InsertRows = AsyncIterable<Record<string, unknown>> | Iterable<Record<string, unknown>>;

export interface InsertOptions {
  /** ClickHouse settings for this INSERT (e.g. insert_deduplication_token) */
  settings?: Record<string, string | number>;
  /** column list for the INSERT (keys of a row outside it are left out); default: the keys present in the rows */
  columns?: readonly string[];
  signal?: AbortSignal;
}

/** Rows already encoded by the caller (see tab-separated.ts), in chunks that end at row boundaries. */
export interface EncodedRows {
  format: 'TabSeparated' | 'JSONEachRow';
  chunks: readonly Buffer[];
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
  /**
   * rows the caller encoded, with `options.columns` as the INSERT's column list (the
   * order of the values in each row); the same errors as `insert`. Optional: a store
   * without it (a read-only one, a test double) gets `insert`.
   */
  insertEncoded?(table: string, rows: EncodedRows, options?: InsertOptions): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------
// What both backends share: identifiers, the JSONEachRow encoding of rows, and how a
// ClickHouse exception is read and classified.
// ---------------------------------------------------------------------------------


/** `name` as a ClickHouse identifier: backquoted, so any name works (ClickHouse 18.16 included). */
export function quoteIdentifier(name: string): string {
  return '`' + name.replace(/\\/g, '\\\\').replace(/`/g, '\\`') + '`';
}

/** `'text'` as a ClickHouse string literal. */
export function quoteString(text: string): string {
  return "'" + text.replace(/\\/g, '\\\\').replace(/'/g, "\\'") + "'";
}

/** A table name as given to `insert` ("t", "db.t" or already quoted) split into database and table. */
export function splitTableName(name: string, defaultDatabase: string): { database: string; table: string } {
  const quoted = /^`((?:[^`\\]|\\.|``)*)`\.`((?:[^`\\]|\\.|``)*)`$/.exec(name);
  if (quoted) return { database: unescapeIdentifier(quoted[1]!), table: unescapeIdentifier(quoted[2]!) };
  const single = /^`((?:[^`\\]|\\.|``)*)`$/.exec(name);
  if (single) return { database: defaultDatabase, table: unescapeIdentifier(single[1]!) };
  const dot = name.indexOf('.');
  if (dot > 0) return { database: name.slice(0, dot), table: name.slice(dot + 1) };
  return { database: defaultDatabase, table: name };
}

function unescapeIdentifier(text: string): string {
  return text.replace(/\\(.)|``/g, (m, escaped?: string) => escaped ?? '`');
}

/** A row that cannot be written as JSONEachRow (an invalid Date, a function…): permanent for its batch. */
export class RowEncodingError extends PermanentError {
  override name = 'RowEncodingError';
}

/** Column name → ClickHouse type as the server reports it (`system.columns`). */
export type ColumnTypes = ReadonlyMap<string, string>;

/** Thrown inside the encoder when a `Date` needs the column's type and none was given. */
const NEEDS_TYPES = Symbol('needs column types');

/**
 * One row as a JSONEachRow line (without the newline). What JSON.stringify cannot do
 * or does wrong for ClickHouse:
 *  - `bigint` is written as a bare number (UInt64 values above 2^53 stay exact);
 *  - `Date` follows the column type: `Date`/`Date32` → "YYYY-MM-DD" (UTC),
 *    `DateTime` → Unix seconds, `DateTime64(p)` → "seconds.fraction" (both are
 *    instants, so the server's time zone does not matter), other columns → ISO text;
 *  - `NaN`, `Infinity` → "nan", "inf" (ClickHouse reads them into Float columns);
 *  - `undefined` keys are left out, so the column takes its default;
 *  - a JS `Map` is written as an object (for `Map(String, T)` columns).
 */
function encodeRow(row: Record<string, unknown>, types: ColumnTypes | null, columns: readonly string[] | undefined): string {
  let out = '{';
  let first = true;
  const keys = columns ?? Object.keys(row);
  for (const key of keys) {
    const value = row[key];
    if (value === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += encodeKey(key) + ':' + encodeValue(value, types === null ? null : types.get(key), types === null, key);
  }
  return out + '}';
}

const keyCache = new Map<string, string>();
function encodeKey(key: string): string {
  let encoded = keyCache.get(key);
  if (encoded === undefined) {
    encoded = JSON.stringify(key);
    if (keyCache.size < 10_000) keyCache.set(key, encoded);
  }
  return encoded;
}

/** `type` is the column's ClickHouse type (or the element type inside arrays); null when types were not looked up. */
function encodeValue(value: unknown, type: string | null | undefined, typesUnknown: boolean, column: string): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (Number.isFinite(value)) return String(value);
      return Number.isNaN(value) ? '"nan"' : value > 0 ? '"inf"' : '"-inf"';
    case 'bigint':
      return value.toString();
    case 'boolean':
      return value ? 'true' : 'false';
    case 'undefined':
      return 'null';
    case 'object':
      break;
    default:
      throw new RowEncodingError(`column "${column}": cannot write a ${typeof value} to ClickHouse`);
  }
  if (value === null) return 'null';
  if (value instanceof Date) {
    if (typesUnknown) throw NEEDS_TYPES;
    return encodeDate(value, unwrapType(type ?? ''), column);
  }
  if (Array.isArray(value)) {
    const inner = type ? innerType(unwrapType(type), 'Array') : typesUnknown ? null : undefined;
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i) out += ',';
      out += encodeValue(value[i], inner, typesUnknown, column);
    }
    return out + ']';
  }
  if (ArrayBuffer.isView(value)) return JSON.stringify(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1'));
  const entries: Iterable<[unknown, unknown]> = value instanceof Map ? value.entries() : Object.entries(value);
  const valueType = type ? mapValueType(unwrapType(type)) : typesUnknown ? null : undefined;
  let out = '{';
  let first = true;
  for (const [k, v] of entries) {
    if (v === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += JSON.stringify(String(k)) + ':' + encodeValue(v, valueType, typesUnknown, column);
  }
  return out + '}';
}

function encodeDate(date: Date, type: string, column: string): string {
  const ms = date.getTime();
  if (Number.isNaN(ms)) throw new RowEncodingError(`column "${column}": invalid Date`);
  if (type === 'Date' || type === 'Date32') return '"' + date.toISOString().slice(0, 10) + '"';
  const seconds = Math.floor(ms / 1000);
  const dt64 = /^DateTime64\(\s*(\d+)/.exec(type);
  if (dt64) {
    const precision = Number(dt64[1]);
    if (precision === 0) return '"' + seconds + '"';
    const fraction = String(ms - seconds * 1000).padStart(3, '0').padEnd(precision, '0').slice(0, precision);
    return '"' + seconds + '.' + fraction + '"';
  }
  if (type.startsWith('DateTime')) return String(seconds);
  return '"' + date.toISOString() + '"';
}

/** `Nullable(T)` and `LowCardinality(T)` → T (repeatedly). */
function unwrapType(type: string): string {
  let t = type.trim();
  for (;;) {
    const inner = innerType(t, 'Nullable') ?? innerType(t, 'LowCardinality');
    if (inner === undefined) return t;
    t = inner;
  }
}

function innerType(type: string, wrapper: string): string | undefined {
  if (!type.startsWith(wrapper + '(') || !type.endsWith(')')) return undefined;
  return type.slice(wrapper.length + 1, -1).trim();
}

/** `Map(K, V)` → V */
function mapValueType(type: string): string | undefined {
  const inner = innerType(type, 'Map');
  if (inner === undefined) return undefined;
  let depth = 0;
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) return inner.slice(i + 1).trim();
  }
  return undefined;
}

export interface JsonEachRowOptions {
  /** only these keys of each row, in this order */
  columns?: readonly string[];
  /** looked up once, the first time a `Date` is met (its encoding depends on the column type) */
  columnTypes?: () => Promise<ColumnTypes>;
  /** size of the chunks yielded (default 1 MiB) */
  chunkBytes?: number;
  signal?: AbortSignal;
  /** called with the number of rows encoded so far, after each chunk */
  onRows?: (rows: number) => void;
}

/**
 * Rows as JSONEachRow bytes, in chunks of about `chunkBytes`, each ending at a row
 * boundary. Pulls rows only as fast as the consumer takes chunks, so memory stays at
 * one chunk whatever the number of rows.
 */
export async function* jsonEachRowChunks(rows: InsertRows, options: JsonEachRowOptions = {}): AsyncGenerator<Buffer> {
  const chunkBytes = Math.max(1024, options.chunkBytes ?? 1 << 20);
  let types: ColumnTypes | null = null;
  let buf = Buffer.allocUnsafe(chunkBytes + (chunkBytes >> 2));
  let used = 0;
  let count = 0;
  /** the row's line, or undefined when it holds a Date and the column types are not known yet */
  const encode = (row: Record<string, unknown>): string | undefined => {
    try {
      return encodeRow(row, types, options.columns);
    } catch (err) {
      if (err !== NEEDS_TYPES) throw err;
      return undefined;
    }
  };
  const loadTypes = async () => {
    types = options.columnTypes ? await options.columnTypes() : new Map();
  };
  /** append one line; true when the chunk is full */
  const append = (line: string): boolean => {
    // a UTF-16 code unit is at most 3 UTF-8 bytes; grow only for a line longer than a chunk
    const worst = line.length * 3 + 1;
    if (used + worst > buf.length && used + Buffer.byteLength(line) + 1 > buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, used + worst));
      buf.copy(bigger, 0, 0, used);
      buf = bigger;
    }
    used += buf.write(line, used);
    buf[used++] = 10;
    count++;
    return used >= chunkBytes;
  };
  const take = (): Buffer => {
    options.signal?.throwIfAborted();
    const chunk = buf.subarray(0, used);
    buf = Buffer.allocUnsafe(chunkBytes + (chunkBytes >> 2));
    used = 0;
    options.onRows?.(count);
    return chunk;
  };
  if (Symbol.iterator in rows) {
    // a sync iterable (the runner hands sinks arrays): no promise per row
    for (const row of rows) {
      let line = encode(row);
      if (line === undefined) {
        await loadTypes();
        line = encodeRow(row, types, options.columns);
      }
      if (append(line)) yield take();
    }
  } else {
    for await (const row of rows) {
      let line = encode(row);
      if (line === undefined) {
        await loadTypes();
        line = encodeRow(row, types, options.columns);
      }
      if (append(line)) yield take();
    }
  }
  if (used > 0) yield take();
}

/** A statement for error messages: `query "SELECT …"`, on one line, shortened. */
export function describeStatement(sql: string): string {
  const flat = sql.replace(/\s+/g, ' ').trim();
  return `query "${flat.length > 120 ? flat.slice(0, 117) + '…' : flat}"`;
}

/** JSONEachRow text → rows. */
export function parseJsonEachRow<T>(text: string): T[] {
  const rows: T[] = [];
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    if (end > start) rows.push(JSON.parse(text.slice(start, end)) as T);
    start = end + 1;
  }
  return rows;
}

/** A ClickHouse exception, as read from an HTTP error body or a chDB error message. */
export interface ClickHouseException {
  /** the numeric code (`Code: 60`), when the text has one */
  code?: number;
  /** the symbolic name (UNKNOWN_TABLE) when the server gives it (not 18.x) */
  type?: string;
  /** the server's message on one line, without the `Code: N. DB::Exception:` framing */
  message: string;
}

/**
 * Read a ClickHouse exception from text. Understands the modern form
 * (`Code: 60. DB::Exception: Table x does not exist. (UNKNOWN_TABLE) (version 24.3…)`),
 * the 18.x form (`Code: 60, e.displayText() = DB::Exception: Table x doesn't exist., e.what() = DB::Exception`),
 * chDB's `Query failed: Code: …` prefix, and an exception appended to a result body
 * that had already started (the last `Code:` in the text wins).
 */
export function parseClickHouseException(text: string): ClickHouseException {
  const re = /(?:^|\n|: )Code: (\d+)[.,] /g;
  let start = -1;
  let code: number | undefined;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (start === -1 || m.index > start) {
      start = m.index;
      code = Number(m[1]);
    }
  }
  let message = start === -1 ? text : text.slice(start).replace(/^(?:\n|: )?Code: \d+[.,] /, '');
  message = message
    .replace(/^e\.displayText\(\) = /, '')
    .replace(/^(?:DB::)?Exception: /, '')
    .replace(/,\s*e\.what\(\) = [\w:]+\s*$/, '')
    .replace(/\s*\(version [^()]*(?:\([^()]*\)[^()]*)*\)\.?/g, '')
    .replace(/\s+/g, ' ')
    .replace(/(\([A-Z][A-Z0-9_]{2,}\))(?:\.?\s*\1)+/g, '$1')
    .trim();
  const type = /\(([A-Z][A-Z0-9_]{2,})\)$/.exec(message)?.[1];
  return { code, type, message };
}

/** Codes after which the same request may succeed later. */
const TRANSIENT_CODES = new Set([
  23, // CANNOT_READ_FROM_ISTREAM
  24, // CANNOT_WRITE_TO_OSTREAM
  159, // TIMEOUT_EXCEEDED
  160, // TOO_SLOW
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  203, // NO_FREE_CONNECTION
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  225, // NO_ZOOKEEPER
  236, // ABORTED
  242, // TABLE_IS_READ_ONLY (a replica lost ZooKeeper)
  252, // TOO_MANY_PARTS
  285, // TOO_FEW_LIVE_REPLICAS
  286, // UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
  319, // UNKNOWN_STATUS_OF_INSERT
  394, // QUERY_WAS_CANCELLED
  425, // SYSTEM_ERROR
  439, // CANNOT_SCHEDULE_TASK
  473, // DEADLOCK_AVOIDED
  999, // KEEPER_EXCEPTION
  1000, // POCO_EXCEPTION (network errors inside the server)
]);

/** Codes that mean the configuration is wrong: nothing in this run can succeed. */
export const AUTH_CODES = new Set([
  192, // UNKNOWN_USER
  193, // WRONG_PASSWORD
  194, // REQUIRED_PASSWORD
  195, // IP_ADDRESS_NOT_ALLOWED
  516, // AUTHENTICATION_FAILED
]);
const FATAL_CODES = new Set([
  ...AUTH_CODES,
  164, // READONLY (the user may not write)
  291, // DATABASE_ACCESS_DENIED
  497, // ACCESS_DENIED (not enough privileges)
]);

/**
 * The kind of a ClickHouse exception: transient for overload and network trouble
 * (TOO_MANY_PARTS, TIMEOUT_EXCEEDED, a total memory limit…), fatal for
 * authentication and privileges, permanent for everything about the statement or
 * the data (syntax, unknown column or table, type and parse errors, a per-query
 * memory limit — a smaller batch may pass, which is what the runner tries).
 */
export function clickHouseErrorKind(code: number | undefined, message = ''): ErrorKind {
  if (code === undefined) return 'permanent';
  if (FATAL_CODES.has(code)) return 'fatal';
  if (TRANSIENT_CODES.has(code)) return 'transient';
  if (code === 241) return /\(for query\)/.test(message) ? 'permanent' : 'transient'; // MEMORY_LIMIT_EXCEEDED
  return 'permanent';
}
