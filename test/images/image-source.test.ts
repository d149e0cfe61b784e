/**
 * The `image()` source through the runner: one item per file of every layer (nested
 * squashfs included), each file's content still readable when the transform gets to it
 * late (the source has moved on, even past the layer: the item holds it until it is
 * acknowledged), items carrying the bytes read of the outer image, and one error item for
 * an image that cannot be read.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mergeMap, pipe } from 'rxjs';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createLogger } from '../../runtime/log.ts';
import { definePipeline, type Sink } from '../../runtime/pipeline.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { hashStream } from '../../sources/files/hash-stream.ts';
import type { ImageEntry } from '../../sources/images/image-entry.ts';
import { image } from '../../sources/images/image.ts';
import { fixture, goldenSums } from './golden.ts';

const temp = mkdtempSync(path.join(os.tmpdir(), 'sluice-image-source-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

async function hashAll(file: string, maxInFlight: number): Promise<{ sums: Map<string, string>; bytes: number; skipped: number; errors: string[] }> {
  const sums = new Map<string, string>();
  const sink: Sink<{ path: string; sha256: string }> = { name: 'memory', kind: 'memory', write: (rs) => void rs.forEach((r) => sums.set(r.path, r.sha256)) };
  const pipeline = definePipeline({
    name: 'image-source-test',
    description: 'sha256 of every file of an image, read late',
    params: z.object({}),
    permissions: { read: [file] },
    onError: 'skip',
    maxInFlight,
    source: (ctx) => image(ctx, { path: file }),
    transform: () =>
      pipe(
        mergeMap(async (e: ImageEntry) => {
          // read late: the source has pulled up to maxInFlight entries further by now
          await new Promise((r) => setTimeout(r, 5));
          return { path: e.path, sha256: (await hashStream(e.content())).sha256 };
        }),
      ),
    sinks: () => [sink],
  });
  const run = await runPipeline({ pipeline, stateDir: path.join(temp, 'state'), log: createLogger({ level: 'silent' }) });
  expect(run.status).toBe('succeeded');
  return { sums, bytes: run.counts.bytes, skipped: run.counts.skipped, errors: run.errors.map((e) => e.message) };
}

describe('image() source', () => {
  it('every file of every layer, read after the source moved on, with the bytes of the outer image', async () => {
    const file = path.join(temp, 'live.iso');
    copyFileSync(fixture('live.iso'), file);
    const { sums, bytes, skipped } = await hashAll(file, 64);
    expect(skipped).toBe(0);
    const want = new Map<string, string>();
    for (const [p, s] of goldenSums('live.iso.sha256')) want.set(p, s);
    for (const [layer, golden] of [['live', 'live.squashfs'], ['altinst', 'altinst.squashfs'], ['rescue', 'rescue.squashfs']]) {
      for (const [p, s] of goldenSums(`${golden}.sha256`)) want.set(`${layer}!${p}`, s);
    }
    expect(Object.fromEntries(sums)).toEqual(Object.fromEntries(want));
    // the listing reads the ISO's directories and the squashfs images inside it: a good part of the ISO, never more than it
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThanOrEqual((await import('node:fs')).statSync(file).size * 2);
  });

  it('a spooled image (.img.xz) stays readable until the last item is acknowledged', async () => {
    // the generator ends (and would remove its spool) long before the late reads are done
    const file = path.join(temp, 'gpt.img.xz');
    copyFileSync(fixture('gpt.img.xz'), file);
    const { sums, skipped } = await hashAll(file, 1000);
    expect(skipped).toBe(0);
    const want = new Map([...goldenSums('ext4.img.sha256')].map(([p, s]) => [`p1!${p}`, s]));
    expect(Object.fromEntries(sums)).toEqual(Object.fromEntries(want));
  });

  it('an image that is not one: one error item naming it, the run goes on', async () => {
    const file = path.join(temp, 'not-an-image.bin');
    writeFileSync(file, Buffer.alloc(70_000, 7));
    const { sums, skipped, errors } = await hashAll(file, 4);
    expect(sums.size).toBe(0);
    expect(skipped).toBe(1);
    expect(errors[0]).toMatch(/not-an-image\.bin: not an image this reader knows/);
  });
});
