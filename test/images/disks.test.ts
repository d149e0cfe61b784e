/**
 * Disks: ext2 and ext4 against `debugfs` (inode, mode, owner, size of every entry; the
 * bytes of every file as `debugfs rdump` wrote them), GPT and MBR against `sfdisk -d`,
 * qcow2 (v3, v2, zlib- and zstd-compressed clusters, an overlay on a backing file)
 * against the sha256 of `qemu-img convert -O raw`, and a backing file outside the
 * allowed roots.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { FileDevice } from '../../sources/images/block-device.ts';
import { ImageError } from '../../sources/images/image-error.ts';
import { openQcow2 } from '../../sources/images/qcow2/qcow2.ts';
import { testRunContext } from '../support/run-context.ts';
import { debugfsListing, fixture, fixtureContext, golden, goldenSums, listImage, sha256 } from './golden.ts';

const temp = mkdtempSync(path.join(os.tmpdir(), 'sluice-images-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('ext2/ext4', () => {
  for (const fs of ['ext4', 'ext2'] as const) {
    it(`${fs}.img.xz: every entry as debugfs lists it, every file as debugfs rdump wrote it`, async () => {
      const { entries, sums, layers } = await listImage(`${fs}.img.xz`);
      expect(layers.map((l) => l.format)).toEqual(['xz', fs]);
      const want = debugfsListing(`${fs}.img.ls`);
      const mine = entries.filter((e) => e.innerPath !== 'lost+found' && !e.innerPath.startsWith('lost+found/'));
      expect(mine.map((e) => e.path).sort()).toEqual([...want.keys()].sort());
      for (const e of mine) {
        const w = want.get(e.path)!;
        expect([e.inode, e.mode, e.uid, e.gid], e.path).toEqual([w.inode, w.mode, w.uid, w.gid]);
        if (e.type === 'file' || e.type === 'symlink') expect(e.size, e.path).toBe(w.size);
      }
      const wantSums = goldenSums(`${fs}.img.sha256`);
      expect(Object.fromEntries(sums)).toEqual(Object.fromEntries(wantSums));
      const label = /Filesystem volume name:\s+(\S+)/.exec(golden(`${fs}.img.stats`))?.[1];
      expect(layers[1]!.info.label).toBe(label);
    });
  }

  it('ext4: a sparse file in many extents, an htree directory, a deep path', async () => {
    const { byPath, sums } = await listImage('ext4.img.xz');
    expect(byPath.get('var/sparse.bin')!.size).toBe(8 * 65536 + 4096);
    expect(sums.get('var/sparse.bin')).toBe(goldenSums('ext4.img.sha256').get('var/sparse.bin'));
    expect([...byPath.keys()].filter((p) => p.startsWith('usr/share/many/'))).toHaveLength(40);
    expect(byPath.get('usr/lib/big')).toMatchObject({ type: 'symlink', linkTarget: '../share/doc/big.txt' });
  });
});

/** sfdisk writes MBR types without leading zeros (5), GUIDs as they are */
const norm = (type: string) => (type.length <= 2 ? String(parseInt(type, 16)) : type.toLowerCase());

describe('partition tables', () => {
  for (const disk of ['gpt', 'mbr'] as const) {
    it(`${disk}.img.xz: partitions as sfdisk -d, the file system in partition 1`, async () => {
      const { layers, byPath } = await listImage(`${disk}.img.xz`);
      const table = layers.find((l) => l.format === disk)!.info as { partitions: Array<{ number: number; start: number; size: number; type: string; uuid?: string; name?: string }> };
      const want = [...golden(`${disk}.img.sfdisk`).matchAll(/img(\d+) : start=\s*(\d+), size=\s*(\d+), type=([\w-]+)/g)].map((m) => ({ number: +m[1]!, start: +m[2]! * 512, size: +m[3]! * 512, type: norm(m[4]!) }));
      expect(table.partitions.map((p) => ({ number: p.number, start: p.start, size: p.size, type: norm(p.type) }))).toEqual(want);
      expect(byPath.get('p1!etc/os-release')!.type).toBe('file');
      if (disk === 'gpt') expect(table.partitions[0]).toMatchObject({ name: 'root', uuid: '5A1C1CE0-0000-4000-8000-0000000000A1' });
    });
  }
});

describe('qcow2', () => {
  for (const q of ['disk', 'disk-v2', 'disk-zlib', 'disk-zstd', 'overlay'] as const) {
    it(`${q}.qcow2: the virtual disk reads as qemu-img convert -O raw wrote it`, async () => {
      const ctx = fixtureContext();
      const disk = await openQcow2(ctx, await FileDevice.open(ctx, fixture(`${q}.qcow2`)), { path: fixture(`${q}.qcow2`) });
      try {
        const want = /compat: (\S+)/.exec(golden(`${q}.qcow2.info`))![1];
        expect(disk.info.version).toBe(want === '0.10' ? 2 : 3);
        if (q === 'disk-zstd') expect(disk.info.compression).toBe('zstd');
        const bytes = await disk.read(0, disk.size);
        expect(sha256(bytes)).toBe(golden(`${q}.qcow2.raw-sha256`).trim());
      } finally {
        await disk.close();
      }
    });
  }

  it('files of the qcow2 overlay come through its backing file', async () => {
    const { byPath, layers } = await listImage('overlay.qcow2');
    expect(layers.map((l) => [l.layer, l.format])).toEqual([['', 'qcow2'], ['', 'mbr'], ['p1', 'ext2'], ['p5', 'unknown']]);
    expect(byPath.get('p1!usr/share/doc/big.txt')!.size).toBe(19136);
  });

  it('a backing file outside the allowed roots is an error naming the image and the offset', async () => {
    const dir = path.join(temp, 'only-overlay');
    const copy = path.join(dir, 'overlay.qcow2');
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    copyFileSync(fixture('overlay.qcow2'), copy);
    copyFileSync(fixture('disk.qcow2'), path.join(temp, 'disk.qcow2'));
    // the backing name is relative ("disk.qcow2"): point it one directory up by a symlink outside the root
    const { symlinkSync } = await import('node:fs');
    symlinkSync(path.join(temp, 'disk.qcow2'), path.join(dir, 'disk.qcow2'));
    const ctx = testRunContext({ dir, permissions: { read: [dir] } });
    const err = await openQcow2(ctx, await FileDevice.open(ctx, copy), { path: copy }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/^qcow2: .*overlay\.qcow2: cannot open its backing file "disk\.qcow2" .*not allowed.* \(at byte \d+\)$/);
  });
});
