import { defer, from, mergeMap, type OperatorFunction } from 'rxjs';
import { FatalError } from '../runtime/errors.ts';

export interface MapConcurrentOptions {
  /** emit results in input order (holding early finishers back); default false: as they finish */
  readonly ordered?: boolean;
}

/**
 * Maps each value through an async function, with at most `concurrency` calls running
 * at once, emitting results as they finish or, with `ordered: true`, in input order.
 *
 * <span class="informal">{@link mergeMap} for promises, where the concurrency bound is
 * not optional: sluice must never start unbounded work.</span>
 *
 * `fn` is called only when a slot is free; values that arrive meanwhile wait their
 * turn. In ordered mode a finished result whose predecessors are still running keeps
 * its slot until it is emitted, so no more than `concurrency` results are ever held
 * back, at the cost of slots idling behind a slow call. A thrown or rejected `fn`
 * errors the output. Calls already running are not cancelled on unsubscription (a
 * promise cannot be); pass them an AbortSignal of your own if they must stop.
 *
 * ## Example
 *
 * Fetch 8 package manifests at a time, keeping the listing order
 *
 * ```ts
 * import { mapConcurrent } from '../operators/map-concurrent.ts';
 *
 * packageUrls$.pipe(
 *   mapConcurrent((url) => ctx.http.request(url), 8, { ordered: true }),
 * );
 * ```
 *
 * @see {@link mergeMap}
 * @see {@link concatMap}
 * @param fn Called with each value and its index; returns the result or a promise of it.
 * @param concurrency The most calls of `fn` in progress at once: a positive integer.
 * @param options Whether to keep input order.
 * @return A function that returns an Observable of the results of `fn`.
 */
export function mapConcurrent<T, R>(
  fn: (value: T, index: number) => Promise<R> | R,
  concurrency: number,
  { ordered = false }: MapConcurrentOptions = {},
): OperatorFunction<T, R> {
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) {
    throw new FatalError(`mapConcurrent: concurrency must be a positive integer, got ${String(concurrency)}`, {
      hint: 'bound the work in flight, e.g. 8',
    });
  }
  // new Promise turns a synchronous throw into a rejection and calls fn at once, when its slot opens.
  const call = (value: T, index: number) => new Promise<R>((resolve) => resolve(fn(value, index)));
  if (!ordered) return mergeMap((value, index) => from(call(value, index)), concurrency);

  return (source) =>
    defer(() => {
      // Each call's result is released only after its predecessor's, and its inner
      // stream (its mergeMap slot) lasts until then: order, and the bound, hold.
      let previousReleased: Promise<unknown> = Promise.resolve();
      return source.pipe(
        mergeMap((value, index) => {
          const released = Promise.all([call(value, index), previousReleased]).then(([result]) => result);
          previousReleased = released.catch(() => undefined);
          return from(released);
        }, concurrency),
      );
    });
}
