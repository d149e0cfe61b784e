// gzip is off by default on loopback (it only costs CPU there); asked for, it must still work on the old server.
import { afterAll, describe, expect, it } from 'vitest';
import { openServerStore, type ServerStore } from '../../runtime/clickhouse/server-store.ts';

const url = process.env.SLUICE_TEST_CLICKHOUSE_URL!;
const database = `sluice_test_gzip_${process.pid}`;
let store: ServerStore | undefined;
afterAll(async () => {
  await store?.command(`DROP DATABASE IF EXISTS ${database}`);
  await store?.close();
});

describe('server store with gzip', () => {
  it('inserts and reads back with compressed requests and responses', async () => {
    store = await openServerStore({ url, database, compression: true });
    await store.command(`CREATE TABLE ${database}.t (k UInt32, s String) ENGINE = MergeTree ORDER BY k`);
    const rows = Array.from({ length: 5000 }, (_, k) => ({ k, s: `row ${k} ${'x'.repeat(k % 50)}` }));
    await store.insert(`${database}.t`, rows);
    const [sum] = await store.query<{ n: string; total: string }>(`SELECT count() AS n, sum(length(s)) AS total FROM ${database}.t`);
    expect(Number(sum!.n)).toBe(5000);
    expect(Number(sum!.total)).toBe(rows.reduce((a, r) => a + r.s.length, 0));
  });
});
