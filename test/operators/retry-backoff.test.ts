import { defer, firstValueFrom, lastValueFrom, of, throwError, concat, toArray } from 'rxjs';
import { describe, expect, it, vi } from 'vitest';
import { retryBackoff } from '../../operators/retry-backoff.ts';
import { backoffDelay, delayFor } from '../../runtime/backoff.ts';
import { PermanentError, TransientError } from '../../runtime/errors.ts';

/** A source that fails its first `failures` subscriptions with `makeError(n)`, then emits 'ok'. */
function flaky(failures: number, makeError: (n: number) => unknown = (n) => new TransientError(`failure ${n}`)) {
  let subscriptions = 0;
  const source = defer(() => {
    subscriptions += 1;
    return subscriptions <= failures ? throwError(() => makeError(subscriptions)) : of('ok');
  });
  return { source, subscriptions: () => subscriptions };
}

const fast = { initialDelayMs: 1, jitter: 'none' as const };

describe('retryBackoff', () => {
  it('resubscribes on transient errors until the source succeeds', async () => {
    const { source, subscriptions } = flaky(2);
    await expect(firstValueFrom(source.pipe(retryBackoff(fast)))).resolves.toBe('ok');
    expect(subscriptions()).toBe(3);
  });

  it('gives up after maxAttempts subscriptions with the last error', async () => {
    const { source, subscriptions } = flaky(Infinity);
    await expect(firstValueFrom(source.pipe(retryBackoff({ ...fast, maxAttempts: 3 })))).rejects.toThrow('failure 3');
    expect(subscriptions()).toBe(3);
  });

  it('defaults to 5 attempts', async () => {
    const { source, subscriptions } = flaky(Infinity);
    await expect(firstValueFrom(source.pipe(retryBackoff(fast)))).rejects.toThrow('failure 5');
    expect(subscriptions()).toBe(5);
  });

  it('does not retry permanent or unclassified errors', async () => {
    const permanent = flaky(Infinity, () => new PermanentError('404 not found'));
    await expect(firstValueFrom(permanent.source.pipe(retryBackoff(fast)))).rejects.toThrow('404 not found');
    expect(permanent.subscriptions()).toBe(1);

    const plain = flaky(Infinity, () => new Error('bad gzip header'));
    await expect(firstValueFrom(plain.source.pipe(retryBackoff(fast)))).rejects.toThrow('bad gzip header');
    expect(plain.subscriptions()).toBe(1);
  });

  it('retries system errors that classify as transient', async () => {
    const reset = flaky(1, () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    await expect(firstValueFrom(reset.source.pipe(retryBackoff(fast)))).resolves.toBe('ok');
    expect(reset.subscriptions()).toBe(2);
  });

  it('lets shouldRetry decide, with the retry number', async () => {
    const asked: number[] = [];
    const { source, subscriptions } = flaky(Infinity, () => new PermanentError('nope'));
    const shouldRetry = (_error: unknown, attempt: number) => {
      asked.push(attempt);
      return attempt < 3;
    };
    await expect(firstValueFrom(source.pipe(retryBackoff({ ...fast, shouldRetry })))).rejects.toThrow('nope');
    expect(asked).toEqual([1, 2, 3]);
    expect(subscriptions()).toBe(3);
  });

  it('waits at least retryAfterMs when the error asks for it', async () => {
    const { source } = flaky(1, () => new TransientError('503', { retryAfterMs: 80 }));
    const started = performance.now();
    await firstValueFrom(source.pipe(retryBackoff(fast)));
    expect(performance.now() - started).toBeGreaterThanOrEqual(75);
  });

  it('backs off exponentially between attempts', async () => {
    const { source } = flaky(2);
    const started = performance.now();
    await firstValueFrom(source.pipe(retryBackoff({ initialDelayMs: 25, factor: 2, jitter: 'none' })));
    // 25 ms before the first retry, 50 ms before the second
    expect(performance.now() - started).toBeGreaterThanOrEqual(70);
  });

  it('counts attempts afresh after a value when resetOnSuccess is set', async () => {
    // every subscription emits one value, then fails; the fourth completes
    const make = () => {
      let subscriptions = 0;
      return defer(() => {
        subscriptions += 1;
        return subscriptions < 4 ? concat(of(subscriptions), throwError(() => new TransientError(`drop ${subscriptions}`))) : of(4);
      });
    };
    await expect(lastValueFrom(make().pipe(retryBackoff({ ...fast, maxAttempts: 2, resetOnSuccess: true }), toArray()))).resolves.toEqual([1, 2, 3, 4]);
    await expect(lastValueFrom(make().pipe(retryBackoff({ ...fast, maxAttempts: 2 }), toArray()))).rejects.toThrow('drop 2');
  });

  it('stops waiting with the abort reason when the signal aborts', async () => {
    const stop = new AbortController();
    const { source, subscriptions } = flaky(Infinity);
    const result = firstValueFrom(source.pipe(retryBackoff({ initialDelayMs: 10_000, jitter: 'none', signal: stop.signal })));
    setTimeout(() => stop.abort(new Error('run interrupted')), 5);
    await expect(result).rejects.toThrow('run interrupted');
    expect(subscriptions()).toBe(1);
  });

  it('cancels its backoff timer when unsubscribed', async () => {
    vi.useFakeTimers();
    try {
      const { source, subscriptions } = flaky(Infinity);
      const subscription = source.pipe(retryBackoff({ initialDelayMs: 1000, jitter: 'none' })).subscribe({ error: () => {} });
      expect(vi.getTimerCount()).toBe(1);
      subscription.unsubscribe();
      await vi.advanceTimersByTimeAsync(5000);
      expect(vi.getTimerCount()).toBe(0);
      expect(subscriptions()).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('rejects a maxAttempts that is not a positive integer', () => {
    expect(() => retryBackoff({ maxAttempts: 0 })).toThrow(/maxAttempts must be a positive integer, got 0/);
    expect(() => retryBackoff({ maxAttempts: 1.5 })).toThrow(/maxAttempts/);
  });

  it('with maxAttempts 1 never retries', async () => {
    const { source, subscriptions } = flaky(Infinity);
    await expect(firstValueFrom(source.pipe(retryBackoff({ maxAttempts: 1 })))).rejects.toThrow('failure 1');
    expect(subscriptions()).toBe(1);
  });
});

describe('backoffDelay', () => {
  it('grows by factor from initialDelayMs and caps at maxDelayMs', () => {
    const options = { initialDelayMs: 100, factor: 3, maxDelayMs: 2000, jitter: 'none' as const };
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(n, options))).toEqual([100, 300, 900, 2000, 2000]);
    expect(backoffDelay(1, { jitter: 'none' })).toBe(100);
    expect(backoffDelay(3, { jitter: 'none' })).toBe(400);
    expect(backoffDelay(10_000, { jitter: 'none' })).toBe(30_000);
  });

  it('draws full jitter in [0, delay) and equal jitter in [delay/2, delay)', () => {
    const full = Array.from({ length: 200 }, () => backoffDelay(4, { initialDelayMs: 100 }));
    expect(Math.min(...full)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...full)).toBeLessThan(800);
    expect(new Set(full).size).toBeGreaterThan(1);
    const equal = Array.from({ length: 200 }, () => backoffDelay(4, { initialDelayMs: 100, jitter: 'equal' }));
    expect(Math.min(...equal)).toBeGreaterThanOrEqual(400);
    expect(Math.max(...equal)).toBeLessThan(800);
  });
});

describe('delayFor', () => {
  it('resolves after the delay', async () => {
    const started = performance.now();
    await delayFor(30);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
  });

  it('rejects with the abort reason, at once if already aborted', async () => {
    await expect(delayFor(10, AbortSignal.abort(new Error('already stopped')))).rejects.toThrow('already stopped');
    const stop = new AbortController();
    const waiting = delayFor(60_000, stop.signal);
    stop.abort(new Error('stopped'));
    await expect(waiting).rejects.toThrow('stopped');
  });
});

