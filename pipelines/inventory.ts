/**
 * inventory — the demo pipeline: walk a directory and record every file's path, size,
 * mode, mtime and sha256 into a JSON snapshot and Prometheus metrics.
 */
import path from 'node:path';
import { z } from 'zod';
import { mapConcurrent } from '../operators/map-concurrent.ts';
import { definePipeline } from '../runtime/pipeline.ts';
import { prometheus } from '../sinks/prometheus.ts';
import { snapshot } from '../sinks/snapshot.ts';
import type { FileEntry } from '../sources/entry.ts';
import { files } from '../sources/files/files.ts';
import { hashStream } from '../sources/files/hash-stream.ts';

export interface InventoryRecord {
  path: string;
  size: number;
  mode: number;
  mtime: string;
  sha256: string;
}

export default definePipeline({
  name: 'inventory',
  description: 'Walk a directory and record every file (path, size, mode, mtime, sha256)',
  params: z.object({
    root: z.string().default('fixtures').describe('directory to walk'),
    include: z.array(z.string()).default([]).describe('globs of files to take (default: every file)'),
    exclude: z.array(z.string()).default([]).describe('globs of files to leave out'),
    snapshot: z.string().default('.sluice/inventory.json').describe('where the JSON snapshot is written'),
  }),
  permissions: ({ params }) => ({ read: [params.root], write: [path.dirname(params.snapshot)] }),
  maxInFlight: 32,
  source: (ctx) => files(ctx, {
    root: ctx.params.root,
    ...(ctx.params.include.length ? { include: ctx.params.include } : {}),
    ...(ctx.params.exclude.length ? { exclude: ctx.params.exclude } : {}),
  }),
  // one file per item: the runner keeps up to maxInFlight files hashing at once
  transform: () => mapConcurrent(async (file: FileEntry): Promise<InventoryRecord> => ({
    path: file.path,
    size: file.size,
    mode: file.mode,
    mtime: file.mtime.toISOString(),
    sha256: (await hashStream(file.content())).sha256,
  }), 1),
  sinks: ({ params }) => [
    snapshot<InventoryRecord>({ path: params.snapshot, sortBy: 'path' }),
    prometheus<InventoryRecord>({
      metrics: {
        sluice_inventory_files_total: { type: 'counter', help: 'Files recorded by the inventory pipeline', labels: [], value: () => 1 },
        sluice_inventory_bytes_total: { type: 'counter', help: 'Bytes of the files recorded by the inventory pipeline', labels: [], value: (r) => r.size },
      },
    }),
  ],
});
