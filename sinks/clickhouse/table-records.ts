/**
 * The sink of the ALT loaders: records for several ClickHouse tables in **one** ordered
 * lane, where a unit's marker row (the `package_hash` row of a package) is inserted only
 * after every other row of that unit has been acknowledged by the store.
 *
 * Why not one `clickhouse()` sink per table: the runner gives each sink its own lane and
 * acknowledges an item when every lane has accepted its records, but the lanes run
 * independently, so the marker table's lane could commit a package's marker before the
 * file lane commits its files; a crash in between would leave a package that `seen`
 * takes for stored while its files are missing. One lane keeps the order the transform
 * emitted: a package's rows come before its marker, batches are written one at a time,
 * and a batch that the runner splits after a permanent failure is written half after
 * half, in order. So when a marker is reached, every earlier row of its unit has been
 * tried for good.
 *
 * Each batch: the rows of every non-marker table are inserted (one INSERT per table,
 * concurrently, through the `clickhouse` sink of that table: same deduplication tokens,
 * same error classification); only when all of them succeeded are their rows counted
 * per unit. Then each marker in the batch is checked: its record says how many rows its
 * unit has (`unitRows`); a marker whose unit has them all is inserted, one whose unit
 * lost rows to a permanent failure is withheld (its item has already failed, and the
 * package will be loaded again by the next run). A failed batch is retried whole by the
 * runner: rows already inserted are deduplicated by their token (or collapse by key on
 * servers without tokens) and are never counted twice (the counts remember records, not
 * inserts).
 *
 * @example
 * ```ts
 * sinks: () => [tableRecords({ packages, package_files: packageFiles, package_hash: packageHash }, { marker: 'package_hash' })],
 * transform: () => map((pkg) => [
 *   { table: 'packages', row: pkg.row, unit: 1 },
 *   { table: 'package_hash', row: pkg.marker, unit: 1, unitRows: 1 },
 * ]),
 * ```
 */
import type { RowOf, TableDefinition } from '../../runtime/clickhouse/table.ts';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import type { RunContext } from '../../runtime/context.ts';
import { classifyError } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import type { Sink, SinkWriteContext } from '../../runtime/pipeline.ts';
import { clickhouse } from './sink.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type TableSet = Readonly<Record<string, TableDefinition<any>>>;

/**
 * A row for one of the tables. `unit` ties the rows of one package (one load of it)
 * together; the marker record of the unit also carries `unitRows`, how many non-marker
 * records the unit emitted before it.
 */
export type TableRecord<T extends TableSet> = {
  [K in keyof T & string]: {
    readonly table: K;
    readonly row: RowOf<T[K]>;
    readonly unit?: number;
    readonly unitRows?: number;
  };
}[keyof T & string];

export interface TableRecordsOptions<T extends TableSet> {
  /** the table whose rows are written only when their unit is complete */
  readonly marker: keyof T & string;
  /** records per write at most (all tables together); default 50 000 */
  readonly maxRecords?: number;
  /** JSON bytes per write, about; default 16 MiB */
  readonly maxBytes?: number;
  /** write a partial batch this long after its first record; default 1000 ms */
  readonly maxDelayMs?: number;
  /** default `clickhouse:altrepo` */
  readonly name?: string;
  readonly store?: () => Promise<ClickHouseStore>;
}

/** What a run wrote, per table, and the markers withheld; for the log line at close and for tests. */
export interface TableRecordsStats {
  readonly rows: Record<string, number>;
  withheldMarkers: number;
}

export function tableRecords<T extends TableSet>(
  tables: T,
  options: TableRecordsOptions<T>,
): Sink<TableRecord<T>> & { readonly stats: TableRecordsStats } {
  const marker = options.marker;
  if (!(marker in tables)) throw new Error(`tableRecords: the marker table "${marker}" is not one of the tables`);
  const inner = new Map<string, Sink<unknown>>();
  for (const [key, def] of Object.entries(tables)) {
    inner.set(key, clickhouse(def, { ...(options.store ? { store: options.store } : {}), name: `clickhouse:${def.name}` }) as Sink<unknown>);
  }
  const sizeOf = new Map<string, (row: unknown) => number>();
  for (const [key, sink] of inner) {
    const f = sink.batch?.sizeOf as ((row: unknown) => number) | undefined;
    sizeOf.set(key, f ?? ((row) => JSON.stringify(row, (_k, v) => (typeof v === 'bigint' ? String(v) : v))?.length ?? 0));
  }

  // rows of each unit acknowledged so far; a record is counted once, however often its batch is retried
  const written = new Map<number, number>();
  const counted = new WeakSet<object>();
  const stats: TableRecordsStats = { rows: Object.fromEntries(Object.keys(tables).map((k) => [tables[k]!.name, 0])), withheldMarkers: 0 };
  let log: Logger | undefined;

  const insert = async (key: string, rows: unknown[], wctx: SinkWriteContext) => {
    await inner.get(key)!.write(rows, wctx);
    stats.rows[tables[key]!.name] = (stats.rows[tables[key]!.name] ?? 0) + rows.length;
  };

  return {
    name: options.name ?? 'clickhouse:altrepo',
    kind: 'clickhouse',
    stats,
    batch: {
      maxRecords: options.maxRecords ?? 50_000,
      maxBytes: options.maxBytes ?? 16 * 1024 * 1024,
      maxDelayMs: options.maxDelayMs ?? 1000,
      sizeOf: ((record: TableRecord<T>) => sizeOf.get(record.table)!(record.row)) as (record: never) => number,
      isolateFailures: true,
    },

    open: async (ctx: RunContext) => {
      log = ctx.log;
      written.clear();
      for (const sink of inner.values()) await sink.open?.(ctx);
    },

    write: async (records: readonly TableRecord<T>[], wctx: SinkWriteContext) => {
      const groups = new Map<string, unknown[]>();
      const markers: TableRecord<T>[] = [];
      for (const record of records) {
        if (record.table === marker) {
          markers.push(record);
          continue;
        }
        let rows = groups.get(record.table);
        if (!rows) groups.set(record.table, (rows = []));
        rows.push(record.row);
      }
      if (groups.size > 0) {
        const results = await Promise.allSettled([...groups].map(([key, rows]) => insert(key, rows, wctx)));
        const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
        if (failures.length) throw worst(failures);
      }
      for (const record of records) {
        if (record.table === marker || record.unit === undefined || counted.has(record)) continue;
        counted.add(record);
        written.set(record.unit, (written.get(record.unit) ?? 0) + 1);
      }
      if (markers.length === 0) return;
      const ready: unknown[] = [];
      for (const m of markers) {
        const have = m.unit === undefined ? 0 : written.get(m.unit) ?? 0;
        if (m.unit === undefined || have === (m.unitRows ?? 0)) ready.push(m.row);
        else {
          stats.withheldMarkers++;
          log?.warn(`${tables[marker]!.name}: marker of a package withheld: ${have} of its ${m.unitRows} rows were written (the package will be loaded again next run)`);
        }
      }
      if (ready.length) await insert(marker, ready, wctx);
      for (const m of markers) if (m.unit !== undefined) written.delete(m.unit);
    },

    close: async (outcome) => {
      written.clear();
      const parts = Object.entries(stats.rows).map(([t, n]) => `${t} ${n}`).join(', ');
      log?.info(`rows written: ${parts}${stats.withheldMarkers ? `; ${stats.withheldMarkers} markers withheld` : ''}`);
      for (const sink of inner.values()) await sink.close?.(outcome);
    },
  };
}

/** Of several failures in one batch: a fatal one stops the run, a transient one retries the batch, else permanent. */
function worst(errors: unknown[]): unknown {
  return errors.find((e) => classifyError(e) === 'fatal') ?? errors.find((e) => classifyError(e) === 'transient') ?? errors[0];
}
