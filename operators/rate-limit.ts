import { concatMap, map, of, timer, type MonoTypeOperatorFunction } from 'rxjs';
import { FatalError } from '../runtime/errors.ts';

export interface RateLimitOptions {
  /** values per second on average, at most */
  readonly perSecond: number;
  /** values that may pass back to back after a quiet spell; default 1 */
  readonly burst?: number;
}

/**
 * Delays values so that no more than `perSecond` pass on average, with bursts of up to
 * `burst` values at once (a token bucket).
 *
 * <span class="informal">Be a good citizen of the server you scrape: a steady
 * `perSecond` however fast the source could go.</span>
 *
 * The bucket belongs to the `rateLimit(...)` call, **not** to a subscription: every
 * Observable the returned operator is applied to draws from the same bucket. That is
 * on purpose. The engine applies a pipeline's `transform` to a short inner stream per
 * item, all with the operator instance made once for the run, and the limit must hold
 * for the run as a whole, not per item. Call `rateLimit(...)` again for an independent
 * limit.
 *
 * Values keep their order within a stream; a value waiting for a token is held (like
 * {@link delay}, this buffers while it waits, so put it after the in-flight bound). An
 * error is forwarded at once, dropping values still waiting.
 *
 * ## Example
 *
 * At most 5 requests a second to a mirror, across every item of the run
 *
 * ```ts
 * import { concatMap } from 'rxjs';
 * import { rateLimit } from '../operators/rate-limit.ts';
 *
 * transform: (ctx) => pipe(
 *   rateLimit({ perSecond: 5, burst: 2 }),
 *   concatMap((url) => ctx.http.request(url)),
 * ),
 * ```
 *
 * @see {@link delay}
 * @see {@link throttleTime}
 * @param options The average rate and the burst size.
 * @return A function that returns an Observable of the source values, spaced out to the rate.
 */
export function rateLimit<T>({ perSecond, burst = 1 }: RateLimitOptions): MonoTypeOperatorFunction<T> {
  if (!(perSecond > 0 && perSecond !== Infinity)) {
    throw new FatalError(`rateLimit: perSecond must be a finite number > 0, got ${String(perSecond)}`);
  }
  if (!(Number.isInteger(burst) && burst >= 1)) {
    throw new FatalError(`rateLimit: burst must be a positive integer, got ${String(burst)}`);
  }
  const takeToken = tokenBucket(perSecond, burst);
  // concatMap takes a token only when the previous value of this stream has gone, so order holds.
  return concatMap((value: T) => {
    const waitMs = takeToken();
    return waitMs <= 0 ? of(value) : timer(waitMs).pipe(map(() => value));
  });
}

/**
 * A token bucket that lends: taking a token always succeeds and returns how long the
 * taker must wait for it. The balance may go negative, which reserves future tokens in
 * turn, so concurrent streams queue fairly instead of all waking up at once.
 */
function tokenBucket(perSecond: number, burst: number): () => number {
  const msPerToken = 1000 / perSecond;
  let tokens = burst;
  let refilledAt = performance.now();
  return () => {
    const now = performance.now();
    tokens = Math.min(burst, tokens + (now - refilledAt) / msPerToken);
    refilledAt = now;
    tokens -= 1;
    return tokens >= 0 ? 0 : -tokens * msPerToken;
  };
}
