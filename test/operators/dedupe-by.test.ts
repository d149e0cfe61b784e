import { from, lastValueFrom, toArray } from 'rxjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { dedupeBy } from '../../operators/dedupe-by.ts';

const run = <T>(values: T[], op: ReturnType<typeof dedupeBy<T>>) => lastValueFrom(from(values).pipe(op, toArray()));
const self = (s: string) => s;

describe('dedupeBy', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('drops values whose key already passed', async () => {
    const rows = [
      { sha: 'aa', path: '/x' },
      { sha: 'bb', path: '/y' },
      { sha: 'aa', path: '/z' },
    ];
    expect(await run(rows, dedupeBy((r) => r.sha))).toEqual([rows[0], rows[1]]);
    expect(await run(['a', 'b', 'a', 'c', 'b', 'c'], dedupeBy(self))).toEqual(['a', 'b', 'c']);
  });

  it('forgets the least recently seen key beyond maxKeys', async () => {
    // a, b, then c evicts a: a passes again
    expect(await run(['a', 'b', 'c', 'a'], dedupeBy(self, { maxKeys: 2 }))).toEqual(['a', 'b', 'c', 'a']);
    // seeing a again refreshes it, so c evicts b instead
    expect(await run(['a', 'b', 'a', 'c', 'a', 'b'], dedupeBy(self, { maxKeys: 2 }))).toEqual(['a', 'b', 'c', 'b']);
  });

  it('lets a key through again once ttlMs has passed since it last passed', async () => {
    vi.useFakeTimers();
    const op = dedupeBy(self, { ttlMs: 100 });
    expect(await run(['a'], op)).toEqual(['a']);
    vi.advanceTimersByTime(60);
    expect(await run(['a'], op)).toEqual([]);
    vi.advanceTimersByTime(39);
    expect(await run(['a'], op)).toEqual([]); // the drop at 60 ms did not restart the window
    vi.advanceTimersByTime(1);
    expect(await run(['a', 'a'], op)).toEqual(['a']);
  });

  it('shares what it has seen across separate subscriptions of the same instance', async () => {
    const op = dedupeBy(self);
    expect(await run(['a', 'b'], op)).toEqual(['a', 'b']);
    expect(await run(['b', 'c', 'a'], op)).toEqual(['c']);
    // a new call starts with nothing seen
    expect(await run(['a'], dedupeBy(self))).toEqual(['a']);
  });

  it('rejects bad bounds', () => {
    expect(() => dedupeBy(self, { maxKeys: 0 })).toThrow(/maxKeys must be a positive integer, got 0/);
    expect(() => dedupeBy(self, { ttlMs: -5 })).toThrow(/ttlMs must be a number > 0/);
  });
});
