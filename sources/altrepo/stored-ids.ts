/**
 * The `pkg_hash` of stored packages by their file's MD5, from the `package_hash`
 * marker table, looked up in batches: what the old loader did for the packages of a
 * list it already knew (ALT's genpkglist entries carry no SHA1HEADER or SIGMD5, so the
 * id of a package that is not read must come from the store).
 *
 * Like `seen`'s lookups: keys asked for while a query is being gathered share it (up
 * to `batchSize` keys, or whatever came within `maxWaitMs`), at most
 * `maxConcurrentQueries` queries at a time; one instance per run, shared by its items.
 *
 * @example
 * ```ts
 * const ids = new StoredIds(ctx);
 * const hash = await ids.get(listed.md5); // '3006477110272649082', or undefined when not stored
 * ```
 */
import { quoteIdentifier, quoteString, type ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { packageHash } from './tables.ts';

interface Waiter {
  resolve: (hash: string | undefined) => void;
  reject: (err: unknown) => void;
}

export class StoredIds {
  private pending = new Map<string, Waiter[]>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running = 0;

  constructor(
    private readonly ctx: { store(): Promise<ClickHouseStore> },
    private readonly options: { batchSize?: number; maxWaitMs?: number; maxConcurrentQueries?: number } = {},
  ) {}

  /** The stored package's id for a file MD5 (hex), or undefined when no package with it is stored. */
  get(md5: string): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const waiters = this.pending.get(md5);
      if (waiters) waiters.push({ resolve, reject });
      else this.pending.set(md5, [{ resolve, reject }]);
      if (this.pending.size >= (this.options.batchSize ?? 1000)) this.flush(false);
      else this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.flush(true);
      }, this.options.maxWaitMs ?? 50);
    });
  }

  private flush(waitOver: boolean): void {
    const batchSize = this.options.batchSize ?? 1000;
    while (this.running < (this.options.maxConcurrentQueries ?? 2) && this.pending.size > 0 && (waitOver || this.pending.size >= batchSize)) {
      const batch = new Map<string, Waiter[]>();
      for (const [key, waiters] of this.pending) {
        if (batch.size >= batchSize) break;
        batch.set(key, waiters);
      }
      for (const key of batch.keys()) this.pending.delete(key);
      this.running++;
      this.ask(batch).finally(() => {
        this.running--;
        if (this.pending.size > 0 && !this.timer) this.flush(true);
      });
    }
    if (this.pending.size === 0 && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private async ask(batch: Map<string, Waiter[]>): Promise<void> {
    try {
      const store = await this.ctx.store();
      const table = `${quoteIdentifier(store.database)}.${quoteIdentifier(packageHash.name)}`;
      const keys = [...batch.keys()].map(quoteString).join(',');
      const rows = await store.query<{ md5: string; h: string }>(`SELECT md5, toString(any(pkg_hash)) AS h FROM ${table} WHERE md5 IN (${keys}) GROUP BY md5`);
      const found = new Map(rows.map((r) => [r.md5, r.h]));
      for (const [key, waiters] of batch) for (const w of waiters) w.resolve(found.get(key));
    } catch (err) {
      for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
    }
  }
}
