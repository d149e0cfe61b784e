/**
 * A ClickHouse table, declared once in TypeScript: its columns with their ClickHouse
 * types, engine and keys. The row type is computed from the type strings at compile
 * time, so a sink for the table only accepts records that fit it, and `migrate`
 * creates and extends the table from the same declaration.
 *
 * | ClickHouse type                                      | row field                    |
 * | ---------------------------------------------------- | ---------------------------- |
 * | UInt8 … UInt32, Int8 … Int32, Float32, Float64       | number                       |
 * | UInt64, Int64, (U)Int128, (U)Int256                  | bigint \| number \| string   |
 * | Decimal(P, S), Decimal32/64/128/256(S)               | number \| string             |
 * | String, FixedString(N), UUID, Enum8/16(…), IPv4/IPv6 | string                       |
 * | Date, Date32, DateTime, DateTime('tz'), DateTime64(p[, 'tz']) | Date \| string \| number |
 * | Bool                                                 | boolean \| number            |
 * | Nullable(T)                                          | T \| null                    |
 * | LowCardinality(T)                                    | T                            |
 * | Array(T)                                             | T[] (nested as deep as you like) |
 * | Map(String, T)                                       | Record<string, T>            |
 *
 * A type string outside this table is a compile error on the column.
 *
 * Older servers: `createTableSql` writes what the server understands, from
 * `StoreFeatures` — `LowCardinality(T)` → `T` (before 19.1), `DateTime64(p[, tz])` →
 * `DateTime[(tz)]` (before 20.1: sub-second precision is lost), `Bool` → `UInt8`
 * (before 21.12), no `TTL` (before 19.6), no `non_replicated_deduplication_window`
 * (before 21.1). `Map` and the 128/256-bit integers have no stand-in: a table using them
 * needs a newer server, and `createTableSql` says so.
 *
 * @example
 * ```ts
 * const files = defineTable('files', {
 *   columns: { path: 'String', size: 'UInt64', mtime: 'DateTime', tags: 'Array(LowCardinality(String))' },
 *   orderBy: ['path'],
 *   versionColumn: 'mtime',
 * });
 * type File = RowOf<typeof files>;
 * // { path: string; size: bigint | number | string; mtime: Date | string | number; tags: string[] }
 * ```
 */
import { FatalError } from '../errors.ts';
import { quoteIdentifier, type StoreFeatures } from './store.ts';
import { FEATURE_SINCE } from './version.ts';

type SmallNumber = 'UInt8' | 'UInt16' | 'UInt32' | 'Int8' | 'Int16' | 'Int32' | 'Float32' | 'Float64';
type BigNumber = 'UInt64' | 'Int64' | 'UInt128' | 'Int128' | 'UInt256' | 'Int256';
type Text = 'String' | 'UUID' | 'IPv4' | 'IPv6' | `FixedString(${number})` | `Enum8(${string})` | `Enum16(${string})`;
type DateLike = 'Date' | 'Date32' | 'DateTime' | `DateTime(${string})` | `DateTime64(${string})`;
type DecimalType = `Decimal(${string})` | `Decimal32(${string})` | `Decimal64(${string})` | `Decimal128(${string})` | `Decimal256(${string})`;

/** Marks a column type string this file does not know; shows up in the compile error. */
export interface UnknownClickHouseType<T extends string> {
  readonly 'unknown ClickHouse type': T;
}

/** The JavaScript value of a column of ClickHouse type `T` (see the table above). */
export type ClickHouseValue<T extends string> =
  T extends `Nullable(${infer Inner})` ? ClickHouseValue<Inner> | null
  : T extends `LowCardinality(${infer Inner})` ? ClickHouseValue<Inner>
  : T extends `Array(${infer Inner})` ? ClickHouseValue<Inner>[]
  : T extends `Map(${string}, ${infer Value})` ? Record<string, ClickHouseValue<Value>>
  : T extends SmallNumber ? number
  : T extends BigNumber ? bigint | number | string
  : T extends DecimalType ? number | string
  : T extends Text ? string
  : T extends DateLike ? Date | string | number
  : T extends 'Bool' ? boolean | number
  : UnknownClickHouseType<T>;

/** True when the type string is one `ClickHouseValue` understands all the way down. */
type IsKnown<T extends string> =
  T extends `Nullable(${infer Inner})` ? IsKnown<Inner>
  : T extends `LowCardinality(${infer Inner})` ? IsKnown<Inner>
  : T extends `Array(${infer Inner})` ? IsKnown<Inner>
  : T extends `Map(${infer Key}, ${infer Value})` ? (IsKnown<Key> extends true ? IsKnown<Value> : false)
  : T extends SmallNumber | BigNumber | DecimalType | Text | DateLike | 'Bool' ? true
  : false;

export type ColumnTypesSpec = Readonly<Record<string, string>>;

/** Each column's type string, or an error marker in its place (so the wrong column is the one underlined). */
export type CheckedColumns<C extends ColumnTypesSpec> = {
  readonly [K in keyof C]: IsKnown<C[K]> extends true ? C[K] : UnknownClickHouseType<C[K]>;
};

/** The row of a table with columns `C`. */
export type RowOfColumns<C extends ColumnTypesSpec> = { -readonly [K in keyof C]: ClickHouseValue<C[K]> };

export type TableEngine = 'MergeTree' | 'ReplacingMergeTree' | 'SummingMergeTree' | 'AggregatingMergeTree';

export interface TableOptions<C extends ColumnTypesSpec> {
  columns: C & CheckedColumns<C>;
  /** default ReplacingMergeTree */
  engine?: TableEngine;
  /** ReplacingMergeTree's version column: of rows with the same key, the highest version stays */
  versionColumn?: keyof C & string;
  /** the sorting key, which is also the primary key (and, for ReplacingMergeTree, the identity of a row) */
  orderBy: readonly (keyof C & string)[];
  /** a SQL expression, e.g. `toYYYYMM(mtime)` */
  partitionBy?: string;
  /** a SQL TTL expression, e.g. `mtime + INTERVAL 90 DAY` (left out on servers before 19.6) */
  ttl?: string;
  /** MergeTree settings */
  settings?: Readonly<Record<string, string | number>>;
}

declare const ROW: unique symbol;

export interface TableDefinition<Row = Record<string, unknown>, C extends ColumnTypesSpec = ColumnTypesSpec> {
  readonly name: string;
  readonly columns: C;
  readonly engine: TableEngine;
  readonly versionColumn?: string;
  readonly orderBy: readonly string[];
  readonly partitionBy?: string;
  readonly ttl?: string;
  readonly settings?: Readonly<Record<string, string | number>>;
  /** carries the row type; never set */
  readonly [ROW]?: Row;
}

/** The row type of a table definition. */
export type RowOf<T> = T extends TableDefinition<infer Row, ColumnTypesSpec> ? Row : never;

/** Declare a table; the row type comes from the column types. */
export function defineTable<const C extends ColumnTypesSpec>(
  name: string,
  options: TableOptions<C>,
): TableDefinition<RowOfColumns<C>, C> {
  const columns = options.columns as C;
  const engine = options.engine ?? 'ReplacingMergeTree';
  for (const key of options.orderBy) {
    if (!(key in columns)) throw new Error(`table ${name}: ORDER BY column "${key}" is not one of its columns`);
  }
  if (options.versionColumn !== undefined) {
    if (!(options.versionColumn in columns)) throw new Error(`table ${name}: version column "${options.versionColumn}" is not one of its columns`);
    if (engine !== 'ReplacingMergeTree') throw new Error(`table ${name}: a version column needs the ReplacingMergeTree engine, not ${engine}`);
  }
  return {
    name,
    columns,
    engine,
    versionColumn: options.versionColumn,
    orderBy: [...options.orderBy],
    partitionBy: options.partitionBy,
    ttl: options.ttl,
    settings: options.settings,
  };
}

/** Settings of MergeTree tables and the feature each needs. */
const SETTING_FEATURES: Readonly<Record<string, keyof StoreFeatures>> = {
  non_replicated_deduplication_window: 'nonReplicatedDeduplication',
};

/** A table as a given server can hold it, with what had to change. */
export interface AdaptedTable {
  columns: [name: string, type: string][];
  ttl?: string;
  settings: [name: string, value: string | number][];
  /** what was changed for this server, one line each */
  notes: string[];
}

/** The column type a server with `features` can store; throws a FatalError when there is no stand-in. */
export function adaptColumnType(type: string, features: StoreFeatures, where = 'column'): string {
  let t = type.trim();
  if (!features.map && /\bMap\s*\(/.test(t)) throw unsupported(where, t, 'map');
  if (!features.wideIntegers && /\b(U?Int(128|256))\b/.test(t)) throw unsupported(where, t, 'wideIntegers');
  if (!features.lowCardinality) t = stripWrapper(t, 'LowCardinality');
  if (!features.dateTime64) t = t.replace(/\bDateTime64\(\s*\d+\s*(?:,\s*('[^']*')\s*)?\)/g, (_m, tz?: string) => (tz ? `DateTime(${tz})` : 'DateTime'));
  if (!features.bool) t = t.replace(/\bBool\b/g, 'UInt8');
  return t;
}

function unsupported(where: string, type: string, feature: keyof StoreFeatures): FatalError {
  const [major, minor] = FEATURE_SINCE[feature];
  return new FatalError(`${where}: type ${type} needs ClickHouse ${major}.${minor} or later; this server does not have it`, {
    hint: 'use another type, or a newer ClickHouse server',
  });
}

function stripWrapper(type: string, wrapper: string): string {
  let out = type;
  for (;;) {
    const at = out.indexOf(wrapper + '(');
    if (at === -1) return out;
    let depth = 0;
    let end = -1;
    for (let i = at + wrapper.length; i < out.length; i++) {
      if (out[i] === '(') depth++;
      else if (out[i] === ')' && --depth === 0) {
        end = i;
        break;
      }
    }
    if (end === -1) return out;
    out = out.slice(0, at) + out.slice(at + wrapper.length + 1, end) + out.slice(end + 1);
  }
}

/** The table's columns, TTL and settings as this server can have them. */
export function adaptTable(def: TableDefinition<unknown>, features: StoreFeatures): AdaptedTable {
  const notes: string[] = [];
  const columns = Object.entries(def.columns).map(([name, type]): [string, string] => {
    const adapted = adaptColumnType(type, features, `table ${def.name}, column ${name}`);
    if (adapted !== type) notes.push(`${def.name}.${name}: ${type} stored as ${adapted} (this server has no ${type.match(/LowCardinality|DateTime64|Bool/)?.[0] ?? type})`);
    return [name, adapted];
  });
  let ttl = def.ttl;
  if (ttl && !features.ttl) {
    notes.push(`${def.name}: TTL ${ttl} left out (TTL needs ClickHouse ${FEATURE_SINCE.ttl.join('.')} or later)`);
    ttl = undefined;
  }
  const settings: [string, string | number][] = [];
  for (const [name, value] of Object.entries(def.settings ?? {})) {
    const feature = SETTING_FEATURES[name];
    if (feature && !features[feature]) {
      notes.push(`${def.name}: setting ${name} left out (needs ClickHouse ${FEATURE_SINCE[feature].join('.')} or later)`);
      continue;
    }
    settings.push([name, value]);
  }
  return { columns, ttl, settings, notes };
}

/** The engine clause: `ReplacingMergeTree(\`version\`)`, `MergeTree()` … */
export function engineSql(def: TableDefinition<unknown>): string {
  const args = def.engine === 'ReplacingMergeTree' && def.versionColumn ? quoteIdentifier(def.versionColumn) : '';
  return `${def.engine}(${args})`;
}

/**
 * `CREATE TABLE IF NOT EXISTS` for the definition, adapted to the server's features.
 * `options.name` creates it under another name (for a copy-and-swap migration).
 */
export function createTableSql(
  def: TableDefinition<unknown>,
  database: string,
  features: StoreFeatures,
  options: { name?: string } = {},
): string {
  const adapted = adaptTable(def, features);
  const lines = [
    `CREATE TABLE IF NOT EXISTS ${quoteIdentifier(database)}.${quoteIdentifier(options.name ?? def.name)}`,
    '(',
    adapted.columns.map(([name, type]) => `    ${quoteIdentifier(name)} ${type}`).join(',\n'),
    ')',
    `ENGINE = ${engineSql(def)}`,
  ];
  if (def.partitionBy) lines.push(`PARTITION BY ${def.partitionBy}`);
  lines.push(`ORDER BY ${def.orderBy.length ? `(${def.orderBy.map(quoteIdentifier).join(', ')})` : 'tuple()'}`);
  if (adapted.ttl) lines.push(`TTL ${adapted.ttl}`);
  if (adapted.settings.length) lines.push(`SETTINGS ${adapted.settings.map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${String(v).replace(/'/g, "\\'")}'`}`).join(', ')}`);
  return lines.join('\n');
}

/**
 * The run records table (`sluice_runs`): one row per save of a run, the highest
 * `version` of an id wins (ReplacingMergeTree; read with FINAL). `params`, `counts` and
 * `errors` are JSON text. On servers before 20.1 the times are DateTime (seconds).
 */
export const runsTable = defineTable('sluice_runs', {
  columns: {
    id: 'String',
    pipeline: 'LowCardinality(String)',
    trigger: 'LowCardinality(String)',
    trigger_id: 'String',
    status: 'LowCardinality(String)',
    started_at: "DateTime64(3, 'UTC')",
    ended_at: "Nullable(DateTime64(3, 'UTC'))",
    duration_ms: 'Nullable(UInt64)',
    params: 'String',
    counts: 'String',
    errors: 'String',
    version: 'UInt64',
  },
  engine: 'ReplacingMergeTree',
  versionColumn: 'version',
  orderBy: ['id'],
});

export type RunRow = RowOf<typeof runsTable>;
