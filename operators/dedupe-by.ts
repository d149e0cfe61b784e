import { filter, type MonoTypeOperatorFunction } from 'rxjs';
import { FatalError } from '../runtime/errors.ts';

export interface DedupeByOptions {
  /** keys remembered at most; past it the least recently seen key is forgotten; default 100 000 */
  readonly maxKeys?: number;
  /** a key may pass again this long after it last passed; default: never */
  readonly ttlMs?: number;
}

/**
 * Drops values whose key has already passed, remembering a bounded number of keys
 * (least recently seen forgotten first) for an optional time window.
 *
 * <span class="informal">{@link distinct} with bounded memory: a mirror listing with
 * millions of entries must not grow a Set without end.</span>
 *
 * Keys are compared like `Map` keys (SameValueZero): derive a string or a number, not
 * an object. Seeing a key again, even when the value is dropped, makes it the most
 * recently seen, so keys that keep coming back are the last to be forgotten; the
 * `ttlMs` window, though, counts from when the key last *passed*, so a key that keeps
 * coming back still passes once per window. Forgetting a key (beyond `maxKeys`) means
 * a later duplicate may pass: this bounds memory, not exactness.
 *
 * The remembered keys belong to the `dedupeBy(...)` call, **not** to a subscription:
 * every Observable the returned operator is applied to shares them. That is on
 * purpose. The engine applies a pipeline's `transform` to a short inner stream per
 * item, all with the operator instance made once for the run, and a duplicate must be
 * dropped even when it comes from another item. Call `dedupeBy(...)` again for an
 * independent set of keys. (Across runs, use the store-backed `seen` operator.)
 *
 * ## Example
 *
 * Keep the first record per package checksum, re-announcing each at most hourly
 *
 * ```ts
 * import { dedupeBy } from '../operators/dedupe-by.ts';
 *
 * transform: () => pipe(
 *   dedupeBy((pkg) => pkg.sha256, { maxKeys: 1_000_000, ttlMs: 3_600_000 }),
 * ),
 * ```
 *
 * @see {@link distinct}
 * @param keyOf Derives the key values are deduplicated by.
 * @param options The memory bound and the time window.
 * @return A function that returns an Observable of the values whose key has not passed (recently).
 */
export function dedupeBy<T>(keyOf: (value: T) => unknown, options: DedupeByOptions = {}): MonoTypeOperatorFunction<T> {
  const { maxKeys = 100_000, ttlMs } = options;
  if (!(Number.isInteger(maxKeys) && maxKeys >= 1)) {
    throw new FatalError(`dedupeBy: maxKeys must be a positive integer, got ${String(maxKeys)}`);
  }
  if (ttlMs !== undefined && !(ttlMs > 0)) {
    throw new FatalError(`dedupeBy: ttlMs must be a number > 0, got ${String(ttlMs)}`);
  }
  // key -> when it last passed; the Map's insertion order is the LRU order, oldest first.
  const passedAt = new Map<unknown, number>();

  const isNewOrExpired = (key: unknown): boolean => {
    const now = Date.now();
    const last = passedAt.get(key);
    // delete + set moves the key to the newest end of the insertion order
    passedAt.delete(key);
    if (last !== undefined && (ttlMs === undefined || now - last < ttlMs)) {
      passedAt.set(key, last);
      return false;
    }
    passedAt.set(key, now);
    if (passedAt.size > maxKeys) passedAt.delete(passedAt.keys().next().value);
    return true;
  };

  return filter((value: T) => isNewOrExpired(keyOf(value)));
}
