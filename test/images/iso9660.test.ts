/**
 * ISO9660 against the reference tools: every file's sha256 against what `xorriso
 * -osirrox` extracted, names and sizes against `7zz l` and `isoinfo`, volume metadata
 * against `isoinfo -d`, El Torito and the hybrid partition table against `sfdisk -d`,
 * Rock Ridge (modes, links, times, deep directories relocated by genisoimage), Joliet,
 * and a multi-extent file.
 */
import { describe, expect, it } from 'vitest';
import { golden, goldenSums, listImage, sevenZipFiles } from './golden.ts';

const isoinfoField = (iso: string, field: string) => new RegExp(`^${field}: ?(.*)$`, 'm').exec(golden(`${iso}.iso.isoinfo-d`))?.[1]?.trim() ?? '';

describe('ISO9660 with Rock Ridge and Joliet', () => {
  for (const [file, iso] of [
    ['live.iso', 'live'],
    ['xorriso.iso.xz', 'xorriso'],
    ['rr-joliet.iso.xz', 'rr-joliet'],
    ['hybrid.iso.xz', 'hybrid'],
  ] as const) {
    it(`${file}: every file's bytes as xorriso extracted them, volume metadata as isoinfo -d`, async () => {
      const { sums, layers, byPath } = await listImage(file, { nested: false });
      const want = goldenSums(`${iso}.iso.sha256`);
      expect(want.size).toBeGreaterThan(2);
      expect(Object.fromEntries(sums)).toEqual(Object.fromEntries(want));
      const top = layers.find((l) => l.format === 'iso9660')!;
      expect(top.info.volumeId).toBe(isoinfoField(iso, 'Volume id'));
      expect(top.info.publisher).toBe(isoinfoField(iso, 'Publisher id'));
      expect(top.info.preparer).toBe(isoinfoField(iso, 'Data preparer id'));
      expect(top.info.application).toBe(isoinfoField(iso, 'Application id'));
      expect(top.info.volumeBytes).toBe(+isoinfoField(iso, 'Volume size is') * 2048);
      expect(top.info.rockRidge).toBe(true);
      expect(top.info.joliet).toBe(true);
      // every directory of the listing exists as a directory entry (isoinfo also lists
      // what genisoimage relocated under rr_moved, which we show in its real place)
      for (const line of golden(`${iso}.iso.isoinfo-R`).split('\n')) {
        const m = /^Directory listing of \/(.*)\/$/.exec(line);
        if (m && m[1] && !m[1].startsWith('rr_moved/')) expect(byPath.get(m[1])?.type, m[1]).toBe('directory');
      }
    });
  }

  it('Rock Ridge: modes, owners, symlinks, times, fifos, deep directories put back in place', async () => {
    const { byPath } = await listImage('rr-joliet.iso.xz', { nested: false });
    expect(byPath.get('usr/bin/su-like')!.mode).toBe(0o104755);
    expect(byPath.get('etc/private')!.mode).toBe(0o100600);
    expect(byPath.get('usr/lib/big')).toMatchObject({ type: 'symlink', linkTarget: '../share/doc/big.txt', size: 20 });
    expect(byPath.get('etc/localtime')).toMatchObject({ type: 'symlink', linkTarget: '/usr/share/zoneinfo/UTC' });
    expect(byPath.get('etc/hostname')!.mtime.getTime()).toBe(1_600_000_000_000);
    expect(byPath.get('run/fifo')!.type).toBe('other');
    expect(byPath.get('deep/d1/d2/d3/d4/d5/d6/d7/d8/d9/deep.txt')!.type).toBe('file');
    // genisoimage relocated d7.. into rr_moved: listed where it belongs, rr_moved is empty
    expect([...byPath.keys()].filter((p) => p.startsWith('rr_moved/'))).toEqual([]);
    expect(byPath.get('usr/share/doc/Ünïcödé файл.txt')!.size).toBe(8);
  });

  it('Joliet when asked for: UCS-2 names as isoinfo -J lists them', async () => {
    const { byPath, layers } = await listImage('xorriso.iso.xz', { nested: false, iso9660: { prefer: 'joliet' } });
    expect(layers[1]!.info.tree).toBe('joliet');
    const names = new Set([...byPath.keys()].map((p) => p.split('/').pop()));
    for (const line of golden('xorriso.iso.isoinfo-J').split('\n')) {
      const m = /\]\s+(.+?)\s*$/.exec(line);
      // isoinfo prints what is not ASCII in its own way: compare the ASCII names
      if (m && m[1] !== '.' && m[1] !== '..' && /^[\x20-\x7e]+$/.test(m[1]!)) expect(names.has(m[1]!), m[1]).toBe(true);
    }
    expect(byPath.get('usr/bin/hello')!.mode).toBe(0o100444); // no modes without Rock Ridge
  });

  it('plain ISO9660 names and a file in two extents, as 7zz lists them', async () => {
    const { sums, entries } = await listImage('plain.iso.xz', { nested: false });
    const files = new Map(entries.filter((e) => e.type === 'file').map((e) => [e.path, e.size]));
    expect(Object.fromEntries(files)).toEqual(Object.fromEntries(sevenZipFiles('plain.iso.7zz')));
    expect(sums.get('M1')).toBe(golden('plain.iso.multi-extent.sha256').trim());
  });

  it('live.iso: names and sizes as 7zz lists them', async () => {
    const { entries } = await listImage('live.iso', { nested: false });
    const files = new Map(entries.filter((e) => e.type === 'file').map((e) => [e.path, e.size]));
    expect(Object.fromEntries(files)).toEqual(Object.fromEntries(sevenZipFiles('live.iso.7zz')));
  });

  it('El Torito boot catalog and the hybrid partition table', async () => {
    const { layers } = await listImage('hybrid.iso.xz', { nested: false });
    const iso = layers.find((l) => l.format === 'iso9660')!;
    const boot = iso.info.boot as Array<{ platform: number; bootable: boolean; media: number; sectorCount: number }>;
    expect(boot.map((b) => [b.platform, b.bootable, b.media])).toEqual([[0, true, 0], [0xef, true, 0]]);
    expect(boot[0]!.sectorCount).toBe(4);
    const table = iso.info.partitions as { format: string; partitions: Array<{ number: number; start: number; size: number; type: string }> };
    const want = [...golden('hybrid.iso.sfdisk').matchAll(/iso(\d) : start=\s*(\d+), size=\s*(\d+), type=(\w+)/g)].map((m) => ({ number: +m[1]!, start: +m[2]! * 512, size: +m[3]! * 512, type: m[4]! }));
    expect(table.format).toBe('mbr');
    expect(table.partitions.map(({ number, start, size, type }) => ({ number, start, size, type }))).toEqual(want);
  });
});
