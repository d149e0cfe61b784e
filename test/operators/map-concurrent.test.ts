import { from, lastValueFrom, range, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { mapConcurrent } from '../../operators/map-concurrent.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Promises the test settles by hand, in the order it chooses. */
function manualCalls<R>() {
  const pending = new Map<number, { resolve: (r: R) => void; reject: (e: unknown) => void }>();
  const fn = (_value: unknown, index: number) =>
    new Promise<R>((resolve, reject) => pending.set(index, { resolve, reject }));
  return { fn, pending };
}

const flushPromises = () => new Promise((resolve) => setImmediate(resolve));

describe('mapConcurrent', () => {
  it.each([false, true])('never runs more than `concurrency` calls at once (ordered: %s)', async (ordered) => {
    let running = 0;
    let peak = 0;
    const out = await lastValueFrom(
      range(0, 30).pipe(
        mapConcurrent(
          async (n) => {
            running += 1;
            peak = Math.max(peak, running);
            await sleep(1 + ((n * 7) % 5));
            running -= 1;
            return n * 10;
          },
          4,
          { ordered },
        ),
        toArray(),
      ),
    );
    expect(peak).toBe(4);
    expect([...out].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, n) => n * 10));
  });

  it('emits as calls finish when not ordered', async () => {
    const { fn, pending } = manualCalls<string>();
    const out: string[] = [];
    const done = lastValueFrom(from(['a', 'b', 'c']).pipe(mapConcurrent(fn, 3), toArray()));
    for (const index of [2, 0, 1]) {
      pending.get(index)!.resolve(['a', 'b', 'c'][index]);
      await flushPromises();
    }
    out.push(...(await done));
    expect(out).toEqual(['c', 'a', 'b']);
  });

  it('keeps input order when ordered, however the calls finish', async () => {
    const { fn, pending } = manualCalls<string>();
    const seen: string[] = [];
    const done = new Promise<void>((resolve, reject) =>
      from(['a', 'b', 'c']).pipe(mapConcurrent(fn, 3, { ordered: true })).subscribe({ next: (v) => seen.push(v), error: reject, complete: resolve }),
    );
    pending.get(2)!.resolve('c');
    pending.get(1)!.resolve('b');
    await flushPromises();
    expect(seen).toEqual([]); // 'a' still running, so 'b' and 'c' wait
    pending.get(0)!.resolve('a');
    await done;
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it('holds at most `concurrency` finished-but-waiting results in ordered mode', async () => {
    const { fn, pending } = manualCalls<number>();
    const seen: number[] = [];
    from([0, 1, 2, 3, 4, 5]).pipe(mapConcurrent(fn, 2, { ordered: true })).subscribe((v) => seen.push(v));
    expect([...pending.keys()]).toEqual([0, 1]);
    pending.get(1)!.resolve(1);
    await flushPromises();
    // 1 is done but 0 is not: 1 keeps its slot, so no third call starts
    expect([...pending.keys()]).toEqual([0, 1]);
    pending.get(0)!.resolve(0);
    await flushPromises();
    expect(seen).toEqual([0, 1]);
    expect([...pending.keys()]).toEqual([0, 1, 2, 3]);
  });

  it('passes the index and accepts synchronous results', async () => {
    const out = await lastValueFrom(from(['x', 'y']).pipe(mapConcurrent((v, i) => `${v}${i}`, 1), toArray()));
    expect(out).toEqual(['x0', 'y1']);
  });

  it.each([false, true])('errors when fn throws or rejects (ordered: %s)', async (ordered) => {
    const throwing = (n: number) => {
      if (n === 2) throw new Error('cannot parse item 2');
      return n;
    };
    await expect(lastValueFrom(range(0, 5).pipe(mapConcurrent(throwing, 2, { ordered })))).rejects.toThrow('cannot parse item 2');
    const rejecting = async (n: number) => {
      if (n === 3) throw new Error('fetch of item 3 failed');
      return n;
    };
    await expect(lastValueFrom(range(0, 5).pipe(mapConcurrent(rejecting, 2, { ordered })))).rejects.toThrow('fetch of item 3 failed');
  });

  it('rejects a concurrency that is not a positive integer', () => {
    const id = (n: number) => n;
    expect(() => mapConcurrent(id, 0)).toThrow(/concurrency must be a positive integer, got 0/);
    expect(() => mapConcurrent(id, -1)).toThrow(/positive integer/);
    expect(() => mapConcurrent(id, 1.5)).toThrow(/positive integer/);
    expect(() => mapConcurrent(id, Number.NaN)).toThrow(/positive integer/);
    expect(() => mapConcurrent(id, Infinity)).toThrow(/positive integer/);
  });
});
