import { Subject, from, lastValueFrom, merge, toArray } from 'rxjs';
import { describe, expect, it, vi } from 'vitest';
import { rateLimit } from '../../operators/rate-limit.ts';

describe('rateLimit', () => {
  it('spaces values to perSecond on average, keeping their order', async () => {
    const started = performance.now();
    const out = await lastValueFrom(from([1, 2, 3, 4, 5]).pipe(rateLimit({ perSecond: 50 }), toArray()));
    // one token at start, then one every 20 ms: four waits
    expect(performance.now() - started).toBeGreaterThanOrEqual(75);
    expect(out).toEqual([1, 2, 3, 4, 5]);
  });

  it('lets a burst through at once, then holds the rest to the rate', async () => {
    vi.useFakeTimers();
    try {
      const subject = new Subject<number>();
      const passed: number[] = [];
      subject.pipe(rateLimit({ perSecond: 10, burst: 3 })).subscribe((n) => passed.push(n));
      [1, 2, 3, 4, 5].forEach((n) => subject.next(n));
      expect(passed).toEqual([1, 2, 3]);
      await vi.advanceTimersByTimeAsync(99);
      expect(passed).toEqual([1, 2, 3]);
      await vi.advanceTimersByTimeAsync(1);
      expect(passed).toEqual([1, 2, 3, 4]);
      await vi.advanceTimersByTimeAsync(100);
      expect(passed).toEqual([1, 2, 3, 4, 5]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('refills the bucket while idle, but never beyond burst', async () => {
    vi.useFakeTimers();
    try {
      const subject = new Subject<number>();
      const passed: number[] = [];
      subject.pipe(rateLimit({ perSecond: 10, burst: 2 })).subscribe((n) => passed.push(n));
      await vi.advanceTimersByTimeAsync(10_000); // a long quiet spell saves up 2 tokens, not 100
      [1, 2, 3].forEach((n) => subject.next(n));
      expect(passed).toEqual([1, 2]);
      await vi.advanceTimersByTimeAsync(100);
      expect(passed).toEqual([1, 2, 3]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('shares one bucket across every stream the same instance is applied to', async () => {
    const limit = rateLimit<string>({ perSecond: 50 });
    const started = performance.now();
    const out = await lastValueFrom(
      merge(from(['a1', 'a2', 'a3']).pipe(limit), from(['b1', 'b2', 'b3']).pipe(limit)).pipe(toArray()),
    );
    // six values through one 50/s bucket: five waits of 20 ms (separate buckets would take 40 ms)
    expect(performance.now() - started).toBeGreaterThanOrEqual(95);
    expect(out.filter((v) => v.startsWith('a'))).toEqual(['a1', 'a2', 'a3']);
    expect(out.filter((v) => v.startsWith('b'))).toEqual(['b1', 'b2', 'b3']);
  });

  it('rejects a rate or burst that makes no sense', () => {
    expect(() => rateLimit({ perSecond: 0 })).toThrow(/perSecond must be a finite number > 0, got 0/);
    expect(() => rateLimit({ perSecond: Number.NaN })).toThrow(/perSecond/);
    expect(() => rateLimit({ perSecond: 5, burst: 0 })).toThrow(/burst must be a positive integer/);
  });
});
