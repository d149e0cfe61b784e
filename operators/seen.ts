import { Observable, type MonoTypeOperatorFunction } from 'rxjs';
import { quoteIdentifier, quoteString, type ClickHouseStore } from '../runtime/clickhouse/store.ts';
import { FatalError, SluiceError, TransientError } from '../runtime/errors.ts';

/** Where `seen` gets the store: the store itself, the run's context (`ctx.store()`), or a getter. */
export type StoreSource = ClickHouseStore | { readonly store: () => Promise<ClickHouseStore> } | (() => Promise<ClickHouseStore>);

/** A key as it is compared: strings, and numbers or bigints for integer key columns. */
export type SeenKey = string | number | bigint;

export interface SeenOptions<T> {
  /** the table the keys were loaded into: its name (`name` or `db.name`) or its definition */
  readonly table: string | { readonly name: string };
  /** the column holding the key */
  readonly keyColumn: string;
  /** the key of a value, of the JS type matching the column (string for String, number or bigint for integers) */
  readonly keyOf: (value: T) => SeenKey;
  /** keys looked up in one query at most; default 1000 */
  readonly batchSize?: number;
  /** how long a key waits for others to share its query; default 50 ms */
  readonly maxWaitMs?: number;
  /** lookup queries running at once at most; default 2 */
  readonly maxConcurrentQueries?: number;
}

/** Literal text of one query's key list at most: old servers refuse queries over max_query_size (256 KiB). */
const MAX_KEY_LIST_CHARS = 200_000;

/**
 * Drops values whose key is already in a ClickHouse table: the package hash loaded
 * yesterday, the file a previous run already indexed. Values keep their order.
 *
 * <span class="informal">{@link dedupeBy} against the store instead of memory: it
 * remembers across runs, and forgets nothing.</span>
 *
 * Keys are looked up in bounded batches, `SELECT DISTINCT key FROM table WHERE key IN
 * (…)`, at most `batchSize` keys (and about 200 KB of SQL) per query and
 * `maxConcurrentQueries` queries at a time. A key waits at most `maxWaitMs` for other
 * keys to share its query; a full batch goes at once. The same key asked for twice
 * while waiting is looked up once.
 *
 * The batcher belongs to the `seen(...)` call, **not** to a subscription: every
 * Observable the returned operator is applied to shares it. That is on purpose. The
 * engine applies a pipeline's `transform` to a short inner stream per item (usually a
 * single value), all with the operator instance made once for the run by
 * `transform(ctx)`; the keys of the items in flight at the same time are collected
 * into one query. So `maxInFlight` bounds how many keys can share a query: with the
 * default 64 items in flight, a query carries up to 64 keys, at most every `maxWaitMs`.
 * An item whose transform emits many values (a listing) fills batches on its own.
 * Values pass asynchronously (after their lookup), so a pipeline using `seen` cannot
 * declare `syncTransform`.
 *
 * What it does not do: remember the keys that pass in this run (two values with the
 * same new key both pass; put {@link dedupeBy} in front for that), or see rows the
 * sinks of this run have not written yet. A key counts as seen when any row with it
 * exists, whatever its other columns (and before `FINAL`: any version of the row).
 *
 * Errors: a failed lookup fails the values waiting on it with the store's classified
 * error (a transient one makes the engine retry the item); a missing table or column
 * is a {@link FatalError}.
 *
 * ## Example
 *
 * Skip packages whose checksum is already loaded
 *
 * ```ts
 * import { seen } from '../operators/seen.ts';
 *
 * transform: (ctx) => pipe(
 *   seen(ctx, { table: packages, keyColumn: 'sha256', keyOf: (pkg) => pkg.sha256 }),
 *   map(toRow),
 * ),
 * ```
 *
 * @see {@link dedupeBy}
 * @param store The store, the run context (`ctx`, whose `store()` is used), or a getter.
 * @param options The table and key column, how to derive a key, and the batch bounds.
 * @return A function that returns an Observable of the source values whose key is not stored yet, in order.
 */
export function seen<T>(store: StoreSource, options: SeenOptions<T>): MonoTypeOperatorFunction<T> {
  const batchSize = options.batchSize ?? 1000;
  const maxWaitMs = options.maxWaitMs ?? 50;
  const maxConcurrent = options.maxConcurrentQueries ?? 2;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new FatalError(`seen: batchSize must be a positive integer, got ${String(batchSize)}`);
  if (!(maxWaitMs >= 0)) throw new FatalError(`seen: maxWaitMs must be a number >= 0, got ${String(maxWaitMs)}`);
  if (!(Number.isInteger(maxConcurrent) && maxConcurrent >= 1)) throw new FatalError(`seen: maxConcurrentQueries must be a positive integer, got ${String(maxConcurrent)}`);
  const lookup = new KeyLookup(storeGetter(store), options.table, options.keyColumn, batchSize, maxWaitMs, maxConcurrent);
  const keyOf = options.keyOf;

  return (source) =>
    new Observable<T>((subscriber) => {
      // values in arrival order; each waits for its key's answer, then leaves from the front
      const queue: { value: T; state: 'waiting' | 'new' | 'seen' }[] = [];
      let sourceDone = false;
      const drain = () => {
        while (queue.length && queue[0]!.state !== 'waiting') {
          const entry = queue.shift()!;
          if (entry.state === 'new') subscriber.next(entry.value);
        }
        if (sourceDone && queue.length === 0) subscriber.complete();
      };
      const subscription = source.subscribe({
        next: (value) => {
          let key: SeenKey;
          try {
            key = keyOf(value);
          } catch (err) {
            subscriber.error(err);
            return;
          }
          const entry: { value: T; state: 'waiting' | 'new' | 'seen' } = { value, state: 'waiting' };
          queue.push(entry);
          lookup.has(key).then(
            (exists) => {
              entry.state = exists ? 'seen' : 'new';
              drain();
            },
            (err: unknown) => subscriber.error(err),
          );
        },
        error: (err) => subscriber.error(err),
        complete: () => {
          sourceDone = true;
          drain();
        },
      });
      return () => subscription.unsubscribe();
    });
}

function storeGetter(source: StoreSource): () => Promise<ClickHouseStore> {
  if (typeof source === 'function') return source;
  if ('insert' in source && typeof source.insert === 'function') {
    const store = source;
    return () => Promise.resolve(store);
  }
  const ctx = source as { readonly store: () => Promise<ClickHouseStore> };
  return () => ctx.store();
}

/** The SQL literal of a key, and the text the store answers with for it. */
function keyLiteral(key: SeenKey): { literal: string; text: string } {
  switch (typeof key) {
    case 'string':
      return { literal: quoteString(key), text: key };
    case 'bigint':
      return { literal: key.toString(), text: key.toString() };
    case 'number':
      if (Number.isFinite(key)) return { literal: String(key), text: String(key) };
      break;
  }
  throw new FatalError(`seen: a key must be a string, a finite number or a bigint, got ${typeof key === 'number' ? String(key) : typeof key}`);
}

interface Waiter {
  resolve: (exists: boolean) => void;
  reject: (err: unknown) => void;
}

/** Collects key lookups from every subscription and answers them with bounded IN queries. */
class KeyLookup {
  /** keys not yet asked, by their answer text (insertion order = arrival order) */
  private pending = new Map<string, { literal: string; waiters: Waiter[] }>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running = 0;
  private target: Promise<{ store: ClickHouseStore; from: string; column: string }> | undefined;

  constructor(
    private readonly getStore: () => Promise<ClickHouseStore>,
    private readonly table: string | { readonly name: string },
    private readonly keyColumn: string,
    private readonly batchSize: number,
    private readonly maxWaitMs: number,
    private readonly maxConcurrent: number,
  ) {}

  has(key: SeenKey): Promise<boolean> {
    let text: string, literal: string;
    try {
      ({ text, literal } = keyLiteral(key));
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<boolean>((resolve, reject) => {
      const entry = this.pending.get(text);
      if (entry) entry.waiters.push({ resolve, reject });
      else this.pending.set(text, { literal, waiters: [{ resolve, reject }] });
      if (this.pending.size >= this.batchSize) this.flush();
      else this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.flush(true);
      }, this.maxWaitMs);
    });
  }

  /** Start queries while there are free slots: full batches always, a partial one when its wait is over. */
  private flush(waitOver = false): void {
    while (this.running < this.maxConcurrent && this.pending.size > 0 && (waitOver || this.pending.size >= this.batchSize)) {
      const batch = new Map<string, { literal: string; waiters: Waiter[] }>();
      let chars = 0;
      for (const [text, entry] of this.pending) {
        if (batch.size >= this.batchSize || (batch.size > 0 && chars + entry.literal.length > MAX_KEY_LIST_CHARS)) break;
        batch.set(text, entry);
        chars += entry.literal.length + 1;
      }
      for (const text of batch.keys()) this.pending.delete(text);
      this.running++;
      this.ask(batch).finally(() => {
        this.running--;
        // keys that came while the slots were taken: their wait may be over already
        if (this.pending.size > 0) {
          if (this.pending.size >= this.batchSize) this.flush();
          else if (!this.timer) this.flush(true);
        }
      });
    }
    if (this.pending.size === 0 && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private async ask(batch: Map<string, { literal: string; waiters: Waiter[] }>): Promise<void> {
    try {
      const { store, from, column } = await this.resolveTarget();
      const list = [...batch.values()].map((e) => e.literal).join(',');
      const rows = await store.query<{ k: unknown }>(`SELECT DISTINCT ${column} AS k FROM ${from} WHERE ${column} IN (${list})`);
      const found = new Set(rows.map((r) => String(r.k)));
      for (const [text, entry] of batch) for (const w of entry.waiters) w.resolve(found.has(text));
    } catch (err) {
      const error = explain(err, this.tableName(), this.keyColumn);
      for (const entry of batch.values()) for (const w of entry.waiters) w.reject(error);
    }
  }

  private tableName(): string {
    return typeof this.table === 'string' ? this.table : this.table.name;
  }

  private resolveTarget(): Promise<{ store: ClickHouseStore; from: string; column: string }> {
    this.target ??= this.getStore().then((store) => {
      const name = this.tableName();
      const dot = name.indexOf('.');
      const from = dot > 0
        ? `${quoteIdentifier(name.slice(0, dot))}.${quoteIdentifier(name.slice(dot + 1))}`
        : `${quoteIdentifier(store.database)}.${quoteIdentifier(name)}`;
      return { store, from, column: quoteIdentifier(this.keyColumn) };
    });
    // a store that failed to open may open next time
    this.target.catch(() => { this.target = undefined; });
    return this.target;
  }
}

/** A missing table or column cannot get better by retrying: say which. */
function explain(err: unknown, table: string, column: string): unknown {
  const text = err instanceof Error ? err.message : String(err);
  if (/Code: (60|81)\b|UNKNOWN_TABLE|UNKNOWN_DATABASE|doesn't exist|does not exist/.test(text)) {
    return new FatalError(`seen: table ${table} does not exist: ${text}`, {
      hint: 'create it first (the clickhouse sink does on open, or migrate(store, tables))',
      cause: err,
    });
  }
  if (/Code: (16|47)\b|UNKNOWN_IDENTIFIER|NO_SUCH_COLUMN/.test(text)) {
    return new FatalError(`seen: table ${table} has no column ${column}: ${text}`, { hint: 'check keyColumn', cause: err });
  }
  if (err instanceof SluiceError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$|^UND_ERR/.test(code)) return new TransientError(`seen: looking up keys in ${table} failed: ${text}`, { cause: err });
  return err;
}
