import { Observable, type OperatorFunction } from 'rxjs';
import { FatalError } from '../runtime/errors.ts';

export interface BatchOptions<T> {
  /** emit once the batch holds this many values */
  readonly maxCount?: number;
  /** keep a batch's total `sizeOf` at or under this many bytes (a single larger value goes out alone) */
  readonly maxBytes?: number;
  /** emit a partial batch this long after its first value arrived */
  readonly maxDelayMs?: number;
  /** bytes a value counts for under `maxBytes`; default: UTF-8 length of its JSON */
  readonly sizeOf?: (value: T) => number;
}

/**
 * Groups source values into arrays, closing a batch when it is full by count, full by
 * bytes, or old enough.
 *
 * <span class="informal">{@link bufferCount} and {@link bufferTime} together, plus a
 * byte budget: what a sink needs to write big batches without holding a slow trickle
 * back forever.</span>
 *
 * A batch is emitted as soon as it holds `maxCount` values, or when the next value
 * would push it past `maxBytes` (so batches stay within the budget: a request-size
 * limit on the other side is respected), or `maxDelayMs` after its first value. When
 * the source completes, the remainder is emitted; when it errors, the remainder is
 * dropped and the error forwarded, since a partial batch from a failed stream should
 * not look like a successful write. Empty batches are never emitted. At least one
 * limit must be given, or values would pile up until the source ends.
 *
 * ## Example
 *
 * Insert rows 10 000 at a time, at most 8 MiB per insert, and at least once a second
 *
 * ```ts
 * import { batch } from '../operators/batch.ts';
 *
 * rows$.pipe(
 *   batch({ maxCount: 10_000, maxBytes: 8 * 1024 * 1024, maxDelayMs: 1000 }),
 *   concatMap((rows) => clickhouse.insert(rows)),
 * );
 * ```
 *
 * @see {@link bufferCount}
 * @see {@link bufferTime}
 * @param options The limits (at least one) and how to size a value.
 * @return A function that returns an Observable of non-empty arrays of source values.
 */
export function batch<T>(options: BatchOptions<T>): OperatorFunction<T, T[]> {
  const { maxCount = Infinity, maxBytes = Infinity, maxDelayMs, sizeOf = jsonByteLength } = options;
  validateLimits(options);
  // Sizing every value costs a JSON.stringify; skip it when no byte budget asks for it.
  const measure = maxBytes === Infinity ? () => 0 : sizeOf;

  return (source) =>
    new Observable<T[]>((subscriber) => {
      let current: T[] = [];
      let currentBytes = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;

      const flush = () => {
        clearTimeout(timer);
        timer = undefined;
        if (current.length === 0) return;
        const full = current;
        // reset before emitting: the subscriber may push the next value synchronously
        current = [];
        currentBytes = 0;
        subscriber.next(full);
      };

      const subscription = source.subscribe({
        next(value) {
          const bytes = measure(value);
          if (current.length > 0 && currentBytes + bytes > maxBytes) flush();
          current.push(value);
          currentBytes += bytes;
          if (current.length >= maxCount || currentBytes >= maxBytes) flush();
          else if (current.length === 1 && maxDelayMs !== undefined) timer = setTimeout(flush, maxDelayMs);
        },
        error(err) {
          clearTimeout(timer);
          current = [];
          subscriber.error(err);
        },
        complete() {
          flush();
          subscriber.complete();
        },
      });

      return () => {
        clearTimeout(timer);
        subscription.unsubscribe();
      };
    });
}

function validateLimits(options: Pick<BatchOptions<never>, 'maxCount' | 'maxBytes' | 'maxDelayMs'>): void {
  const { maxCount, maxBytes, maxDelayMs } = options;
  if (maxCount === undefined && maxBytes === undefined && maxDelayMs === undefined) {
    throw new FatalError(
      'batch: no limit given; pass at least one of maxCount, maxBytes, maxDelayMs, or a batch would grow until the source ends',
    );
  }
  if (maxCount !== undefined && !(Number.isInteger(maxCount) && maxCount >= 1)) {
    throw new FatalError(`batch: maxCount must be a positive integer, got ${String(maxCount)}`);
  }
  if (maxBytes !== undefined && !(maxBytes > 0)) {
    throw new FatalError(`batch: maxBytes must be a positive number, got ${String(maxBytes)}`);
  }
  if (maxDelayMs !== undefined && !(maxDelayMs >= 0 && maxDelayMs !== Infinity)) {
    throw new FatalError(`batch: maxDelayMs must be a finite number >= 0, got ${String(maxDelayMs)}`);
  }
}

/** UTF-8 bytes of the value's JSON, what a JSON-lines or JSONEachRow insert will send. */
function jsonByteLength(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
}
