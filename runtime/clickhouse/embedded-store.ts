/**
 * The embedded ClickHouse store: chDB (ClickHouse 26.x in-process) with its data under
 * a directory, `<stateDir>/clickhouse` by default. `chdb` maps ~600 MB when loaded, so
 * this file imports it dynamically, and only open-store.ts imports this file, also
 * dynamically, and only when no server URL is configured.
 *
 * Inserts: rows are encoded to JSONEachRow in 1 MiB chunks and written to a file in
 * the store's directory; every 64 MiB (and at the end) the file is loaded with
 * `INSERT INTO t FROM INFILE … FORMAT JSONEachRow`, so memory stays bounded whatever
 * the number of rows. Measured on 1M rows × 6 columns (120 MB of JSON) against chDB's
 * own insert APIs, this was the fastest (INFILE parses the file with the parallel
 * parser; chDB's streaming and raw Buffer inserts go through a slower path), at the
 * same peak memory.
 *
 * chDB takes a lock on `<dir>/status`: a second process on the same directory fails.
 * The store checks the lock before it opens the directory (chDB would print the
 * engine's exception to stderr itself) and throws a one-line FatalError naming the
 * directory and the way out.
 *
 * @example
 * ```ts
 * const store = await openEmbeddedStore({ dir: '.sluice/clickhouse' });
 * await store.command('CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id');
 * await store.insert('t', [{ id: 1n }]);
 * await store.query('SELECT count() AS n FROM t'); // [{ n: '1' }]
 * ```
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Session as ChdbSession } from 'chdb';
import { FatalError, PermanentError, SluiceError, TransientError, type ErrorKind } from '../errors.ts';
import { featuresFor, parseVersion } from './version.ts';
import {
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

export interface EmbeddedStoreOptions {
  /** the data directory (created if missing); sluice uses `<stateDir>/clickhouse` */
  dir: string;
  /** the database tables live in (created if missing); default `sluice` */
  database?: string;
  /** an INSERT loads at most this many bytes of JSON at a time (default 64 MiB) */
  insertFileBytes?: number;
}

/** The fix named by the lock error, also used by the CLI. */
export const LOCK_HINT = 'stop the other sluice process, or use a ClickHouse server via SLUICE_CLICKHOUSE_URL';

/** Open (and create if needed) the embedded store; throws a FatalError when another process holds the directory. */
export async function openEmbeddedStore(options: EmbeddedStoreOptions): Promise<EmbeddedStore> {
  const dir = path.resolve(options.dir);
  const database = options.database ?? 'sluice';
  await fsp.mkdir(dir, { recursive: true });
  const holder = lockHolder(dir);
  if (holder !== undefined) throw lockError(dir, holder);
  let chdb: typeof import('chdb');
  try {
    chdb = await import('chdb');
  } catch (err) {
    throw new FatalError(`cannot load chDB for the embedded ClickHouse store: ${(err as Error).message}`, {
      hint: 'install the chdb package, or use a ClickHouse server via SLUICE_CLICKHOUSE_URL',
      cause: err,
    });
  }
  let session: ChdbSession;
  try {
    session = new chdb.Session(dir, {
      // the JSON the server store asks for too: 64-bit integers quoted, nan/inf as text, "/" as is
      connectionArgs: [
        '--output_format_json_quote_64bit_integers=1',
        '--output_format_json_quote_denormals=1',
        '--output_format_json_escape_forward_slashes=0',
        '--async_load_databases=0',
      ],
    });
  } catch (err) {
    const again = lockHolder(dir);
    if (again !== undefined) throw lockError(dir, again);
    throw new FatalError(
      `cannot open the embedded ClickHouse at ${dir}: ${oneLine(err)} (one process can have only one embedded store directory open)`,
      { cause: err },
    );
  }
  const store = new EmbeddedStore(session, dir, database, options.insertFileBytes ?? 64 << 20);
  try {
    await store.command(`CREATE DATABASE IF NOT EXISTS ${quoteIdentifier(database)}`);
    await store.command(`USE ${quoteIdentifier(database)}`); // unqualified names mean the store's database, as on a server
    await fsp.rm(store.tmpDir, { recursive: true, force: true });
    await fsp.mkdir(store.tmpDir, { recursive: true });
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

export class EmbeddedStore implements ClickHouseStore {
  readonly kind = 'embedded' as const;
  readonly description: string;
  /** where inserts spool their JSON; emptied when the store opens */
  readonly tmpDir: string;
  private versionPromise?: Promise<ServerVersion>;
  /** chDB runs one statement at a time per connection; this keeps SET … around a statement atomic */
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly session: ChdbSession,
    readonly dir: string,
    readonly database: string,
    private readonly insertFileBytes: number,
  ) {
    this.description = `embedded ClickHouse at ${dir}`;
    this.tmpDir = path.join(dir, 'sluice-inserts');
  }

  version(): Promise<ServerVersion> {
    this.versionPromise ??= this.query<{ v: string }>('SELECT version() AS v').then((rows) => parseVersion(rows[0]!.v));
    return this.versionPromise;
  }

  async features(): Promise<StoreFeatures> {
    return featuresFor(await this.version());
  }

  command(sql: string, settings?: Record<string, string | number>): Promise<void> {
    return this.exclusive(async () => {
      const names = Object.keys(settings ?? {});
      if (!names.length) {
        await this.run(sql, 'TSV', describeStatement(sql));
        return;
      }
      // chDB takes no per-query settings: SET them for this statement, then put back what was there
      const before = await this.run(
        `SELECT name, value, changed FROM system.settings WHERE name IN (${names.map(quoteString).join(', ')})`,
        'JSONEachRow',
        'read settings',
      );
      const previous = parseJsonEachRow<{ name: string; value: string; changed: number | string }>(before);
      try {
        for (const [name, value] of Object.entries(settings!)) {
          await this.run(`SET ${quoteIdentifier(name)} = ${typeof value === 'number' ? value : quoteString(value)}`, 'TSV', `SET ${name}`);
        }
        await this.run(sql, 'TSV', describeStatement(sql));
      } finally {
        for (const { name, value, changed } of previous) {
          const restore = Number(changed) ? quoteString(value) : 'DEFAULT';
          await this.run(`SET ${quoteIdentifier(name)} = ${restore}`, 'TSV', `SET ${name}`).catch(() => undefined);
        }
      }
    });
  }

  async query<T = Record<string, unknown>>(sql: string): Promise<T[]> {
    const text = await this.exclusive(() => this.run(sql, 'JSONEachRow', describeStatement(sql)));
    return parseJsonEachRow<T>(text);
  }

  queryText(sql: string, format: string): Promise<string> {
    return this.exclusive(() => this.run(sql, format, describeStatement(sql)));
  }

  async insert(table: string, rows: InsertRows, options: InsertOptions = {}): Promise<void> {
    const { database, table: name } = splitTableName(table, this.database);
    const chunks = jsonEachRowChunks(rows, {
      columns: options.columns,
      signal: options.signal,
      columnTypes: () => this.columnTypes(database, name),
    });
    await this.load(database, name, 'JSONEachRow', chunks, options);
  }

  async insertEncoded(table: string, rows: EncodedRows, options: InsertOptions = {}): Promise<void> {
    const { database, table: name } = splitTableName(table, this.database);
    await this.load(database, name, rows.format, rows.chunks, options);
  }

  /** Spool `chunks` to a file and load it with INSERT … FROM INFILE, every `insertFileBytes` and at the end. */
  private async load(
    database: string,
    name: string,
    format: EncodedRows['format'],
    chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
    options: InsertOptions,
  ): Promise<void> {
    const target = `${quoteIdentifier(database)}.${quoteIdentifier(name)}`;
    const what = `insert into ${database}.${name}`;
    const columns = options.columns?.length ? ` (${options.columns.map(quoteIdentifier).join(', ')})` : '';
    const file = path.join(this.tmpDir, `${randomUUID()}.${format === 'JSONEachRow' ? 'ndjson' : 'tsv'}`);
    let part = 0;
    const load = () => {
      const settings: Record<string, string | number> = { input_format_skip_unknown_fields: 0, ...options.settings };
      // a big insert is loaded as several INSERTs: each needs its own deduplication token, or
      // ClickHouse would take the second for a repeat of the first (the same rows split the
      // same way get the same tokens, so a retry still deduplicates)
      const token = settings.insert_deduplication_token;
      if (token !== undefined && part > 0) settings.insert_deduplication_token = `${token}:${part}`;
      part++;
      const settingsSql = Object.entries(settings)
        .map(([k, v]) => `${quoteIdentifier(k)} = ${typeof v === 'number' ? v : quoteString(v)}`)
        .join(', ');
      return this.exclusive(() =>
        this.run(`INSERT INTO ${target}${columns} FROM INFILE ${quoteString(file)} SETTINGS ${settingsSql} FORMAT ${format}`, 'TSV', what),
      );
    };
    let out: fsp.FileHandle | undefined;
    let written = 0;
    const finish = async () => {
      if (!out) return;
      const handle = out;
      out = undefined;
      await handle.close();
      if (written > 0) await load();
      written = 0;
    };
    try {
      const write = async (chunk: Buffer) => {
        if (!out) {
          await fsp.mkdir(this.tmpDir, { recursive: true });
          out = await fsp.open(file, 'w');
        }
        for (let offset = 0; offset < chunk.length; ) offset += (await out.write(chunk, offset)).bytesWritten;
        written += chunk.length;
        if (written >= this.insertFileBytes) await finish();
      };
      if (Symbol.asyncIterator in chunks) for await (const chunk of chunks) await write(chunk);
      else for (const chunk of chunks) await write(chunk);
      await finish();
    } catch (err) {
      await out?.close().catch(() => undefined);
      if (err instanceof RowEncodingError) throw new PermanentError(`${this.description}: ${what}: ${err.message}`, { cause: err });
      throw err;
    } finally {
      await fsp.rm(file, { force: true });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.catch(() => undefined);
    this.session.close();
    await fsp.rm(this.tmpDir, { recursive: true, force: true }).catch(() => undefined);
  }

  private async columnTypes(database: string, table: string): Promise<ColumnTypes> {
    const rows = await this.query<{ name: string; type: string }>(
      `SELECT name, type FROM system.columns WHERE database = ${quoteString(database)} AND table = ${quoteString(table)}`,
    );
    return new Map(rows.map((r) => [r.name, r.type]));
  }

  /** run `fn` after everything queued before it */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.queue.then(fn, fn);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async run(sql: string, format: string, what: string): Promise<string> {
    if (this.closed) throw new FatalError(`${this.description} is closed (${what})`);
    try {
      const result = await this.session.queryAsync(sql, { format });
      return result.text();
    } catch (err) {
      throw this.classify(err, what);
    }
  }

  private classify(err: unknown, what: string): SluiceError {
    const text = err instanceof Error ? err.message : String(err);
    const parsed = parseClickHouseException(text);
    const code = parsed.code ?? (err as { clickhouseCode?: number }).clickhouseCode;
    const message = `${this.description}: ${what}: ${cleanEmbeddedMessage(parsed.message)}`;
    const kind: ErrorKind = code === undefined && (err as { code?: string }).code === 'CHDB_CLOSED' ? 'fatal' : clickHouseErrorKind(code, parsed.message);
    const options = { cause: err };
    if (kind === 'fatal') return new FatalError(message, options);
    if (kind === 'transient') return new TransientError(message, options);
    return new PermanentError(message, options);
  }
}

/** The pid of another live process holding `<dir>/status`, if any. */
function lockHolder(dir: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, 'status'), 'utf8');
  } catch {
    return undefined; // no status file: nobody has the directory open
  }
  const pid = Number(/PID:\s*(\d+)/.exec(text)?.[1]);
  if (!pid || pid === process.pid) return undefined; // same process: chDB shares the connection
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined; // a stale file left by a crash
  }
  // the pid lives, but may have been reused since a crash: ask flock(1) when there is one
  const probe = spawnSync('flock', ['--nonblock', '--conflict-exit-code', '75', path.join(dir, 'status'), 'true'], { stdio: 'ignore' });
  if (probe.error === undefined && probe.status === 0) return undefined;
  return pid;
}

function lockError(dir: string, pid: number): FatalError {
  return new FatalError(`embedded ClickHouse at ${dir} is in use by another process (pid ${pid}): ${LOCK_HINT}`);
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
}

/** Drop what only makes sense inside chDB: the spool file's path and the executor's chain. */
function cleanEmbeddedMessage(message: string): string {
  return message
    .replace(/:?\s*\(in file\/uri [^)]*\)/g, '')
    .replace(/:?\s*While executing [^.(]*(?:\.\s*)?/g, ' ')
    .replace(/:?\s*data for INSERT was parsed from file\.?/g, '')
    .replace(/\s*\(version [^)]*\)\.?/g, '')
    .replace(/\s+/g, ' ')
    .replace(/\s+\(/g, ' (')
    .trim();
}
