/**
 * The real altrepo-iso and altrepo-image pipelines, as `npm run pipeline` runs them,
 * into embedded ClickHouse (chDB, in a directory of this test's own) and their JSON
 * Lines snapshot: the three tables hold what the image holds, and a second run of the
 * same image replaces rows instead of adding to them.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { createLogger } from '../../runtime/log.ts';
import { runPipeline } from '../../runtime/runner.ts';
import altrepoImage from '../../pipelines/altrepo-image.ts';
import altrepoIso from '../../pipelines/altrepo-iso.ts';
import { fixture, FIXTURES, goldenSums } from './golden.ts';

const temp = mkdtempSync(path.join(os.tmpdir(), 'sluice-altrepo-ch-'));
let store: ClickHouseStore;
beforeAll(async () => {
  store = await openEmbeddedStore({ dir: path.join(temp, 'clickhouse') });
});
afterAll(async () => {
  await store?.close();
  rmSync(temp, { recursive: true, force: true });
});

const run = (pipeline: typeof altrepoIso | typeof altrepoImage, params: Record<string, unknown>) =>
  runPipeline({
    pipeline,
    params,
    stateDir: path.join(temp, 'state'),
    log: createLogger({ level: 'silent' }),
    openStore: async () => store,
    keepStoreOpen: true,
    allow: { read: [FIXTURES], write: [temp] },
  });

describe('altrepo pipelines into ClickHouse', () => {
  it('altrepo-iso: images, image_files and image_packages; a re-run replaces rows', async () => {
    const snapshot = path.join(temp, 'iso.jsonl');
    for (let i = 0; i < 2; i++) {
      const record = await run(altrepoIso, { path: fixture('live.iso'), edition: 'workstation', version: '10.1', arch: 'x86_64', branch: 'p10', snapshot });
      expect(record.status).toBe('succeeded');
    }
    const [image] = await store.query<{ volume_id: string; kind: string; branch: string; os_id: string; n: string }>(
      "SELECT volume_id, kind, branch, os_id, toString(count()) AS n FROM images FINAL GROUP BY volume_id, kind, branch, os_id",
    );
    expect(image).toEqual({ volume_id: 'ALT_LIVE_10.1', kind: 'iso', branch: 'p10', os_id: 'altlinux', n: '1' });
    const layers = await store.query<{ layer: string; files: string }>("SELECT layer, toString(countIf(type = 'file')) AS files FROM image_files FINAL GROUP BY layer ORDER BY layer");
    // as many files per layer as the reference tools extracted
    expect(layers).toEqual([
      { layer: '', files: String(goldenSums('live.iso.sha256').size) },
      { layer: 'altinst', files: String(goldenSums('altinst.squashfs.sha256').size) },
      { layer: 'live', files: String(goldenSums('live.squashfs.sha256').size) },
      { layer: 'rescue', files: String(goldenSums('rescue.squashfs.sha256').size) },
    ]);
    const [big] = await store.query<{ sha256: string }>("SELECT sha256 FROM image_files FINAL WHERE layer = 'rescue' AND path = 'usr/share/doc/big.txt'");
    expect(big!.sha256).toBe(goldenSums('rescue.squashfs.sha256').get('usr/share/doc/big.txt'));
    const packages = await store.query<{ layer: string; source: string; n: string }>('SELECT layer, source, toString(count()) AS n FROM image_packages FINAL GROUP BY layer, source ORDER BY layer, source');
    expect(packages).toEqual([
      { layer: '', source: 'file', n: '2' },
      { layer: 'altinst', source: 'db', n: '3' },
      { layer: 'live', source: 'db', n: '3' },
    ]);
    const lines = readFileSync(snapshot, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { table: string });
    expect(lines.filter((l) => l.table === 'image_packages')).toHaveLength(8);
  });

  it('altrepo-image: a GPT disk image, xz-compressed, with a dpkg status in its ext4 partition', async () => {
    const record = await run(altrepoImage, { path: fixture('gpt.img.xz'), snapshot: path.join(temp, 'img.jsonl') });
    expect(record.status).toBe('succeeded');
    const [image] = await store.query<{ kind: string; volume_id: string; os_id: string; layers: string }>("SELECT kind, volume_id, os_id, layers FROM images FINAL WHERE path LIKE '%gpt.img.xz'");
    expect(image).toMatchObject({ kind: 'img', os_id: 'debian' });
    expect((JSON.parse(image!.layers) as Array<{ layer: string; format: string }>).map((l) => [l.layer, l.format])).toEqual([['', 'gpt'], ['p1', 'ext4']]);
    const pkgs = await store.query<{ name: string; epoch: number; version: string; release: string }>(
      "SELECT name, epoch, version, release FROM image_packages FINAL WHERE layer = 'p1' ORDER BY name",
    );
    expect(pkgs.map((p) => `${p.name} ${p.epoch}:${p.version}-${p.release}`)).toEqual(['base-files 0:12.4+deb12u5-', 'libc6 0:2.36-9+deb12u4', 'zlib1g 1:1.2.13.dfsg-1']);
  });
});
