/**
 * Bring the store's tables in line with their definitions: create missing tables, add
 * missing columns, and stop with a MigrationError on anything that cannot be done in
 * place — a column whose type differs, a sorting (ORDER BY) key or partition key that
 * differs (including a key column the table lacks), a different engine or version
 * column. The error says what differs and gives the statements to migrate by hand.
 * Nothing is ever dropped or rewritten: columns the table has beyond the definition
 * stay, and are noted.
 *
 * Types are compared after adapting the declared type to the server (`adaptColumnType`:
 * on 18.16 a declared `LowCardinality(String)` is created as `String`), ignoring
 * whitespace and `LowCardinality` (a storage choice, not a different value).
 *
 * @example
 * ```ts
 * const report = await migrate(store, [filesTable, runsTable]);
 * report.summary; // ['created sluice.files', 'added column sluice.sluice_runs.errors String']
 * ```
 */
import { FatalError } from '../errors.ts';
import { quoteIdentifier, quoteString, type ClickHouseStore, type StoreFeatures } from './store.ts';
import { adaptColumnType, adaptTable, createTableSql, type TableDefinition } from './table.ts';

export interface MigrationAction {
  table: string;
  action: 'created' | 'added-column' | 'unchanged';
  column?: string;
  /** the statement run, for created tables and added columns */
  sql?: string;
}

export interface MigrationReport {
  actions: MigrationAction[];
  /** adaptations to the server and columns left alone, one line each */
  notes: string[];
  /** one line per action that changed something: "created sluice.files", "added column sluice.files.size UInt64" */
  summary: string[];
}

/** A table differs from its definition in a way `migrate` will not fix by itself. */
export class MigrationError extends FatalError {
  override name = 'MigrationError';
  constructor(
    readonly table: string,
    readonly differences: readonly string[],
    readonly manualSteps: string,
  ) {
    super(
      `table ${table} differs from its definition in ways that need a manual migration:\n` +
        differences.map((d) => `  - ${d}`).join('\n') +
        `\nTo migrate by hand:\n${manualSteps}`,
    );
  }
}

interface ExistingTable {
  engine: string;
  engine_full: string;
  partition_key: string;
  sorting_key: string;
}

/** Create and extend `tables` in the store's database; throws MigrationError on incompatible differences. */
export async function migrate(store: ClickHouseStore, tables: readonly TableDefinition<unknown>[]): Promise<MigrationReport> {
  const features = await store.features();
  const report: MigrationReport = { actions: [], notes: [], summary: [] };
  const database = store.database;
  for (const def of tables) {
    const qualified = `${database}.${def.name}`;
    const existing = (
      await store.query<ExistingTable>(
        `SELECT engine, engine_full, partition_key, sorting_key FROM system.tables WHERE database = ${quoteString(database)} AND name = ${quoteString(def.name)}`,
      )
    )[0];
    const adapted = adaptTable(def, features);
    if (!existing) {
      const sql = createTableSql(def, database, features);
      await store.command(sql);
      report.actions.push({ table: qualified, action: 'created', sql });
      report.summary.push(`created ${qualified}`);
      report.notes.push(...adapted.notes);
      continue;
    }
    const columns = await store.query<{ name: string; type: string }>(
      `SELECT name, type FROM system.columns WHERE database = ${quoteString(database)} AND table = ${quoteString(def.name)}`,
    );
    const actual = new Map(columns.map((c) => [c.name, c.type]));
    const differences: string[] = [];
    const typeChanges: [name: string, from: string, to: string][] = [];

    if (existing.engine !== def.engine) differences.push(`engine is ${existing.engine}, the definition says ${def.engine}`);
    else if (def.engine === 'ReplacingMergeTree') {
      const version = /^ReplacingMergeTree\(\s*`?([^`)\s]*)`?\s*\)/.exec(existing.engine_full)?.[1] ?? '';
      if (version !== (def.versionColumn ?? '')) {
        differences.push(`version column is ${version ? `"${version}"` : 'none'}, the definition says ${def.versionColumn ? `"${def.versionColumn}"` : 'none'}`);
      }
    }
    const missingKey = def.orderBy.filter((c) => !actual.has(c));
    if (missingKey.length) differences.push(`ORDER BY column${missingKey.length > 1 ? 's' : ''} ${missingKey.join(', ')} missing from the table (a sorting key cannot be extended with a new column in place)`);
    const sortingKey = normaliseKey(existing.sorting_key);
    const declaredKey = normaliseKey(def.orderBy.join(', '));
    if (sortingKey !== declaredKey) differences.push(`ORDER BY is (${sortingKey.replace(/,/g, ', ')}), the definition says (${def.orderBy.join(', ')})`);
    if (normaliseKey(existing.partition_key) !== normaliseKey(def.partitionBy ?? '')) {
      differences.push(`PARTITION BY is ${existing.partition_key || 'none'}, the definition says ${def.partitionBy || 'none'}`);
    }

    const toAdd: [string, string][] = [];
    for (const [name, declared] of adapted.columns) {
      const type = actual.get(name);
      if (type === undefined) {
        if (!def.orderBy.includes(name)) toAdd.push([name, declared]);
        continue;
      }
      if (sameType(type, declared)) {
        if (normaliseType(type) !== normaliseType(declared)) report.notes.push(`${qualified}.${name} is ${type}, declared ${declared}: same values, kept as it is`);
        continue;
      }
      differences.push(`column ${name} is ${type}, the definition says ${declared}`);
      typeChanges.push([name, type, declared]);
    }
    for (const name of actual.keys()) {
      if (!(name in def.columns)) report.notes.push(`${qualified}.${name} is not in the definition: kept`);
    }

    if (differences.length) {
      throw new MigrationError(qualified, differences, manualSteps(def, database, features, actual, typeChanges, existing, missingKey));
    }
    for (const [name, type] of toAdd) {
      const sql = `ALTER TABLE ${quoteIdentifier(database)}.${quoteIdentifier(def.name)} ADD COLUMN ${features.addColumnIfNotExists ? 'IF NOT EXISTS ' : ''}${quoteIdentifier(name)} ${type}`;
      await store.command(sql);
      report.actions.push({ table: qualified, action: 'added-column', column: name, sql });
      report.summary.push(`added column ${qualified}.${name} ${type}`);
    }
    if (!toAdd.length) report.actions.push({ table: qualified, action: 'unchanged' });
  }
  return report;
}

/** The statements that would bring the table in line, for the error message. */
function manualSteps(
  def: TableDefinition<unknown>,
  database: string,
  features: StoreFeatures,
  actual: ReadonlyMap<string, string>,
  typeChanges: readonly [string, string, string][],
  existing: ExistingTable,
  missingKey: readonly string[],
): string {
  const table = `${quoteIdentifier(database)}.${quoteIdentifier(def.name)}`;
  const onlyTypes =
    typeChanges.length > 0 &&
    !missingKey.length &&
    existing.engine === def.engine &&
    typeChanges.every(([name]) => !def.orderBy.includes(name)) &&
    normaliseKey(existing.sorting_key) === normaliseKey(def.orderBy.join(', ')) &&
    normaliseKey(existing.partition_key) === normaliseKey(def.partitionBy ?? '');
  const lines: string[] = [];
  if (onlyTypes) {
    lines.push('  either change the column type in place (ClickHouse rewrites the column; every value must convert):');
    for (const [name, , to] of typeChanges) lines.push(`    ALTER TABLE ${table} MODIFY COLUMN ${quoteIdentifier(name)} ${to};`);
    lines.push('  or copy into a new table and swap:');
  } else {
    lines.push('  copy into a new table and swap:');
  }
  const newName = `${def.name}_new`;
  const newTable = `${quoteIdentifier(database)}.${quoteIdentifier(newName)}`;
  const oldTable = `${quoteIdentifier(database)}.${quoteIdentifier(`${def.name}_old`)}`;
  lines.push(...createTableSql(def, database, features, { name: newName }).split('\n').map((l) => `    ${l}`));
  lines[lines.length - 1] += ';';
  const shared = Object.keys(def.columns).filter((c) => actual.has(c));
  const select = shared.map((c) => {
    const change = typeChanges.find(([name]) => name === c);
    return change ? `CAST(${quoteIdentifier(c)} AS ${change[2]}) AS ${quoteIdentifier(c)}` : quoteIdentifier(c);
  });
  lines.push(`    INSERT INTO ${newTable} (${shared.map(quoteIdentifier).join(', ')}) SELECT ${select.join(', ')} FROM ${table};`);
  lines.push(`    RENAME TABLE ${table} TO ${oldTable}, ${newTable} TO ${table};`);
  lines.push(`  then check the data and DROP TABLE ${oldTable}.`);
  return lines.join('\n');
}

/** ClickHouse's sorting/partition key text, comparable: no quotes, spaces or outer parentheses. */
function normaliseKey(key: string): string {
  let k = key.replace(/[`"\s]/g, '');
  while (k.startsWith('(') && k.endsWith(')') && balanced(k.slice(1, -1))) k = k.slice(1, -1);
  return k === 'tuple()' ? '' : k;
}

function balanced(text: string): boolean {
  let depth = 0;
  for (const c of text) {
    if (c === '(') depth++;
    else if (c === ')' && --depth < 0) return false;
  }
  return depth === 0;
}

/** Whitespace outside quotes removed, so `Enum8('a'=1)` and `Enum8('a' = 1)` compare equal. */
function normaliseType(type: string): string {
  return type.replace(/'(?:[^'\\]|\\.)*'|\s+/g, (m) => (m.startsWith("'") ? m : ''));
}

/** The same values: equal once normalised, and LowCardinality(T) counts as T. */
function sameType(actual: string, declared: string): boolean {
  const strip = (t: string) => adaptColumnType(normaliseType(t), { ...ALL_FEATURES, lowCardinality: false });
  return strip(actual) === strip(declared);
}

const ALL_FEATURES: StoreFeatures = {
  lowCardinality: true,
  dateTime64: true,
  insertDeduplicationToken: true,
  nonReplicatedDeduplication: true,
  addColumnIfNotExists: true,
  bool: true,
  map: true,
  wideIntegers: true,
  ttl: true,
};
