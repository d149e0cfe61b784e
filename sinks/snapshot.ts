/**
 * Write all the records of a run to one JSON (or JSON Lines) file, published atomically
 * when the run succeeds.
 *
 * Records go to a temp file beside the target (`.<name>.<pid>.<time>.tmp`, through
 * `ctx.fs.writeFileAtomic`, so the run's `write` permission applies) while the run goes
 * on. When the run ends with `succeeded`, the temp file is fsynced and renamed over the
 * target: a reader sees the previous snapshot until the new one is complete, then the
 * new one, never a part. When the run fails or is interrupted, the temp file is removed
 * and the previous snapshot stays as it was. (A process killed outright leaves its temp
 * file behind; the target is untouched.)
 *
 * Memory:
 * - `format: 'jsonl'`, and `format: 'json'` without `sortBy` or `wrap`: records are
 *   serialised as they arrive and streamed to the temp file, so memory stays bounded
 *   (one 64 KiB buffer) however many records the run has.
 * - `sortBy` or `wrap` need every record before the first byte can be written, so the
 *   records are kept in memory until the end of the run. Use them for snapshots that fit.
 *
 * Output is deterministic: keys in the order the record has them, BigInt values as
 * strings; `json` is exactly `JSON.stringify(records, null, 2)` plus a newline (or of
 * `wrap(records)`), `jsonl` one `JSON.stringify(record)` per line.
 *
 * @example
 * ```ts
 * sinks: () => [snapshot<Row>({ path: '.sluice/inventory.json', sortBy: 'path' })],
 * sinks: () => [snapshot<Row>({ path: '.sluice/inventory.jsonl', format: 'jsonl' })],
 * sinks: () => [snapshot<Row>({ path: 'out/index.json', wrap: (files) => ({ generated: 'sluice', files }) })],
 * ```
 */
import type { RunContext } from '../runtime/context.ts';
import { FatalError } from '../runtime/errors.ts';
import type { RunOutcome, Sink } from '../runtime/pipeline.ts';

interface SnapshotCommon<R> {
  /** the file to publish (relative to the working directory, or absolute) */
  readonly path: string;
  /**
   * order records by this field or key function (stable: ties keep arrival order);
   * numbers sort before strings. Keeps all records in memory until the end of the run.
   */
  readonly sortBy?: keyof R | ((record: R) => string | number);
}

export type SnapshotOptions<R> = SnapshotCommon<R> &
  (
    | {
        /** `json` (default): one JSON document, an array of the records, 2-space indent */
        readonly format?: 'json';
        /**
         * shape the document from all the records (e.g. add a header); the result is what
         * is written. Keeps all records in memory until the end of the run.
         */
        readonly wrap?: (records: R[]) => unknown;
      }
    | {
        /** `jsonl`: one record per line */
        readonly format: 'jsonl';
        readonly wrap?: undefined;
      }
  );

/** how much serialised text is gathered before it is handed to the file */
const CHUNK_BYTES = 64 * 1024;

/** A sink that publishes the run's records as one file when the run succeeds. */
export function snapshot<R>(options: SnapshotOptions<R>): Sink<R> {
  const format = options.format ?? 'json';
  if (format !== 'json' && format !== 'jsonl') {
    throw new FatalError(`snapshot: unknown format ${JSON.stringify(format)}`, { item: options.path, hint: "use 'json' or 'jsonl'" });
  }
  if (format === 'jsonl' && options.wrap) {
    throw new FatalError('snapshot: wrap applies to one JSON document only, not to jsonl', { item: options.path, hint: "drop wrap or use format: 'json'" });
  }
  const keyOf = sortKey(options.sortBy);
  const inMemory = keyOf !== undefined || options.wrap !== undefined;

  let spool: Spool | undefined;
  let published: Promise<void> | undefined;
  let held: R[] = [];
  let count = 0;
  let pending = '';

  /** gather text; hand a full chunk to the file and wait until it has taken it */
  const emit = async (to: Spool, text: string) => {
    pending += text;
    if (pending.length >= CHUNK_BYTES) {
      const chunk = pending;
      pending = '';
      await to.send(chunk);
    }
  };

  const emitRecord = async (to: Spool, record: R) => {
    await emit(to, format === 'jsonl' ? `${toJson(record)}\n` : jsonArrayElement(record, count === 0));
    count++;
  };

  const failure = (err: unknown) =>
    err instanceof FatalError
      ? err
      : new FatalError(`cannot write snapshot ${options.path}: ${err instanceof Error ? err.message : String(err)}`, {
          item: options.path,
          hint: 'check the space and permissions of the directory it is in',
          cause: err,
        });

  return {
    name: 'snapshot',
    kind: 'snapshot',
    batch: { maxRecords: 1000 },

    open: async (ctx: RunContext) => {
      const to = new Spool();
      spool = to;
      held = [];
      count = 0;
      pending = '';
      // checks the write permission at once (a PermissionError naming --allow-write),
      // creates the temp file beside the target, then pulls from the spool until it ends
      published = ctx.fs.writeFileAtomic(options.path, to);
      published.catch((err: unknown) => to.fail(err));
      await Promise.race([to.started, published]);
    },

    write: async (records) => {
      const to = spool;
      if (!to) throw new FatalError('snapshot: write before open (or after close)', { item: options.path });
      try {
        to.throwIfFailed();
        if (inMemory) {
          for (const record of records) held.push(record);
          return;
        }
        for (const record of records) await emitRecord(to, record);
      } catch (err) {
        throw failure(err);
      }
    },

    close: async (outcome: RunOutcome) => {
      const to = spool;
      const done = published;
      spool = undefined;
      published = undefined;
      if (!to || !done) return;
      if (outcome.status !== 'succeeded') {
        // the writer removes its temp file; the previous snapshot is not touched
        to.abort(new Error(`run ${outcome.status}; snapshot ${options.path} not published`));
        held = [];
        await done.catch(() => undefined);
        return;
      }
      try {
        if (inMemory) {
          let records = held;
          held = [];
          if (keyOf) records = stableSort(records, keyOf);
          if (options.wrap) await emit(to, `${JSON.stringify(options.wrap(records), replaceBigInt, 2) ?? 'null'}\n`);
          else for (const record of records) await emitRecord(to, record);
        }
        if (format === 'json' && !options.wrap) pending += count === 0 ? '[]\n' : '\n]\n';
        if (pending) await to.send(pending);
        pending = '';
        to.end();
      } catch (err) {
        to.abort(err);
      }
      try {
        await done;
      } catch (err) {
        throw failure(err);
      }
    },
  };
}

/**
 * An async iterable of text chunks that `writeFileAtomic` pulls from. `send` settles
 * once the file has taken the chunk (the writer came back for the next one), so at most
 * one chunk waits in memory.
 */
class Spool implements AsyncIterable<string> {
  private readonly queue: { chunk: string; taken: () => void; failed: (err: unknown) => void }[] = [];
  private current: { taken: () => void } | undefined;
  private waiting: { resolve: (r: IteratorResult<string>) => void; reject: (err: unknown) => void } | undefined;
  private ended = false;
  private failure: { error: unknown } | undefined;
  private markStarted!: () => void;
  /** resolves when the writer first asks for data: the temp file is open */
  readonly started = new Promise<void>((resolve) => (this.markStarted = resolve));

  send(chunk: string): Promise<void> {
    this.throwIfFailed();
    return new Promise((taken, failed) => {
      this.queue.push({ chunk, taken, failed });
      this.deliver();
    });
  }

  /** no more chunks: the writer fsyncs and renames */
  end(): void {
    this.ended = true;
    this.deliver();
  }

  /** make the writer fail with `error`, so it removes its temp file */
  abort(error: unknown): void {
    this.fail(error);
  }

  /** the writer failed (or we aborted): every waiting `send` rejects */
  fail(error: unknown): void {
    if (this.failure) return;
    this.failure = { error };
    for (const entry of this.queue.splice(0)) entry.failed(error);
    this.deliver();
  }

  throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    return { next: () => this.next() };
  }

  private next(): Promise<IteratorResult<string>> {
    this.markStarted();
    // asking for more means the previous chunk is written
    this.current?.taken();
    this.current = undefined;
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.deliver();
    });
  }

  private deliver(): void {
    const waiting = this.waiting;
    if (!waiting) return;
    if (this.failure) {
      this.waiting = undefined;
      waiting.reject(this.failure.error);
      return;
    }
    const next = this.queue.shift();
    if (next) {
      this.waiting = undefined;
      this.current = next;
      waiting.resolve({ done: false, value: next.chunk });
      return;
    }
    if (this.ended) {
      this.waiting = undefined;
      waiting.resolve({ done: true, value: undefined });
    }
  }
}

function sortKey<R>(sortBy: SnapshotCommon<R>['sortBy']): ((record: R) => unknown) | undefined {
  if (sortBy === undefined) return undefined;
  if (typeof sortBy === 'function') return sortBy;
  return (record: R) => record[sortBy];
}

/** Array.prototype.sort is stable, so ties keep arrival order. Numbers, then strings, then the rest. */
function stableSort<R>(records: R[], keyOf: (record: R) => unknown): R[] {
  const keyed = records.map((record) => ({ record, key: keyOf(record) }));
  keyed.sort((a, b) => compareKeys(a.key, b.key));
  return keyed.map((k) => k.record);
}

function compareKeys(a: unknown, b: unknown): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 2) return 0;
  return (a as number | string) < (b as number | string) ? -1 : (a as number | string) > (b as number | string) ? 1 : 0;
}

function rank(value: unknown): number {
  if ((typeof value === 'number' && !Number.isNaN(value)) || typeof value === 'bigint') return 0;
  if (typeof value === 'string') return 1;
  return 2;
}

function replaceBigInt(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

function toJson(record: unknown): string {
  return JSON.stringify(record, replaceBigInt) ?? 'null';
}

/** One element of a 2-space indented array, as `JSON.stringify(array, null, 2)` writes it. */
function jsonArrayElement(record: unknown, first: boolean): string {
  const text = (JSON.stringify(record, replaceBigInt, 2) ?? 'null').replace(/\n/g, '\n  ');
  return `${first ? '[\n' : ',\n'}  ${text}`;
}
