/**
 * Bad images: truncated, corrupted, with directory loops, absurd sizes and counts. Each
 * gives an `ImageError` (a PermanentError) that names the image and the byte offset —
 * for the whole image when nothing can be read, or as an error entry for the part that
 * is bad while the rest is listed — and never a hang or a crash.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { BufferDevice } from '../../sources/images/block-device.ts';
import { imageEntries } from '../../sources/images/image-entries.ts';
import type { ImageEntry } from '../../sources/images/image-entry.ts';
import { ImageError } from '../../sources/images/image-error.ts';
import { openQcow2 } from '../../sources/images/qcow2/qcow2.ts';
import { openSquashfs } from '../../sources/images/squashfs/squashfs.ts';
import { bdbHashValues } from '../../sources/installed/bdb-hash.ts';
import { sqliteRows } from '../../sources/installed/sqlite-table.ts';
import { fileOf, fixture, fixtureContext, readStream } from './golden.ts';

const live = () => Buffer.from(readFileSync(fixture('live.iso')));

/** All entries, reading every file; returns the entries or the error that stopped the listing. */
async function read(name: string, bytes: Uint8Array): Promise<{ entries: ImageEntry[]; errors: string[]; thrown?: unknown }> {
  const entries: ImageEntry[] = [];
  const errors: string[] = [];
  try {
    for await (const e of imageEntries(fixtureContext(), new BufferDevice(name, bytes), { name })) {
      entries.push(e);
      if (e.error) errors.push(e.error.message);
      else if (e.type === 'file') {
        try {
          await readStream(e.content());
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
    }
  } catch (thrown) {
    return { entries, errors, thrown };
  }
  return { entries, errors };
}

describe('truncated images', () => {
  it('an ISO cut inside its volume descriptors: one error naming the image and the offset', async () => {
    const { thrown } = await read('cut.iso', live().subarray(0, 34_000));
    expect(thrown).toBeInstanceOf(ImageError);
    expect((thrown as Error).message).toBe('iso9660: cut.iso: the image ends inside the volume descriptors (truncated?) (at byte 32768)');
  });

  it('an ISO cut in its data: the files before the cut are read, those past it are error entries naming their offset', async () => {
    const { entries, errors, thrown } = await read('cut.iso', live().subarray(0, 100_000));
    expect(thrown).toBeUndefined();
    expect(entries.some((e) => e.path === 'ALTLinux/base/release' && !e.error)).toBe(true);
    expect(errors.length).toBeGreaterThan(0);
    for (const m of errors) expect(m).toMatch(/^\w+: cut\.iso.*\(at byte \d+\)/);
  });

  it('a squashfs cut short: an error naming the image and where its tables lie', async () => {
    const sq = readFileSync(fixture('bcj.squashfs'));
    const err = await openSquashfs(new BufferDevice('cut.squashfs', sq.subarray(0, 4000))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toMatch(/^squashfs: cut\.squashfs: .* lies past the end of the 4000-byte image \(truncated\?\) \(at byte \d+\)$/);
  });

  it('a qcow2 whose clusters are cut off: the read names the cluster and the offset', async () => {
    const q = readFileSync(fixture('disk.qcow2'));
    const disk = await openQcow2(fixtureContext(), new BufferDevice('cut.qcow2', q.subarray(0, 40_000)));
    const err = await disk.read(0, disk.size).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toMatch(/^qcow2: cut\.qcow2: .*(past the end|outside the file).*\(at byte \d+\)$/);
  });
});

describe('corrupted images', () => {
  it('an ISO directory that points back to the root: one error entry, the rest listed', async () => {
    const iso = live();
    const rootExtent = iso.readUInt32LE(16 * 2048 + 156 + 2);
    // the root directory's records: find the record of ALTLinux and point it at the root
    const dir = iso.subarray(rootExtent * 2048, rootExtent * 2048 + 2048);
    let pos = 0;
    let patched = '';
    while (pos < dir.length && dir[pos]! > 0) {
      const name = dir.toString('latin1', pos + 33, pos + 33 + dir[pos + 32]!);
      if (dir[pos + 25]! & 2 && name === 'ALTLINUX') {
        dir.writeUInt32LE(rootExtent, pos + 2);
        dir.writeUInt32BE(rootExtent, pos + 6);
        patched = name;
      }
      pos += dir[pos]!;
    }
    expect(patched).toBe('ALTLINUX');
    const { entries, thrown } = await read('loop.iso', iso);
    expect(thrown).toBeUndefined();
    const loop = entries.find((e) => e.error)!;
    expect(loop.path).toBe('ALTLinux');
    expect(loop.error!.message).toBe(`iso9660: loop.iso: directory ALTLinux loops back to a directory already listed (at byte ${rootExtent * 2048})`);
    expect(entries.filter((e) => e.path.startsWith('live!')).length).toBeGreaterThan(20);
  });

  it('an ext4 directory entry that points back to the root: one error entry naming the image', async () => {
    const img = await decompressed('ext4.img.xz');
    const at = img.indexOf(Buffer.from('\x04\x02deep', 'latin1'));
    expect(at).toBeGreaterThan(0);
    img.writeUInt32LE(2, at - 6); // inode of the "deep" entry → the root
    const { entries, thrown } = await read('loop.ext4', img);
    expect(thrown).toBeUndefined();
    const loop = entries.find((e) => e.error)!;
    expect(loop.path).toBe('deep');
    expect(loop.error!.message).toMatch(/^ext: loop\.ext4: directory deep loops back to a directory already listed \(at byte \d+\)$/);
  });

  it('a squashfs data block that does not decompress: the file errors, naming the image and the block offset', async () => {
    const sq = Buffer.from(readFileSync(fixture('bcj.squashfs')));
    // the first data block starts right after the superblock (and compressor options)
    sq.fill(0x55, 200, 260);
    const { errors, thrown } = await read('bad-block.squashfs', sq);
    expect(thrown).toBeUndefined();
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]).toMatch(/^squashfs: bad-block\.squashfs: .*\(at byte \d+\)$/);
  });
});

describe('absurd sizes and counts', () => {
  it('squashfs: a block size of 2 GiB', async () => {
    const sq = Buffer.from(readFileSync(fixture('bcj.squashfs')));
    sq.writeUInt32LE(2 ** 31, 12);
    await expect(openSquashfs(new BufferDevice('huge.squashfs', sq))).rejects.toThrow(/^squashfs: huge\.squashfs: block size 2147483648 .* \(at byte 12\)$/);
  });

  it('qcow2: a virtual size of 2^62 bytes, an L1 table of 2^31 entries', async () => {
    const q = Buffer.from(readFileSync(fixture('disk.qcow2')));
    const a = Buffer.from(q);
    a.writeBigUInt64BE(2n ** 62n, 24);
    await expect(openQcow2(fixtureContext(), new BufferDevice('huge.qcow2', a))).rejects.toThrow(/virtual size .* is absurd \(at byte 24\)/);
    const b = Buffer.from(q);
    b.writeUInt32BE(2 ** 31, 36);
    await expect(openQcow2(fixtureContext(), new BufferDevice('l1.qcow2', b))).rejects.toThrow(/L1 table of 2147483648 entries is absurd \(at byte 36\)/);
  });

  it('an ISO directory claiming 4 GiB', async () => {
    const iso = live();
    iso.writeUInt32LE(0xfffff000, 16 * 2048 + 156 + 10);
    const { entries, thrown } = await read('bigdir.iso', iso);
    expect(thrown).toBeUndefined();
    expect(entries).toHaveLength(1);
    expect(entries[0]!.error!.message).toMatch(/^iso9660: bigdir\.iso: directory \/ claims 4294963200 bytes, more than limits\.maxDirectoryBytes \(at byte \d+\)$/);
  });

  it('Berkeley DB and SQLite files with chains that loop or pages that do not exist', async () => {
    const bdb = Buffer.from(await fileOf('live.iso', 'live!var/lib/rpm/Packages'));
    // every overflow page points to itself as the next one
    const pageSize = bdb.readUInt32LE(20);
    for (let p = 1; p * pageSize < bdb.length; p++) if (bdb[p * pageSize + 25] === 7) bdb.writeUInt32LE(p, p * pageSize + 16);
    await expect(drain(bdbHashValues(new BufferDevice('loop.db', bdb)))).rejects.toThrow(/^berkeley-db: loop\.db: overflow chain ends early or loops/);
    const sqlite = Buffer.from(await fileOf('live.iso', 'altinst!var/lib/rpm/rpmdb.sqlite'));
    const cut = sqlite.subarray(0, 8192);
    await expect(drain(sqliteRows(new BufferDevice('cut.sqlite', cut), 'Packages'))).rejects.toThrow(/^sqlite: cut\.sqlite: page \d+ is out of range .* \(at byte \d+\)$/);
  });

  it('every error is a PermanentError, so the run\'s policy decides', async () => {
    const { thrown } = await read('cut.iso', live().subarray(0, 34_000));
    expect(thrown).toBeInstanceOf(PermanentError);
  });
});

async function drain(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

async function decompressed(name: string): Promise<Buffer> {
  const { unxz } = await import('../../sources/decoders/xz.ts');
  const { createReadStream } = await import('node:fs');
  return readStream(unxz(createReadStream(fixture(name)) as unknown as AsyncIterable<Uint8Array>));
}
