import { describe, expect, expectTypeOf, it } from 'vitest';
import { FatalError } from '../../runtime/errors.ts';
import type { StoreFeatures } from '../../runtime/clickhouse/store.ts';
import { adaptColumnType, createTableSql, defineTable, runsTable, type ClickHouseValue, type RowOf } from '../../runtime/clickhouse/table.ts';
import { featuresFor, parseVersion } from '../../runtime/clickhouse/version.ts';

const OLD: StoreFeatures = featuresFor(parseVersion('18.16.1'));
const NEW: StoreFeatures = featuresFor(parseVersion('26.7.2.1'));

const files = defineTable('files', {
  columns: {
    path: 'String',
    size: 'UInt64',
    mode: 'UInt32',
    mtime: "DateTime('UTC')",
    ctime: 'DateTime64(3)',
    day: 'Date',
    kind: 'LowCardinality(String)',
    owner: 'Nullable(String)',
    tags: 'Array(LowCardinality(String))',
    matrix: 'Array(Array(Nullable(Int64)))',
    attrs: 'Map(String, Array(UInt8))',
    ok: 'Bool',
    id: 'UUID',
    state: "Enum8('new' = 1, 'gone' = 2)",
    digest: 'FixedString(32)',
    price: 'Decimal(10, 2)',
    ratio: 'Float64',
  },
  versionColumn: 'mtime',
  orderBy: ['path', 'mtime'],
  partitionBy: 'toYYYYMM(mtime)',
  ttl: 'mtime + INTERVAL 90 DAY',
  settings: { index_granularity: 8192, non_replicated_deduplication_window: 100 },
});

describe('row types from ClickHouse type strings (checked by tsc)', () => {
  it('maps each type to its JavaScript value', () => {
    type File = RowOf<typeof files>;
    expectTypeOf<File['path']>().toEqualTypeOf<string>();
    expectTypeOf<File['size']>().toEqualTypeOf<bigint | number | string>();
    expectTypeOf<File['mode']>().toEqualTypeOf<number>();
    expectTypeOf<File['mtime']>().toEqualTypeOf<Date | string | number>();
    expectTypeOf<File['ctime']>().toEqualTypeOf<Date | string | number>();
    expectTypeOf<File['kind']>().toEqualTypeOf<string>();
    expectTypeOf<File['owner']>().toEqualTypeOf<string | null>();
    expectTypeOf<File['tags']>().toEqualTypeOf<string[]>();
    expectTypeOf<File['matrix']>().toEqualTypeOf<(bigint | number | string | null)[][]>();
    expectTypeOf<File['attrs']>().toEqualTypeOf<Record<string, number[]>>();
    expectTypeOf<File['ok']>().toEqualTypeOf<boolean | number>();
    expectTypeOf<File['state']>().toEqualTypeOf<string>();
    expectTypeOf<File['price']>().toEqualTypeOf<number | string>();
    expectTypeOf<ClickHouseValue<'Nullable(Array(LowCardinality(Nullable(String))))'>>().toEqualTypeOf<(string | null)[] | null>();

    const row: File = {
      path: '/a', size: 2n ** 60n, mode: 420, mtime: new Date(), ctime: '2024-01-01 00:00:00.000', day: 19000, kind: 'file',
      owner: null, tags: ['x'], matrix: [[1n, null]], attrs: { a: [1] }, ok: true, id: '00000000-0000-0000-0000-000000000000',
      state: 'new', digest: 'x', price: '1.50', ratio: 0.5,
    };
    // @ts-expect-error a number where the column is a String
    const wrongType: File = { ...row, path: 1 };
    // @ts-expect-error null in a column that is not Nullable
    const notNullable: File = { ...row, size: null };
    // @ts-expect-error one level of arrays where Array(Array(Nullable(Int64))) wants two
    const wrongNesting: File = { ...row, matrix: [1n] };
    // @ts-expect-error a missing column
    const missing: File = { path: '/a' };
    expect([row, wrongType, notNullable, wrongNesting, missing]).toHaveLength(5);
  });

  it('rejects unknown type strings and ORDER BY columns that do not exist', () => {
    // @ts-expect-error "Strng" is not a ClickHouse type
    expect(() => defineTable('x', { columns: { a: 'Strng' }, orderBy: [] })).not.toThrow();
    // @ts-expect-error unknown inside an Array
    expect(() => defineTable('x', { columns: { a: 'Array(Foo)' }, orderBy: [] })).not.toThrow();
    // @ts-expect-error ORDER BY a column the table does not have
    expect(() => defineTable('x', { columns: { a: 'String' }, orderBy: ['b'] })).toThrow('table x: ORDER BY column "b" is not one of its columns');
    // @ts-expect-error a version column the table does not have
    expect(() => defineTable('x', { columns: { a: 'String' }, orderBy: ['a'], versionColumn: 'v' })).toThrow(/version column "v"/);
    expect(() => defineTable('x', { columns: { a: 'UInt64' }, engine: 'MergeTree', orderBy: ['a'], versionColumn: 'a' })).toThrow(/needs the ReplacingMergeTree engine/);
  });
});

describe('createTableSql', () => {
  it('writes the definition as it is for a server that has every feature', () => {
    const sql = createTableSql(defineTable('t', {
      columns: { a: 'String', v: 'UInt64', lc: 'LowCardinality(String)', at: 'DateTime64(3)', b: 'Bool' },
      versionColumn: 'v',
      orderBy: ['a'],
      partitionBy: 'toYYYYMM(at)',
      ttl: 'toDateTime(at) + INTERVAL 1 DAY',
      settings: { non_replicated_deduplication_window: 100 },
    }), 'sluice', NEW);
    expect(sql).toBe(
      [
        'CREATE TABLE IF NOT EXISTS `sluice`.`t`',
        '(',
        '    `a` String,',
        '    `v` UInt64,',
        '    `lc` LowCardinality(String),',
        '    `at` DateTime64(3),',
        '    `b` Bool',
        ')',
        'ENGINE = ReplacingMergeTree(`v`)',
        'PARTITION BY toYYYYMM(at)',
        'ORDER BY (`a`)',
        'TTL toDateTime(at) + INTERVAL 1 DAY',
        'SETTINGS non_replicated_deduplication_window = 100',
      ].join('\n'),
    );
  });

  it('adapts to 18.16: no LowCardinality, DateTime64, Bool, TTL or dedup window', () => {
    const t = defineTable('t', {
      columns: { a: 'String', lc: 'Array(LowCardinality(Nullable(String)))', at: "DateTime64(6, 'Europe/Zurich')", b: 'Bool' },
      engine: 'MergeTree',
      orderBy: [],
      ttl: 'at + INTERVAL 1 DAY',
      settings: { non_replicated_deduplication_window: 100, index_granularity: 1024 },
    });
    expect(createTableSql(t, 'db', OLD)).toBe(
      [
        'CREATE TABLE IF NOT EXISTS `db`.`t`',
        '(',
        '    `a` String,',
        '    `lc` Array(Nullable(String)),',
        "    `at` DateTime('Europe/Zurich'),",
        '    `b` UInt8',
        ')',
        'ENGINE = MergeTree()',
        'ORDER BY tuple()',
        'SETTINGS index_granularity = 1024',
      ].join('\n'),
    );
  });

  it('refuses Map and 128-bit integers on a server without them, naming the column and the version needed', () => {
    expect(() => createTableSql(files, 'sluice', OLD)).toThrow(FatalError);
    expect(() => createTableSql(files, 'sluice', OLD)).toThrow('table files, column attrs: type Map(String, Array(UInt8)) needs ClickHouse 22.1 or later');
    expect(() => adaptColumnType('Nullable(UInt128)', OLD)).toThrow(/needs ClickHouse 21\.8 or later/);
    expect(adaptColumnType('Nullable(UInt128)', NEW)).toBe('Nullable(UInt128)');
  });

  it('has a run records table keyed by id, replaced by version', () => {
    expect(createTableSql(runsTable, 'sluice', OLD)).toContain('ENGINE = ReplacingMergeTree(`version`)\nORDER BY (`id`)');
    expect(createTableSql(runsTable, 'sluice', OLD)).toContain("`started_at` DateTime('UTC')");
    expect(createTableSql(runsTable, 'sluice', NEW)).toContain("`started_at` DateTime64(3, 'UTC')");
  });
});
