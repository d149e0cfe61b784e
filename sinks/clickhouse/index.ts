/**
 * The ClickHouse sink and what goes with it. See README.md in this folder for the
 * idempotency guarantee per backend.
 *
 * @example
 * ```ts
 * import { clickhouse } from '../sinks/clickhouse/index.ts';
 * sinks: () => [clickhouse(packages)],
 * ```
 */
export { clickhouse, classifyInsertError, DEDUPLICATION_WINDOW, type ClickHouseSinkOptions } from './sink.ts';
export { tableRecords, type TableRecord } from './table-records.ts';
