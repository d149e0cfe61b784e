import { Observable, retry, throwError, type MonoTypeOperatorFunction } from 'rxjs';
import { backoffDelay, delayFor, type BackoffOptions } from '../runtime/backoff.ts';
import { classifyError, FatalError } from '../runtime/errors.ts';

export interface RetryBackoffOptions extends BackoffOptions {
  /** subscriptions in all, the first one included (so 5 means up to 4 retries); default 5 */
  readonly maxAttempts?: number;
  /**
   * Whether an error is worth another try; `attempt` is the number of the retry it
   * would be (1 for the first). Default: only errors classified `transient`.
   */
  readonly shouldRetry?: (error: unknown, attempt: number) => boolean;
  /** stop waiting and fail with `signal.reason` when this aborts (the run is interrupted) */
  readonly signal?: AbortSignal;
  /** start counting attempts again after the source emits a value; default false */
  readonly resetOnSuccess?: boolean;
}

/**
 * Resubscribes to the source when it errors, waiting longer each time (exponential
 * backoff with jitter), and gives up with the last error after `maxAttempts`.
 *
 * <span class="informal">Like {@link retry}, but polite to the other side: only
 * errors that may pass on their own are retried, never in a tight loop, and never
 * sooner than the server asked.</span>
 *
 * By default only errors that {@link classifyError} calls `transient` are retried: a
 * 404 or a corrupt file will not get better by asking again, so it fails at once and
 * the pipeline's error policy decides. The wait before retry `n` is
 * {@link backoffDelay}`(n, options)`; when the error carries `retryAfterMs` (an HTTP
 * `Retry-After`), the larger of the two is used. The wait is abortable through
 * `signal`, so an interrupted run does not sit out a 30-second backoff.
 *
 * ## Example
 *
 * Scrape an index, retrying 503s and connection resets up to 4 times
 *
 * ```ts
 * import { defer } from 'rxjs';
 * import { retryBackoff } from '../operators/retry-backoff.ts';
 *
 * const index = defer(() => ctx.http.request(url)).pipe(
 *   retryBackoff({ maxAttempts: 5, initialDelayMs: 200, signal: ctx.signal }),
 * );
 * ```
 *
 * @see {@link backoffDelay}
 * @param options Attempts, backoff shape, which errors to retry, and an abort signal.
 * @return A function that returns an Observable that mirrors the source, resubscribing to it on retryable errors.
 */
export function retryBackoff<T>(options: RetryBackoffOptions = {}): MonoTypeOperatorFunction<T> {
  const {
    maxAttempts = 5,
    shouldRetry = (error: unknown) => classifyError(error) === 'transient',
    signal,
    resetOnSuccess = false,
  } = options;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new FatalError(`retryBackoff: maxAttempts must be a positive integer, got ${String(maxAttempts)}`, {
      hint: 'count the first try: maxAttempts 1 means no retry',
    });
  }
  return retry<T>({
    count: maxAttempts - 1,
    resetOnSuccess,
    delay: (error: unknown, attempt: number) =>
      shouldRetry(error, attempt)
        ? waitFor(Math.max(backoffDelay(attempt, options), retryAfterOf(error)), signal)
        : throwError(() => error),
  });
}

/** The wait the other side asked for, if the error carries one (SluiceError or any error with `retryAfterMs`). */
function retryAfterOf(error: unknown): number {
  const retryAfterMs = (error as { retryAfterMs?: unknown } | null)?.retryAfterMs;
  return typeof retryAfterMs === 'number' && Number.isFinite(retryAfterMs) ? retryAfterMs : 0;
}

/** {@link delayFor} as an Observable whose unsubscription cancels the timer (a Promise alone could not). */
function waitFor(ms: number, signal: AbortSignal | undefined): Observable<void> {
  return new Observable<void>((subscriber) => {
    const cancel = new AbortController();
    const onAbort = () => cancel.abort(signal!.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    delayFor(ms, cancel.signal).then(
      () => {
        subscriber.next();
        subscriber.complete();
      },
      (reason: unknown) => subscriber.error(reason),
    );
    return () => {
      signal?.removeEventListener('abort', onAbort);
      cancel.abort();
    };
  });
}
