/**
 * The ClickHouse server store: HTTP(S) through @clickhouse/client, with gzip request
 * and response bodies and a request timeout.
 *
 * Every statement goes through `client.exec` with `ignore_error_response`, so this
 * file reads the HTTP status and the server's error text itself. The client's own
 * error parsing only knows the modern `Code: N. DB::Exception: … (NAME)` form and drops
 * the status; ClickHouse 18.x answers `Code: N, e.displayText() = DB::Exception: …`,
 * and a proxy in front of a server answers 502/503 with HTML. Checked against a real
 * 18.16.1: HTTP Basic auth, gzip both ways, `default_format`, JSONEachRow in and out and
 * `enable_http_compression` all work; what 18.16 lacks is in version.ts.
 *
 * Insert bodies are streams of JSONEachRow chunks encoded as the rows are pulled, never
 * one string. `input_format_skip_unknown_fields=0` is sent with every insert, so a
 * field the table lacks is an error rather than silently dropped (newer servers skip
 * unknown fields by default).
 *
 * Errors: transient for connection trouble (refused, reset, timeout), HTTP 5xx/429
 * without a ClickHouse code, and overload codes (TOO_MANY_PARTS …, see store.ts);
 * fatal for authentication (naming SLUICE_CLICKHOUSE_USER / SLUICE_CLICKHOUSE_PASSWORD)
 * and privileges; permanent for the rest. Every message names the server URL (without
 * the password) and the statement or table.
 *
 * @example
 * ```ts
 * const store = await openServerStore({ url: 'http://127.0.0.1:8123', database: 'sluice' });
 * await store.insert('events', rows);
 * ```
 */
import { Readable } from 'node:stream';
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { FatalError, PermanentError, SluiceError, TransientError, type ErrorKind } from '../errors.ts';
import { featuresFor, parseVersion } from './version.ts';
import {
  AUTH_CODES,
  clickHouseErrorKind,
  describeStatement,
  jsonEachRowChunks,
  parseClickHouseException,
  parseJsonEachRow,
  quoteIdentifier,
  quoteString,
  RowEncodingError,
  splitTableName,
  type ClickHouseStore,
  type ColumnTypes,
  type EncodedRows,
  type InsertOptions,
  type InsertRows,
  type ServerVersion,
  type StoreFeatures,
} from './store.ts';

export interface ServerStoreOptions {
  /** http(s)://host:port; credentials in the URL are used when `user`/`password` are not given */
  url: string;
  user?: string;
  password?: string;
  /** default `sluice`; created if missing */
  database?: string;
  /** a request with no answer for this long fails (transient); default 30 000 ms */
  requestTimeoutMs?: number;
  /** gzip request and response bodies; default: on, except for loopback servers */
  compression?: boolean;
}

/** Connect, check the credentials, and create the database if missing. */
export async function openServerStore(options: ServerStoreOptions): Promise<ServerStore> {
  const store = new ServerStore(options);
  try {
    // the client sends `database=` with every request, which fails while the database does
    // not exist: create it from a client without one
    const bootstrap = new ServerStore({ ...options, database: '' });
    try {
      await bootstrap.command(`CREATE DATABASE IF NOT EXISTS ${quoteIdentifier(store.database)}`);
    } finally {
      await bootstrap.close();
    }
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/** Settings sent with every query, so both backends answer the same way. */
const QUERY_SETTINGS = {
  output_format_json_quote_64bit_integers: 1,
  output_format_json_quote_denormals: 1,
  output_format_json_escape_forward_slashes: 0,
} as const;

export class ServerStore implements ClickHouseStore {
  readonly kind = 'server' as const;
  readonly description: string;
  readonly database: string;
  /** the URL without credentials, for messages */
  readonly url: string;
  readonly user: string;
  private readonly client: ClickHouseClient;
  private readonly timeoutMs: number;
  private versionPromise?: Promise<ServerVersion>;

  constructor(options: ServerStoreOptions) {
    const parsed = new URL(options.url);
    this.user = options.user ?? (decodeURIComponent(parsed.username) || 'default');
    const password = options.password ?? decodeURIComponent(parsed.password);
    parsed.username = '';
    parsed.password = '';
    this.url = parsed.toString().replace(/\/$/, '');
    this.database = options.database ?? 'sluice';
    this.description = `ClickHouse server ${this.url}`;
    this.timeoutMs = options.requestTimeoutMs ?? 30_000;
    // gzip pays across a network; on loopback it only costs CPU (measured: 40% of an
    // insert's time) and memory, so it is off there unless asked for
    const loopback = /^(127\.|localhost$|\[?::1\]?$)/.test(parsed.hostname);
    const compression = options.compression ?? !loopback;
    this.client = createClient({
      url: this.url,
      username: this.user,
      password,
      ...(this.database ? { database: this.database } : {}),
      request_timeout: this.timeoutMs,
      compression: { request: compression, response: compression },
      application: 'sluice',
      log: { level: ClickHouseLogLevel.OFF },
    });
  }

  version(): Promise<ServerVersion> {
    this.versionPromise ??= this.query<{ v: string }>('SELECT version() AS v').then((rows) => parseVersion(rows[0]!.v));
    return this.versionPromise;
  }

  async features(): Promise<StoreFeatures> {
    return featuresFor(await this.version());
  }

  async command(sql: string, settings?: Record<string, string | number>): Promise<void> {
    await this.exec(sql, { settings, what: describeStatement(sql) });
  }

  async query<T = Record<string, unknown>>(sql: string): Promise<T[]> {
    const text = await this.exec(sql, { settings: { ...QUERY_SETTINGS, default_format: 'JSONEachRow' }, what: describeStatement(sql) });
    return parseJsonEachRow<T>(text);
  }

  queryText(sql: string, format: string): Promise<string> {
    return this.exec(sql, { settings: { ...QUERY_SETTINGS, default_format: format }, what: describeStatement(sql) });
  }

  async insert(table: string, rows: InsertRows, options: InsertOptions = {}): Promise<void> {
    const { database, table: name } = splitTableName(table, this.database);
    const chunks = jsonEachRowChunks(rows, {
      columns: options.columns,
      signal: options.signal,
      columnTypes: () => this.columnTypes(database, name),
    });
    await this.send(database, name, 'JSONEachRow', chunks, options);
  }

  async insertEncoded(table: string, rows: EncodedRows, options: InsertOptions = {}): Promise<void> {
    const { database, table: name } = splitTableName(table, this.database);
    await this.send(database, name, rows.format, rows.chunks, options);
  }

  /** One INSERT whose body is `chunks`, streamed as they come (an encoder pulled by the request). */
  private async send(
    database: string,
    name: string,
    format: EncodedRows['format'],
    chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
    options: InsertOptions,
  ): Promise<void> {
    const what = `insert into ${database}.${name}`;
    const columns = options.columns?.length ? ` (${options.columns.map(quoteIdentifier).join(', ')})` : '';
    const iterator = Symbol.asyncIterator in chunks ? chunks[Symbol.asyncIterator]() : chunks[Symbol.iterator]();
    // an empty insert sends nothing; otherwise the body starts with the chunk already read
    const first = await Promise.resolve(iterator.next()).catch((err: unknown) => Promise.reject(this.rowError(err, what)));
    if (first.done) return;
    let sourceError: unknown;
    const body = Readable.from(
      (async function* () {
        try {
          yield first.value;
          for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
        } catch (err) {
          sourceError = err;
          throw err;
        }
      })(),
      { objectMode: false },
    );
    try {
      await this.exec(`INSERT INTO ${quoteIdentifier(database)}.${quoteIdentifier(name)}${columns} FORMAT ${format}`, {
        settings: { input_format_skip_unknown_fields: 0, ...options.settings },
        values: body,
        signal: options.signal,
        what,
      });
    } catch (err) {
      // the rows' own failure (a source error, a value that cannot be written) is not the server's
      if (sourceError !== undefined) throw this.rowError(sourceError, what);
      throw err;
    } finally {
      body.destroy();
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** a row we could not encode names the server and table; the caller's own errors pass as they are */
  private rowError(err: unknown, what: string): unknown {
    return err instanceof RowEncodingError ? new PermanentError(`${this.description}: ${what}: ${err.message}`, { cause: err }) : err;
  }

  private async columnTypes(database: string, table: string): Promise<ColumnTypes> {
    const rows = await this.query<{ name: string; type: string }>(
      `SELECT name, type FROM system.columns WHERE database = ${quoteString(database)} AND table = ${quoteString(table)}`,
    );
    return new Map(rows.map((r) => [r.name, r.type]));
  }

  /** Run one statement; the response body as text, or a classified error. */
  private async exec(
    sql: string,
    options: { settings?: Record<string, string | number>; values?: Readable; signal?: AbortSignal; what: string },
  ): Promise<string> {
    let status: number | undefined;
    let text: string;
    try {
      const result = await this.client.exec({
        query: sql,
        clickhouse_settings: options.settings as Record<string, string>,
        ignore_error_response: true,
        abort_signal: options.signal,
        ...(options.values ? { values: options.values } : {}),
      });
      status = result.http_status_code;
      text = await readText(result.stream);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw this.networkError(err, options.what);
    }
    if (status !== undefined && status !== 200) throw this.serverError(status, text, options.what);
    const trailing = trailingException(text);
    if (trailing) throw this.serverError(500, trailing, options.what);
    return text;
  }

  private serverError(status: number, body: string, what: string): SluiceError {
    const parsed = parseClickHouseException(body);
    let kind: ErrorKind;
    if (parsed.code !== undefined) kind = clickHouseErrorKind(parsed.code, parsed.message);
    else if (status === 401 || status === 403) kind = 'fatal';
    else if (status >= 500 || status === 429 || status === 408) kind = 'transient';
    else kind = 'permanent';
    const detail = parsed.code === undefined ? `HTTP ${status}: ${parsed.message.slice(0, 300)}` : parsed.message;
    const message = `${this.description}: ${what}: ${detail}`;
    if ((parsed.code !== undefined && AUTH_CODES.has(parsed.code)) || (parsed.code === undefined && status === 401)) {
      return new FatalError(`${message} (user "${this.user}")`, { hint: 'check SLUICE_CLICKHOUSE_USER and SLUICE_CLICKHOUSE_PASSWORD' });
    }
    if (kind === 'fatal') return new FatalError(message);
    if (kind === 'transient') return new TransientError(message);
    return new PermanentError(message);
  }

  private networkError(err: unknown, what: string): SluiceError {
    if (err instanceof SluiceError) return err;
    const e = err as { code?: string; message?: string };
    const code = typeof e?.code === 'string' ? e.code : undefined;
    let reason = e?.message ?? String(err);
    if (reason === 'Timeout error.') reason = `no answer within ${this.timeoutMs} ms`;
    else if (code === 'ECONNREFUSED') reason = 'connection refused (is the server running?)';
    const message = `${this.description}: ${what}: ${reason}${code && !reason.includes(code) ? ` (${code})` : ''}`;
    // anything below HTTP (refused, reset, DNS, TLS handshake cut, timeout) may work next time
    if (code?.startsWith('ERR_TLS') || code === 'CERT_HAS_EXPIRED' || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE') {
      return new FatalError(message, { cause: err, hint: 'check the TLS setup of SLUICE_CLICKHOUSE_URL' });
    }
    if (code === 'ERR_INVALID_URL' || code === 'ENOTFOUND') {
      return new FatalError(message, { cause: err, hint: 'check SLUICE_CLICKHOUSE_URL' });
    }
    return new TransientError(message, { cause: err });
  }
}

async function readText(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * An exception the server wrote after the result had started (HTTP status already
 * 200): 18.x appends `Code: N, e.displayText() = …`, newer servers `Code: N. DB::Exception: …`
 * or, for JSON formats, a `{"exception": "…"}` line.
 */
function trailingException(text: string): string | undefined {
  const tail = text.length > 8192 ? text.slice(-8192) : text;
  const lines = tail.replace(/\s+$/, '').split('\n');
  for (let i = lines.length - 1; i >= Math.max(0, lines.length - 4); i--) {
    const line = lines[i]!;
    if (/^Code: \d+[.,] /.test(line) && /Exception/.test(lines.slice(i).join('\n'))) return lines.slice(i).join('\n');
    if (line.startsWith('{"exception":')) {
      try {
        return String((JSON.parse(line) as { exception: unknown }).exception);
      } catch {
        return line;
      }
    }
    if (line.startsWith('__exception__')) return lines.slice(i + 1).join('\n');
  }
  return undefined;
}
