import { EMPTY, Subject, firstValueFrom, from, of, throwError, concat, toArray } from 'rxjs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { batch } from '../../operators/batch.ts';

function collect<T>(subject: Subject<T>, op: ReturnType<typeof batch<T>>) {
  const batches: T[][] = [];
  const events: string[] = [];
  const subscription = subject.pipe(op).subscribe({
    next: (b) => batches.push(b),
    error: (e: Error) => events.push(`error: ${e.message}`),
    complete: () => events.push('complete'),
  });
  return { batches, events, subscription };
}

describe('batch by count and bytes', () => {
  it('cuts batches at exactly maxCount and flushes the remainder on complete', async () => {
    const out = await firstValueFrom(from([1, 2, 3, 4, 5, 6, 7]).pipe(batch({ maxCount: 3 }), toArray()));
    expect(out).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
  });

  it('emits no empty batch when the source ends on a boundary or is empty', async () => {
    expect(await firstValueFrom(of(1, 2).pipe(batch({ maxCount: 2 }), toArray()))).toEqual([[1, 2]]);
    expect(await firstValueFrom(EMPTY.pipe(batch({ maxCount: 2, maxDelayMs: 10 }), toArray()))).toEqual([]);
  });

  it('keeps each batch within maxBytes, measured as UTF-8 bytes of JSON by default', async () => {
    // JSON of 'aa' is "aa": 4 bytes
    const ascii = await firstValueFrom(from(['aa', 'bb', 'cc', 'dd', 'ee']).pipe(batch({ maxBytes: 10 }), toArray()));
    expect(ascii).toEqual([['aa', 'bb'], ['cc', 'dd'], ['ee']]);
    // JSON of 'é' is 4 UTF-8 bytes (3 UTF-16 units): two would be 8 > 7, so each goes alone
    const accented = await firstValueFrom(from(['é', 'é', 'é']).pipe(batch({ maxBytes: 7 }), toArray()));
    expect(accented).toEqual([['é'], ['é'], ['é']]);
  });

  it('sends a single value larger than maxBytes alone, and closes a batch that reaches maxBytes exactly', async () => {
    const sizes = [3, 50, 2, 5, 1];
    const out = await firstValueFrom(from(sizes).pipe(batch({ maxBytes: 5, sizeOf: (n) => n }), toArray()));
    expect(out).toEqual([[3], [50], [2], [5], [1]]);
    const exact = await firstValueFrom(from([2, 3, 1, 1]).pipe(batch({ maxBytes: 5, sizeOf: (n) => n }), toArray()));
    expect(exact).toEqual([[2, 3], [1, 1]]);
  });

  it('closes on whichever of count and bytes comes first', async () => {
    const out = await firstValueFrom(
      from([1, 1, 1, 4, 1]).pipe(batch({ maxCount: 2, maxBytes: 4, sizeOf: (n) => n }), toArray()),
    );
    expect(out).toEqual([[1, 1], [1], [4], [1]]);
  });

  it('forwards an error without flushing the partial batch', async () => {
    const source = concat(of(1, 2, 3), throwError(() => new Error('boom')));
    const seen: number[][] = [];
    await expect(
      new Promise((resolve, reject) => source.pipe(batch({ maxCount: 2 })).subscribe({ next: (b) => seen.push(b), error: reject, complete: () => resolve(undefined) })),
    ).rejects.toThrow('boom');
    expect(seen).toEqual([[1, 2]]);
  });
});

describe('batch by time', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('emits maxDelayMs after the first value of the batch, not the last', () => {
    const subject = new Subject<number>();
    const { batches } = collect(subject, batch<number>({ maxDelayMs: 100 }));
    subject.next(1);
    vi.advanceTimersByTime(60);
    subject.next(2);
    vi.advanceTimersByTime(39);
    expect(batches).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(batches).toEqual([[1, 2]]);
    // the next batch's clock starts with its own first value
    vi.advanceTimersByTime(500);
    expect(batches).toEqual([[1, 2]]);
    subject.next(3);
    vi.advanceTimersByTime(99);
    expect(batches).toEqual([[1, 2]]);
    vi.advanceTimersByTime(1);
    expect(batches).toEqual([[1, 2], [3]]);
  });

  it('restarts the clock when a batch closes by count', () => {
    const subject = new Subject<number>();
    const { batches } = collect(subject, batch<number>({ maxCount: 2, maxDelayMs: 100 }));
    subject.next(1);
    subject.next(2);
    expect(batches).toEqual([[1, 2]]);
    vi.advanceTimersByTime(60);
    subject.next(3);
    vi.advanceTimersByTime(40); // the first batch's timer would have fired here
    expect(batches).toEqual([[1, 2]]);
    vi.advanceTimersByTime(60);
    expect(batches).toEqual([[1, 2], [3]]);
  });

  it('flushes on complete before the delay and leaves no timer behind', () => {
    const subject = new Subject<number>();
    const { batches, events } = collect(subject, batch<number>({ maxDelayMs: 100 }));
    subject.next(1);
    subject.complete();
    expect(batches).toEqual([[1]]);
    expect(events).toEqual(['complete']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('drops the partial batch on error and on unsubscribe', () => {
    const failing = new Subject<number>();
    const failed = collect(failing, batch<number>({ maxDelayMs: 100 }));
    failing.next(1);
    failing.error(new Error('source broke'));
    vi.advanceTimersByTime(200);
    expect(failed.batches).toEqual([]);
    expect(failed.events).toEqual(['error: source broke']);

    const abandoned = new Subject<number>();
    const dropped = collect(abandoned, batch<number>({ maxDelayMs: 100 }));
    abandoned.next(1);
    dropped.subscription.unsubscribe();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(200);
    expect(dropped.batches).toEqual([]);
  });
});

describe('batch options', () => {
  it('refuses to batch without any limit', () => {
    expect(() => batch({})).toThrow(/at least one of maxCount, maxBytes, maxDelayMs/);
    expect(() => batch({ sizeOf: () => 1 })).toThrow(/no limit/);
  });

  it('rejects nonsensical limits', () => {
    expect(() => batch({ maxCount: 0 })).toThrow(/maxCount must be a positive integer, got 0/);
    expect(() => batch({ maxCount: 2.5 })).toThrow(/maxCount/);
    expect(() => batch({ maxBytes: -1 })).toThrow(/maxBytes/);
    expect(() => batch({ maxDelayMs: Number.NaN })).toThrow(/maxDelayMs/);
  });
});
