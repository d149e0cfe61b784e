import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClickHouseRunStore } from '../../runtime/clickhouse/run-store.ts';
import type { RunRecord } from '../../runtime/run-record.ts';
import { BACKENDS, openBackend, type Backend } from './backends.ts';

function record(id: string, pipeline: string, startedAt: string, extra: Partial<RunRecord> = {}): RunRecord {
  return {
    id,
    pipeline,
    params: { root: '/srv/repo', limit: 10, tags: ['a', 'b'] },
    trigger: 'cli',
    status: 'running',
    startedAt,
    counts: {
      items: 0, itemsDone: 0, records: 0, bytes: 0, recordsBySink: {},
      errors: { transient: 0, permanent: 0, fatal: 0 }, skipped: 0, deadLettered: 0, retries: 0,
    },
    errors: [],
    ...extra,
  };
}

describe.each(BACKENDS)('run records on %s', (kind) => {
  let backend: Backend;
  let runs: ClickHouseRunStore;
  beforeAll(async () => {
    backend = await openBackend(kind, 'runs');
    runs = new ClickHouseRunStore(backend.store);
  });
  afterAll(async () => {
    await backend?.cleanup();
  });

  it('lists nothing before any run, creating its table', async () => {
    expect(await runs.list()).toEqual([]);
    expect(await runs.get('nope')).toBeUndefined();
    expect(await backend.store.query("SELECT name FROM system.tables WHERE name = 'sluice_runs' AND database = currentDatabase()")).toEqual([{ name: 'sluice_runs' }]);
  });

  it('keeps the last save of each run and lists runs newest first', async () => {
    const first = record('20240501T100000-aaaa', 'inventory', '2024-05-01T10:00:00.000Z');
    await runs.save(first);
    await runs.save({
      ...first,
      status: 'succeeded',
      endedAt: '2024-05-01T10:00:07.000Z',
      durationMs: 7000,
      counts: { ...first.counts, items: 3, itemsDone: 3, records: 12, bytes: 2048, recordsBySink: { clickhouse: 12 } },
    });
    await runs.save(record('20240502T090000-bbbb', 'cvmfs', '2024-05-02T09:00:00.000Z', { trigger: 'amqp', triggerId: 'msg-42' }));
    await runs.save(
      record('20240503T080000-cccc', 'inventory', '2024-05-03T08:00:00.000Z', {
        status: 'failed',
        params: { big: 2n ** 64n - 1n },
        errors: [{ item: '/srv/a "b"\nc', kind: 'permanent', message: 'Unknown field: nope ☃', component: 'sink clickhouse' }],
      }),
    );

    const all = await runs.list();
    expect(all.map((r) => [r.id, r.status])).toEqual([
      ['20240503T080000-cccc', 'failed'],
      ['20240502T090000-bbbb', 'running'],
      ['20240501T100000-aaaa', 'succeeded'],
    ]);
    expect(all[2]).toEqual({
      ...first,
      status: 'succeeded',
      endedAt: '2024-05-01T10:00:07.000Z',
      durationMs: 7000,
      counts: { ...first.counts, items: 3, itemsDone: 3, records: 12, bytes: 2048, recordsBySink: { clickhouse: 12 } },
    });
    expect(all[1]).toMatchObject({ trigger: 'amqp', triggerId: 'msg-42' });
    expect(all[0]!.params).toEqual({ big: '18446744073709551615' });
    expect(all[0]!.errors).toEqual([{ item: '/srv/a "b"\nc', kind: 'permanent', message: 'Unknown field: nope ☃', component: 'sink clickhouse' }]);

    expect((await runs.list({ pipeline: 'inventory' })).map((r) => r.id)).toEqual(['20240503T080000-cccc', '20240501T100000-aaaa']);
    expect((await runs.list({ limit: 1 })).map((r) => r.id)).toEqual(['20240503T080000-cccc']);
    expect((await runs.get('20240501T100000-aaaa'))?.status).toBe('succeeded');
  });

  it('a second store on the same database sees the same runs', async () => {
    const again = new ClickHouseRunStore(backend.store);
    expect((await again.list({ limit: 10 })).length).toBe(3);
  });
});
