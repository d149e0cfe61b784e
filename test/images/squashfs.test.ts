/**
 * squashfs against `unsquashfs`: every entry's type, permissions, owner, size, time and
 * link target as `unsquashfs -lln` listed them, every file's sha256 as it extracted
 * them, for xz (inside live.iso, read in place), zstd, gzip and xz with the x86 BCJ
 * filter, lz4; hard links, xattrs, files of several blocks plus a fragment; lzo refused.
 */
import { describe, expect, it } from 'vitest';
import { ImageError } from '../../sources/images/image-error.ts';
import { goldenSums, listImage, permString, typeChar, unsquashfsListing } from './golden.ts';

const minute = (d: Date) => d.toISOString().slice(0, 16).replace('T', ' ');

describe('squashfs 4', () => {
  const cases = [
    { name: 'live (xz, in live.iso)', file: 'live.iso', layer: 'live', golden: 'live.squashfs', compression: 'xz' },
    { name: 'altinst (zstd, in live.iso)', file: 'live.iso', layer: 'altinst', golden: 'altinst.squashfs', compression: 'zstd' },
    { name: 'rescue (gzip, in live.iso)', file: 'live.iso', layer: 'rescue', golden: 'rescue.squashfs', compression: 'gzip' },
    { name: 'bcj.squashfs (xz + x86 BCJ)', file: 'bcj.squashfs', layer: '', golden: 'bcj.squashfs', compression: 'xz' },
    { name: 'lz4.squashfs (lz4)', file: 'lz4.squashfs', layer: '', golden: 'lz4.squashfs', compression: 'lz4' },
  ];
  for (const c of cases) {
    it(`${c.name}: listing as unsquashfs -lln, bytes as unsquashfs extracted them`, async () => {
      const { entries, sums, layers } = await listImage(c.file);
      const layer = layers.find((l) => l.layer === c.layer && l.format === 'squashfs')!;
      expect(layer.info.compression).toBe(c.compression);
      const mine = entries.filter((e) => e.layer === c.layer && e.format === 'squashfs');
      const want = unsquashfsListing(`${c.golden}.lln`);
      expect(mine.map((e) => e.innerPath).sort()).toEqual(want.map((w) => w.path).sort());
      const byPath = new Map(mine.map((e) => [e.innerPath, e]));
      for (const w of want) {
        const e = byPath.get(w.path)!;
        expect(`${typeChar(e)}${permString(e.mode)}`, w.path).toBe(`${w.type}${w.perms}`);
        expect([e.uid, e.gid], w.path).toEqual([w.uid, w.gid]);
        expect(minute(e.mtime), w.path).toBe(w.mtime);
        if (w.type === '-' || w.type === 'l') expect(e.size, w.path).toBe(w.size);
        if (w.type === 'l') expect(e.linkTarget).toBe(w.target);
      }
      const prefix = c.layer ? `${c.layer}!` : '';
      const got = new Map([...sums].filter(([p]) => p.startsWith(prefix) && byPath.has(p.slice(prefix.length))).map(([p, s]) => [p.slice(prefix.length), s]));
      expect(Object.fromEntries(got)).toEqual(Object.fromEntries(goldenSums(`${c.golden}.sha256`)));
    });
  }

  it('hard links share an inode; xattrs; a file of several blocks and a fragment', async () => {
    const { byPath, sums } = await listImage('bcj.squashfs');
    const a = byPath.get('usr/share/doc/big.txt')!;
    const b = byPath.get('usr/share/doc/big-hardlink.txt')!;
    expect(a.inode).toBe(b.inode);
    expect(a.nlink).toBe(2);
    expect(a.size).toBeGreaterThan(4 * 4096);
    expect(a.size % 4096).not.toBe(0);
    expect(sums.get('usr/share/doc/big.txt')).toBe(sums.get('usr/share/doc/big-hardlink.txt'));
    expect(byPath.get('usr/bin/hello')!.xattrs).toEqual({ 'user.sluice': Buffer.from('fixture') });
  });

  it('an lzo image is refused with a clear error naming it', async () => {
    const err = await listImage('lzo.squashfs').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toBe('squashfs: lzo.squashfs: lzo compression is not supported by this reader (supported: gzip, xz, zstd, lz4) (at byte 20)');
  });
});
