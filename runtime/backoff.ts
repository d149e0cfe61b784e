/**
 * How long to wait before trying again, and an abortable wait. Shared by the
 * `retryBackoff` operator (resubscribing a failed source) and the engine (retrying a
 * sink write), so both back off the same way.
 */

/** How the random part of a delay is drawn (see https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/). */
export type Jitter = 'full' | 'equal' | 'none';

export interface BackoffOptions {
  /** delay before the first retry, before jitter; default 100 */
  readonly initialDelayMs?: number;
  /** cap on the exponential delay, before jitter; default 30 000 */
  readonly maxDelayMs?: number;
  /** each retry waits `factor` times longer than the one before; default 2 */
  readonly factor?: number;
  /**
   * `full` (default): uniform in [0, delay) — spreads a crowd of clients best;
   * `equal`: uniform in [delay/2, delay) — never retries almost at once;
   * `none`: exactly `delay`.
   */
  readonly jitter?: Jitter;
}

/**
 * The delay before retry number `attempt` (1 for the first retry): exponential
 * growth from `initialDelayMs` by `factor`, capped at `maxDelayMs`, then jittered.
 *
 * @example
 * ```ts
 * backoffDelay(1, { jitter: 'none' }); // 100
 * backoffDelay(3, { jitter: 'none' }); // 400
 * backoffDelay(30, { jitter: 'none' }); // 30000 (capped)
 * backoffDelay(3); // somewhere in [0, 400)
 * ```
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const { initialDelayMs = 100, maxDelayMs = 30_000, factor = 2, jitter = 'full' } = options;
  // Math.min before multiplying would be wrong for factor < 1; the cap also tames Infinity from huge attempts.
  const exponential = Math.min(maxDelayMs, initialDelayMs * factor ** Math.max(0, attempt - 1));
  switch (jitter) {
    case 'none':
      return exponential;
    case 'equal':
      return exponential / 2 + Math.random() * (exponential / 2);
    case 'full':
      return Math.random() * exponential;
  }
}

/**
 * Resolves after `ms` milliseconds; rejects with `signal.reason` as soon as `signal`
 * aborts (at once if it already has), and then clears its timer so an abandoned wait
 * does not keep the process alive.
 *
 * @example
 * ```ts
 * const stop = new AbortController();
 * await delayFor(backoffDelay(attempt), stop.signal);
 * ```
 */
export function delayFor(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
