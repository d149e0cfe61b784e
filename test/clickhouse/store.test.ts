import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FatalError, PermanentError, TransientError } from '../../runtime/errors.ts';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import { openServerStore, ServerStore } from '../../runtime/clickhouse/server-store.ts';
import {
  clickHouseErrorKind,
  jsonEachRowChunks,
  parseClickHouseException,
  splitTableName,
  type ClickHouseStore,
} from '../../runtime/clickhouse/store.ts';
import { BACKENDS, closedPort, openBackend, serverUrl, type Backend } from './backends.ts';

const TABLE = `CREATE TABLE IF NOT EXISTS roundtrip (
  id UInt32,
  big UInt64,
  signed Int64,
  name String,
  tags Array(String),
  nested Array(Array(UInt64)),
  note Nullable(String),
  at DateTime('UTC'),
  day Date,
  ratio Float64
) ENGINE = MergeTree ORDER BY id`;

const NAMES = ['plain', 'ünïcødé ☃ 𝄞 名前', 'quote " and \' and `', 'new\nline\r\nand\ttab', 'back\\slash \\n not a newline', '', '{"json":"inside"}'];

function makeRow(i: number) {
  return {
    id: i,
    big: 2n ** 63n + BigInt(i) * 1_000_003n, // far above 2^53
    signed: -(2n ** 62n) - BigInt(i),
    name: `${NAMES[i % NAMES.length]} #${i}`,
    tags: i % 5 === 0 ? [] : [`t${i % 3}`, `"${i}"`],
    nested: [[BigInt(i), 2n ** 64n - 1n], []],
    note: i % 3 === 0 ? null : `note ${i}`,
    at: i % 2 ? new Date(Date.UTC(2024, 0, 1) + i * 61_000) : Math.floor(Date.UTC(2024, 0, 1) / 1000) + i * 61,
    day: new Date(Date.UTC(2024, 0, 1) + (i % 400) * 86_400_000),
    ratio: i / 8, // exact: 18.16 parses some decimals 1 ulp off (its fast float parser)
  };
}

/** What ClickHouse gives back for a row: 64-bit integers as strings, times as UTC text. */
function expected(i: number) {
  const row = makeRow(i);
  const ms = Date.UTC(2024, 0, 1) + i * 61_000;
  return {
    id: i,
    big: row.big.toString(),
    signed: row.signed.toString(),
    name: row.name,
    tags: row.tags,
    nested: row.nested.map((a) => a.map(String)),
    note: row.note,
    at: new Date(ms).toISOString().replace('T', ' ').slice(0, 19),
    day: row.day.toISOString().slice(0, 10),
    ratio: row.ratio,
  };
}

describe.each(BACKENDS)('%s store', (kind) => {
  let backend: Backend;
  let store: ClickHouseStore;
  beforeAll(async () => {
    backend = await openBackend(kind, 'store');
    store = backend.store;
    await store.command(TABLE);
  });
  afterAll(async () => {
    await backend?.cleanup();
  });

  it('knows its kind, database and version', async () => {
    expect(store.kind).toBe(kind);
    expect((await store.query<{ db: string }>('SELECT currentDatabase() AS db'))[0]!.db).toBe(store.database);
    const version = await store.version();
    expect(version.major).toBe(kind === 'server' ? 18 : 26);
    expect(store.description).toContain(kind === 'server' ? serverUrl() : backend.dir!);
  });

  it('writes 10k rows and reads them back exactly (UInt64 above 2^53, unicode, quotes, newlines, arrays, nullable, DateTime)', async () => {
    await store.command('TRUNCATE TABLE roundtrip');
    const rows = Array.from({ length: 10_000 }, (_, i) => makeRow(i));
    await store.insert('roundtrip', rows);
    const back = await store.query<Record<string, unknown>>('SELECT * FROM roundtrip ORDER BY id');
    expect(back).toHaveLength(10_000);
    for (let i = 0; i < back.length; i++) {
      if (JSON.stringify(back[i]) !== JSON.stringify(expected(i))) expect(back[i]).toEqual(expected(i)); // one readable diff
    }
    const sums = await store.query<{ s: string }>('SELECT toString(sum(big)) AS s FROM roundtrip');
    const total = rows.reduce((acc, r) => acc + r.big, 0n) % 2n ** 64n;
    expect(sums[0]!.s).toBe(total.toString());
  });

  it('streams an async source in bounded chunks and writes every row', async () => {
    await store.command('TRUNCATE TABLE roundtrip');
    let pulled = 0;
    async function* source() {
      for (let i = 0; i < 30_000; i++) {
        pulled++;
        yield makeRow(i);
      }
    }
    await store.insert('roundtrip', source());
    expect(pulled).toBe(30_000);
    expect((await store.query<{ n: string }>('SELECT count() AS n FROM roundtrip'))[0]!.n).toBe('30000');
  });

  it('writes only the given columns, and nothing for no rows', async () => {
    await store.command('TRUNCATE TABLE roundtrip');
    await store.insert('roundtrip', []);
    await store.insert(`${store.database}.roundtrip`, [{ id: 1, name: 'x', extra: 'left out' }], { columns: ['id', 'name'] });
    expect(await store.query('SELECT id, name, big, note FROM roundtrip')).toEqual([{ id: 1, name: 'x', big: '0', note: null }]);
  });

  it('an unknown column is a PermanentError with the server message and the table', async () => {
    const err = await store.insert('roundtrip', [{ id: 1, nope: 2 }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    const message = (err as Error).message;
    expect(message).toMatch(/Unknown field found while parsing JSONEachRow format: nope/);
    expect(message).toContain(`insert into ${store.database}.roundtrip`);
    expect(message).toContain(store.description);
    expect(message).not.toContain('\n');
  });

  it('an unknown column in a query, a bad value, a missing table and a syntax error are permanent', async () => {
    const cases: [() => Promise<unknown>, RegExp][] = [
      [() => store.query('SELECT nope FROM roundtrip'), /nope/],
      [() => store.insert('roundtrip', [{ id: 'abc' }]), /Cannot parse input/],
      [() => store.insert('missing_table', [{ id: 1 }]), /missing_table/],
      [() => store.query('SELEC 1'), /Syntax error/],
    ];
    for (const [run, pattern] of cases) {
      const err = await run().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PermanentError);
      expect((err as Error).message).toMatch(pattern);
    }
  });

  it('an error raised while the result streams is an error, not a truncated result', async () => {
    const err = await store.query('SELECT throwIf(number = 70000) AS x FROM numbers(100000)').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/throwIf|non zero/);
  });

  it("the rows' own failure passes through as it is; an invalid Date names the table", async () => {
    async function* broken() {
      yield makeRow(1);
      throw new Error('source broke');
    }
    await expect(store.insert('roundtrip', broken())).rejects.toThrow(/^source broke$/);
    const err = await store.insert('roundtrip', [{ id: 1, at: new Date('nonsense') }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(new RegExp(`insert into ${store.database}\\.roundtrip: column "at": invalid Date`));
  });

  it('runs a statement with settings, and leaves none behind', async () => {
    await store.command('TRUNCATE TABLE roundtrip');
    await store.command('INSERT INTO roundtrip (id) SELECT toUInt32(number) FROM numbers(10)', { max_insert_block_size: 3 });
    expect((await store.query<{ n: string }>('SELECT count() AS n FROM roundtrip'))[0]!.n).toBe('10');
    const setting = await store.query<{ changed: number }>("SELECT changed FROM system.settings WHERE name = 'max_insert_block_size'");
    expect(Number(setting[0]!.changed)).toBe(0);
  });

  it.runIf(kind === 'embedded')('loads a big insert in parts, each with its own deduplication token, so a retry adds nothing', async () => {
    const small = await openEmbeddedStore({ dir: backend.dir!, insertFileBytes: 64 * 1024 });
    try {
      await small.command('CREATE TABLE dedup (id UInt32, pad String) ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100');
      const rows = Array.from({ length: 30_000 }, (_, i) => ({ id: i, pad: 'x'.repeat(100) })); // ~3.6 MB: 4 loads
      await small.insert('dedup', rows, { settings: { insert_deduplication_token: 'batch-1' } });
      expect(await small.query('SELECT count() AS n, uniqExact(id) AS u FROM dedup')).toEqual([{ n: '30000', u: '30000' }]);
      await small.insert('dedup', rows, { settings: { insert_deduplication_token: 'batch-1' } }); // the same batch again
      expect(await small.query('SELECT count() AS n FROM dedup')).toEqual([{ n: '30000' }]);
    } finally {
      await small.close();
    }
    expect(await store.query('SELECT count() AS n FROM dedup')).toEqual([{ n: '30000' }]); // the first store still works
  });

  it.runIf(kind === 'embedded')('refuses a second directory in the same process with a FatalError, and keeps the first', async () => {
    const other = await mkdtemp(path.join(os.tmpdir(), 'sluice-store-other-'));
    try {
      const err = await openEmbeddedStore({ dir: other }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FatalError);
      expect((err as Error).message).toMatch(/^cannot open the embedded ClickHouse at .*: .*one process can have only one embedded store directory open\)$/);
      expect(await store.query('SELECT 1 AS x')).toEqual([{ x: 1 }]);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('gives text in a ClickHouse format', async () => {
    expect(await store.queryText("SELECT 1 AS a, 'x,y' AS b", 'CSVWithNames')).toBe('"a","b"\n1,"x,y"\n');
  });
});

describe('server store failures', () => {
  it('a server that is down is a TransientError naming the URL and the table', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const err = await openServerStore({ url }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toContain(`ClickHouse server ${url}`);
    expect((err as Error).message).toMatch(/connection refused/);

    const store = new ServerStore({ url, database: 'sluice' });
    const insertErr = await store.insert('events', [{ a: 1 }]).catch((e: unknown) => e);
    await store.close();
    expect(insertErr).toBeInstanceOf(TransientError);
    expect((insertErr as Error).message).toContain(`ClickHouse server ${url}: insert into sluice.events`);
  });

  it('a request without an answer in time is transient', async () => {
    const store = await openServerStore({ url: serverUrl(), database: 'default', requestTimeoutMs: 300 });
    try {
      const err = await store.query('SELECT sleep(2)').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TransientError);
      expect((err as Error).message).toMatch(/no answer within 300 ms/);
    } finally {
      await store.close();
    }
  });

  it('bad credentials are fatal, naming the variables to fix, and never show the password', async () => {
    for (const options of [
      { url: serverUrl(), user: 'nobody', password: 's3cret' },
      { url: serverUrl().replace('://', '://default:s3cret@') },
    ]) {
      const err = await openServerStore(options).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FatalError);
      const text = `${(err as FatalError).message} ${(err as FatalError).hint}`;
      expect(text).toMatch(/Unknown user nobody|Wrong password/);
      expect(text).toContain('SLUICE_CLICKHOUSE_USER');
      expect(text).toContain('SLUICE_CLICKHOUSE_PASSWORD');
      expect(text).not.toContain('s3cret');
    }
  });
});

describe('exceptions and encoding', () => {
  it('reads ClickHouse exceptions of 18.x, of newer servers and of chDB', () => {
    expect(parseClickHouseException("Code: 60, e.displayText() = DB::Exception: Table x.y doesn't exist., e.what() = DB::Exception\n")).toEqual({
      code: 60,
      type: undefined,
      message: "Table x.y doesn't exist.",
    });
    expect(parseClickHouseException('Code: 47. DB::Exception: Unknown expression identifier `nope` in scope SELECT nope. (UNKNOWN_IDENTIFIER) (version 24.3.1.2672 (official build))')).toEqual({
      code: 47,
      type: 'UNKNOWN_IDENTIFIER',
      message: 'Unknown expression identifier `nope` in scope SELECT nope. (UNKNOWN_IDENTIFIER)',
    });
    expect(parseClickHouseException('Query failed: Code: 62. DB::Exception: Syntax error. (SYNTAX_ERROR)').code).toBe(62);
    expect(parseClickHouseException('{"a":1}\nCode: 395, e.displayText() = DB::Exception: Value passed to \'throwIf\' function is non zero, e.what() = DB::Exception\n')).toMatchObject({ code: 395 });
    expect(parseClickHouseException('<html>502 Bad Gateway</html>')).toEqual({ code: undefined, type: undefined, message: '<html>502 Bad Gateway</html>' });
  });

  it('classifies codes: overload transient, auth fatal, statement and data permanent', () => {
    for (const code of [159, 202, 209, 210, 252, 1000]) expect(clickHouseErrorKind(code)).toBe('transient');
    for (const code of [192, 193, 516, 497]) expect(clickHouseErrorKind(code)).toBe('fatal');
    for (const code of [16, 26, 27, 47, 60, 62, 117]) expect(clickHouseErrorKind(code)).toBe('permanent');
    expect(clickHouseErrorKind(241, 'Memory limit (total) exceeded')).toBe('transient');
    expect(clickHouseErrorKind(241, 'Memory limit (for query) exceeded')).toBe('permanent');
  });

  it('splits table names', () => {
    expect(splitTableName('t', 'sluice')).toEqual({ database: 'sluice', table: 't' });
    expect(splitTableName('db.t', 'sluice')).toEqual({ database: 'db', table: 't' });
    expect(splitTableName('`my.db`.`t``x`', 'sluice')).toEqual({ database: 'my.db', table: 't`x' });
  });

  it('encodes in chunks that end at row boundaries, pulling rows only as chunks are taken', async () => {
    let pulled = 0;
    function* rows() {
      for (let i = 0; i < 100_000; i++) {
        pulled++;
        yield { i, s: 'x'.repeat(50), n: 2n ** 60n };
      }
    }
    const chunks = jsonEachRowChunks(rows(), { chunkBytes: 64 * 1024 });
    const first = await chunks.next();
    expect(first.done).toBe(false);
    expect(pulled).toBeLessThan(1000); // one chunk's worth, not the whole source
    let count = first.value!.toString().split('\n').length - 1;
    for await (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(64 * 1024 + 200);
      expect(chunk[chunk.length - 1]).toBe(10);
      count += chunk.toString().split('\n').length - 1;
    }
    expect(count).toBe(100_000);
  });

  it('writes values JSON.stringify cannot', async () => {
    const text = async (row: Record<string, unknown>, types: Record<string, string> = {}) => {
      const chunks: Buffer[] = [];
      for await (const c of jsonEachRowChunks([row], { columnTypes: async () => new Map(Object.entries(types)) })) chunks.push(c);
      return Buffer.concat(chunks).toString();
    };
    const at = new Date('2024-02-03T04:05:06.789Z');
    expect(await text({ a: 2n ** 64n - 1n, b: undefined, c: [1n], d: NaN, e: -Infinity, m: new Map([['k', 1n]]) })).toBe(
      '{"a":18446744073709551615,"c":[1],"d":"nan","e":"-inf","m":{"k":1}}\n',
    );
    expect(
      await text(
        { d: at, dt: at, d64: at, n: at, arr: [at], s: at },
        { d: 'Date', dt: "DateTime('UTC')", d64: 'DateTime64(6)', n: 'Nullable(DateTime)', arr: 'Array(Date32)', s: 'String' },
      ),
    ).toBe('{"d":"2024-02-03","dt":1706933106,"d64":"1706933106.789000","n":1706933106,"arr":["2024-02-03"],"s":"2024-02-03T04:05:06.789Z"}\n');
  });
});
