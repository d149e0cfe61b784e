/**
 * inventory — the demo pipeline: walk a directory and record every file's path, size,
 * mode, mtime and sha256 into ClickHouse (embedded by default), a JSON snapshot and
 * Prometheus metrics.
 */
import path from 'node:path';
import { z } from 'zod';
import { mapConcurrent } from '../operators/map-concurrent.ts';
import { defineTable, type RowOf } from '../runtime/clickhouse/table.ts';
import { definePipeline } from '../runtime/pipeline.ts';
import { clickhouse } from '../sinks/clickhouse/index.ts';
import { prometheus } from '../sinks/prometheus.ts';
import { snapshot } from '../sinks/snapshot.ts';
import type { FileEntry } from '../sources/entry.ts';
import { files } from '../sources/files/files.ts';
import { hashStream } from '../sources/files/hash-stream.ts';

/** One row per file and root; a re-run replaces a file's row (latest scan wins). */
export const inventoryFiles = defineTable('inventory_files', {
  columns: {
    root: 'String',
    path: 'String',
    size: 'UInt64',
    mode: 'UInt32',
    mtime: 'DateTime',
    sha256: 'String',
    scanned_at: 'DateTime',
  },
  orderBy: ['root', 'path'],
  versionColumn: 'scanned_at',
});

export type InventoryRecord = RowOf<typeof inventoryFiles>;

export default definePipeline({
  name: 'inventory',
  description: 'Walk a directory and record every file (path, size, mode, mtime, sha256) into ClickHouse',
  params: z.object({
    root: z.string().default('fixtures').describe('directory to walk'),
    include: z.array(z.string()).default([]).describe('globs of files to take (default: every file)'),
    exclude: z.array(z.string()).default([]).describe('globs of files to leave out'),
    snapshot: z.string().default('.sluice/inventory.json').describe('where the JSON snapshot is written'),
  }),
  permissions: ({ params }) => ({ read: [params.root], write: [path.dirname(params.snapshot)] }),
  tables: [inventoryFiles],
  maxInFlight: 32,
  source: (ctx) => files(ctx, {
    root: ctx.params.root,
    ...(ctx.params.include.length ? { include: ctx.params.include } : {}),
    ...(ctx.params.exclude.length ? { exclude: ctx.params.exclude } : {}),
  }),
  // one file per item: the runner keeps up to maxInFlight files hashing at once
  transform: ({ params }) => {
    const scannedAt = new Date();
    return mapConcurrent(async (file: FileEntry): Promise<InventoryRecord> => ({
      root: params.root,
      path: file.path,
      size: file.size,
      mode: file.mode,
      mtime: file.mtime,
      sha256: (await hashStream(file.content())).sha256,
      scanned_at: scannedAt,
    }), 1);
  },
  sinks: ({ params }) => [
    clickhouse(inventoryFiles),
    snapshot<InventoryRecord>({ path: params.snapshot, sortBy: 'path' }),
    prometheus<InventoryRecord>({
      metrics: {
        sluice_inventory_files_total: { type: 'counter', help: 'Files recorded by the inventory pipeline', labels: [], value: () => 1 },
        sluice_inventory_bytes_total: { type: 'counter', help: 'Bytes of the files recorded by the inventory pipeline', labels: [], value: (r) => Number(r.size) },
      },
    }),
  ],
  nextSteps: ({ params }) => [
    '',
    'Look at what was loaded:',
    `  npm run query -- "SELECT path, size, sha256 FROM inventory_files FINAL WHERE root = '${params.root.replace(/'/g, "\\'")}' ORDER BY size DESC LIMIT 10"`,
  ],
});
