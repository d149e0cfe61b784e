// Test pipeline: numbered rows into a ClickHouse table at a steady pace, so a test can
// kill a run in the middle and run it again (test/clickhouse-sink/rerun.test.ts).
import { mergeMap } from 'rxjs';
import { z } from 'zod';
import { defineTable, type RowOf } from '../../../runtime/clickhouse/table.ts';
import { definePipeline, item } from '../../../runtime/pipeline.ts';
import { clickhouse } from '../../../sinks/clickhouse/index.ts';

export const loadTable = (name: string) =>
  defineTable(name, {
    columns: { key: 'String', n: 'UInt32', payload: 'String', loaded: 'DateTime' },
    orderBy: ['key'],
  });

type Row = RowOf<ReturnType<typeof loadTable>>;

export default definePipeline({
  name: 'ch-load',
  description: 'Numbered rows into a ClickHouse table, a page at a time',
  params: z.object({
    table: z.string().default('ch_load').describe('table to load'),
    rows: z.number().int().min(0).default(30_000).describe('how many rows'),
    perItem: z.number().int().min(1).default(100).describe('rows per item (page)'),
    delayMs: z.number().int().min(0).default(25).describe('pause between pages'),
  }),
  source: async function* ({ params, signal }) {
    for (let first = 0; first < params.rows && !signal.aborted; first += params.perItem) {
      const page: Row[] = [];
      for (let n = first; n < Math.min(params.rows, first + params.perItem); n++) {
        page.push({ key: `k${String(n).padStart(7, '0')}`, n, payload: `row ${n} `.repeat(4), loaded: new Date(1_700_000_000_000) });
      }
      yield item(`page-${first}`, page);
      if (params.delayMs) await new Promise((r) => setTimeout(r, params.delayMs));
    }
  },
  transform: () => mergeMap((page: Row[]) => page),
  sinks: ({ params }) => [clickhouse(loadTable(params.table), { maxRows: 1000, maxDelayMs: 100 })],
});
