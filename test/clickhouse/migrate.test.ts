import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, MigrationError } from '../../runtime/clickhouse/migrate.ts';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { defineTable } from '../../runtime/clickhouse/table.ts';
import { BACKENDS, openBackend, type Backend } from './backends.ts';

const v1 = defineTable('files', {
  columns: { path: 'String', size: 'UInt64', kind: 'LowCardinality(String)', mtime: "DateTime64(3, 'UTC')" },
  versionColumn: 'mtime',
  orderBy: ['path'],
  partitionBy: 'toYYYYMM(mtime)',
  ttl: "toDateTime(mtime) + INTERVAL 10 YEAR",
});

const v2 = defineTable('files', {
  columns: { ...v1.columns, owner: 'Nullable(String)', tags: 'Array(LowCardinality(String))', mode: 'UInt32' },
  versionColumn: 'mtime',
  orderBy: ['path'],
  partitionBy: 'toYYYYMM(mtime)',
});

describe.each(BACKENDS)('migrate on %s', (kind) => {
  let backend: Backend;
  let store: ClickHouseStore;
  beforeAll(async () => {
    backend = await openBackend(kind, 'migrate');
    store = backend.store;
  });
  afterAll(async () => {
    await backend?.cleanup();
  });

  const columnsOf = async (table: string) =>
    (await store.query<{ name: string; type: string }>(`DESCRIBE TABLE ${table}`)).map(({ name, type }) => ({ name, type }));

  it('creates a missing table, adapted to the server', async () => {
    const report = await migrate(store, [v1]);
    expect(report.summary).toEqual([`created ${store.database}.files`]);
    expect(report.actions[0]).toMatchObject({ action: 'created', table: `${store.database}.files` });
    const columns = await columnsOf('files');
    if (kind === 'server') {
      // 18.16: no LowCardinality, no DateTime64, no TTL
      expect(columns).toEqual([
        { name: 'path', type: 'String' },
        { name: 'size', type: 'UInt64' },
        { name: 'kind', type: 'String' },
        { name: 'mtime', type: "DateTime('UTC')" },
      ]);
      expect(report.notes.join('\n')).toMatch(/kind: LowCardinality\(String\) stored as String/);
      expect(report.notes.join('\n')).toMatch(/TTL .* left out/);
    } else {
      expect(columns.map((c) => c.type)).toEqual(['String', 'UInt64', 'LowCardinality(String)', "DateTime64(3, 'UTC')"]);
      expect(report.notes).toEqual([]);
    }
    // the same definition again: nothing to do, though 18.16 reports String for LowCardinality(String)
    expect((await migrate(store, [v1])).actions).toEqual([{ table: `${store.database}.files`, action: 'unchanged' }]);
  });

  it('adds missing columns to a table with rows, keeping the rows', async () => {
    await store.insert('files', [
      { path: '/a', size: 2n ** 60n, kind: 'file', mtime: new Date('2024-05-01T10:00:00Z') },
      { path: '/b', size: 1, kind: 'dir', mtime: new Date('2024-05-02T10:00:00Z') },
    ]);
    const report = await migrate(store, [v2]);
    const tags = kind === 'server' ? 'Array(String)' : 'Array(LowCardinality(String))';
    expect(report.summary).toEqual([
      `added column ${store.database}.files.owner Nullable(String)`,
      `added column ${store.database}.files.tags ${tags}`,
      `added column ${store.database}.files.mode UInt32`,
    ]);
    expect(await store.query('SELECT path, size, kind, owner, tags, mode FROM files ORDER BY path')).toEqual([
      { path: '/a', size: String(2n ** 60n), kind: 'file', owner: null, tags: [], mode: 0 },
      { path: '/b', size: '1', kind: 'dir', owner: null, tags: [], mode: 0 },
    ]);
    await store.insert('files', [{ path: '/c', size: 3, kind: 'file', mtime: new Date(), owner: 'root', tags: ['x'], mode: 0o644 }]);
    expect(await store.query("SELECT owner, tags, mode FROM files WHERE path = '/c'")).toEqual([{ owner: 'root', tags: ['x'], mode: 420 }]);
    expect((await migrate(store, [v2])).summary).toEqual([]);
  });

  it('refuses a type change, saying what differs and how to migrate by hand, and changes nothing', async () => {
    const v3 = defineTable('files', {
      columns: { ...v2.columns, size: 'String' },
      versionColumn: 'mtime',
      orderBy: ['path'],
      partitionBy: 'toYYYYMM(mtime)',
    });
    const err = await migrate(store, [v3]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    const message = (err as MigrationError).message;
    expect(message).toContain(`table ${store.database}.files differs from its definition`);
    expect(message).toContain('column size is UInt64, the definition says String');
    expect(message).toContain(`ALTER TABLE \`${store.database}\`.\`files\` MODIFY COLUMN \`size\` String;`);
    expect(message).toMatch(/CREATE TABLE IF NOT EXISTS `[^`]+`\.`files_new`/);
    expect(message).toContain('CAST(`size` AS String) AS `size`');
    expect(message).toMatch(/RENAME TABLE .*`files` TO .*`files_old`, .*`files_new` TO .*`files`;/);
    expect((err as MigrationError).kind).toBe('fatal');
    expect((await columnsOf('files')).find((c) => c.name === 'size')!.type).toBe('UInt64');
    expect(await store.query<{ n: string }>('SELECT count() AS n FROM files')).toEqual([{ n: '3' }]);
  });

  it('refuses a new ORDER BY column, another sorting key and another engine', async () => {
    const keyed = defineTable('files', {
      columns: { ...v2.columns, inode: 'UInt64' },
      versionColumn: 'mtime',
      orderBy: ['inode', 'path'],
      partitionBy: 'toYYYYMM(mtime)',
    });
    const err = (await migrate(store, [keyed]).catch((e: unknown) => e)) as MigrationError;
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.differences).toContain('ORDER BY column inode missing from the table (a sorting key cannot be extended with a new column in place)');
    expect(err.differences).toContain('ORDER BY is (path), the definition says (inode, path)');
    expect(err.manualSteps).not.toContain('MODIFY COLUMN');
    expect((await columnsOf('files')).map((c) => c.name)).not.toContain('inode');

    const plain = defineTable('files', { columns: v2.columns, engine: 'MergeTree', orderBy: ['path'], partitionBy: 'toYYYYMM(mtime)' });
    const engineErr = (await migrate(store, [plain]).catch((e: unknown) => e)) as MigrationError;
    expect(engineErr.differences).toEqual(['engine is ReplacingMergeTree, the definition says MergeTree']);
    expect(engineErr.manualSteps).toContain('ENGINE = MergeTree()');
  });

  it('leaves columns the definition does not have, and says so', async () => {
    const report = await migrate(store, [defineTable('files', { columns: { path: 'String', mtime: "DateTime64(3, 'UTC')" }, versionColumn: 'mtime', orderBy: ['path'], partitionBy: 'toYYYYMM(mtime)' })]);
    expect(report.summary).toEqual([]);
    expect(report.notes).toContain(`${store.database}.files.size is not in the definition: kept`);
  });
});
