// Test pipeline for the daemon: `rows` keyed rows into a ClickHouse table, a page at a
// time with a pause between pages, so a test can kill a daemon in the middle of a run.
// Rows are keyed by (key, n): a redelivered run writes the same keys, which collapse
// (ReplacingMergeTree, counted with FINAL).
import { mergeMap } from 'rxjs';
import { z } from 'zod';
import { defineTable, type RowOf } from '../../../runtime/clickhouse/table.ts';
import { definePipeline, item } from '../../../runtime/pipeline.ts';
import { clickhouse } from '../../../sinks/clickhouse/index.ts';

export const rowsTable = (name: string) =>
  defineTable(name, {
    columns: { key: 'String', n: 'UInt32', payload: 'String' },
    orderBy: ['key', 'n'],
  });

type Row = RowOf<ReturnType<typeof rowsTable>>;

export default definePipeline({
  name: 'rows',
  description: 'Keyed rows into a ClickHouse table, a page at a time',
  params: z.object({
    key: z.string().describe('identity of the trigger; part of every row key'),
    table: z.string().default('daemon_rows'),
    rows: z.number().int().min(0).default(10),
    perPage: z.number().int().min(1).default(5),
    delayMs: z.number().int().min(0).default(0).describe('pause between pages'),
  }),
  source: async function* ({ params, signal }) {
    for (let first = 0; first < params.rows && !signal.aborted; first += params.perPage) {
      const page: Row[] = [];
      for (let n = first; n < Math.min(params.rows, first + params.perPage); n++) page.push({ key: params.key, n, payload: `${params.key}/${n}` });
      yield item(`${params.key}#${first}`, page);
      if (params.delayMs) await new Promise((r) => setTimeout(r, params.delayMs));
    }
  },
  transform: () => mergeMap((page: Row[]) => page),
  sinks: ({ params }) => [clickhouse(rowsTable(params.table), { maxRows: 1000, maxDelayMs: 20 })],
});
