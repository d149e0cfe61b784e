/**
 * Every member's path, type, size, mode, mtime, owner and link target, for each format,
 * against the listing the reference tool wrote when the fixture was made
 * (`tar -tvv --full-time`, `zipinfo -l -T`; fixtures/archives/golden/*.list).
 */
import { createReadStream } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { archiveEntries } from '../../sources/archive/archive-entries.ts';
import type { ArchiveEntry } from '../../sources/archive/archive-entry.ts';
import { normalizeEntryPath } from '../../sources/archive/entry-path.ts';
import { fixture, goldenListing, type GoldenEntry } from './golden.ts';

async function list(file: string, options: { nested?: boolean } = {}): Promise<ArchiveEntry[]> {
  const entries: ArchiveEntry[] = [];
  for await (const entry of archiveEntries(createReadStream(fixture(file)), { name: file, ...options })) entries.push(entry);
  return entries;
}

/** The golden listing as our entries should be: the root "./" left out, names normalised. */
function expected(archive: string, prefix = ''): Array<GoldenEntry & { path: string }> {
  return goldenListing(archive)
    .map((g) => ({ ...g, path: normalizeEntryPath(g.name) }))
    .filter((g) => g.path !== '')
    .map((g) => ({ ...g, path: prefix + g.path }));
}

function compare(ours: ArchiveEntry[], golden: Array<GoldenEntry & { path: string }>, format: 'tar' | 'zip'): void {
  expect(ours.map((e) => e.path)).toEqual(golden.map((g) => g.path));
  for (const [i, g] of golden.entries()) {
    const e = ours[i]!;
    const where = `${e.archive}!${e.path}`;
    expect(e.type, where).toBe(g.type);
    expect(e.mode & 0o7777, where).toBe(g.permissions);
    expect(e.mtime.getTime() / 1000, where).toBe(g.mtime);
    expect(e.error, where).toBeUndefined();
    expect(e.format).toBe(format);
    if (g.type === 'symlink') {
      // a symlink's size is the length of its target (as lstat gives); tar -tv shows 0, zipinfo the length
      expect(e.size, where).toBe(Buffer.byteLength(e.linkTarget!));
      if (format === 'zip') expect(e.size, where).toBe(g.size);
    } else {
      expect(e.size, where).toBe(g.size);
    }
    if (g.hardLink) {
      expect(e.hardLinkTarget, where).toBe(normalizeEntryPath(g.linkTarget!));
    } else if (g.linkTarget !== undefined) {
      expect(e.linkTarget, where).toBe(g.linkTarget);
    }
    if (format === 'tar') {
      expect(e.uid, where).toBe(g.uid);
      expect(e.gid, where).toBe(g.gid);
    }
  }
}

describe('members match the reference listing', () => {
  for (const file of ['tree.tar', 'tree.tar.gz', 'tree.tar.xz', 'tree-x86.tar.xz', 'tree-blocks.tar.xz', 'tree.tar.zst', 'tree.tar.bz2']) {
    it(`${file} (tar -tvv)`, async () => {
      const entries = await list(file);
      compare(entries, expected(file), 'tar');
      // what the listing's symbols stand for, checked once by hand
      const byPath = new Map(entries.map((e) => [e.path, e]));
      expect(byPath.get('data/zz-hardlink-to-numbers')).toMatchObject({ type: 'file', size: 0, hardLinkTarget: 'data/numbers.txt', mode: 0o100644 });
      expect(byPath.get('link-to-hello')).toMatchObject({ type: 'symlink', linkTarget: 'hello.txt', mode: 0o120777 });
      expect(byPath.get('bin/run.sh')).toMatchObject({ type: 'file', mode: 0o100755, size: 19 });
      expect(byPath.get('data/secret.txt')?.mode).toBe(0o100600);
      expect(byPath.get('empty-dir')).toMatchObject({ type: 'directory', mode: 0o040755 });
      expect(byPath.get('hello.txt')).toMatchObject({ rawPath: './hello.txt', archive: file, absolutePath: `${file}!hello.txt` });
    });
  }

  it('tree.zip (zipinfo -l): Unix modes, symlinks, a UTF-8 name stored without the UTF-8 flag', async () => {
    const entries = await list('tree.zip');
    compare(entries, expected('tree.zip'), 'zip');
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(byPath.get('data/link-up')).toMatchObject({ type: 'symlink', linkTarget: '../hello.txt' });
    expect(byPath.has('data/ünïcödé name.txt')).toBe(true);
  });

  it('nested.tar with nested: each level matches its own listing, under <member>! paths', async () => {
    const entries = await list('nested.tar', { nested: true });
    const golden = [
      ...expected('deep.tar', 'inner.zip!deep.tar!'),
      ...expected('inner.zip', 'inner.zip!').filter((g) => g.path !== 'inner.zip!deep.tar'),
      ...expected('packed.tar.gz', 'packed.tar.gz!'),
      ...expected('nested.tar').filter((g) => g.path !== 'inner.zip' && g.path !== 'packed.tar.gz'),
    ];
    const tarLevels = entries.filter((e) => e.format === 'tar');
    const zipLevel = entries.filter((e) => e.format === 'zip');
    compare(tarLevels, golden.filter((g) => !g.path.startsWith('inner.zip!') || g.path.startsWith('inner.zip!deep.tar!')), 'tar');
    compare(zipLevel, golden.filter((g) => g.path === 'inner.zip!note.txt'), 'zip');
    expect(entries.map((e) => e.path)).toEqual(['inner.zip!deep.tar!deep', 'inner.zip!deep.tar!deep/deep.txt', 'inner.zip!note.txt', 'packed.tar.gz!p.txt', 'plain.txt.gz', 'readme.txt']);
    const deep = entries.find((e) => e.path === 'inner.zip!deep.tar!deep/deep.txt')!;
    expect(deep.archive).toBe('nested.tar!inner.zip!deep.tar');
    expect(deep.absolutePath).toBe('nested.tar!inner.zip!deep.tar!deep/deep.txt');
  });

  it('nested.tar without nested: the archives inside are plain members', async () => {
    compare(await list('nested.tar'), expected('nested.tar'), 'tar');
  });

  for (const file of ['sparse-pax.tar', 'sparse-pax01.tar']) {
    it(`${file}: the sparse member has its real name and size`, async () => {
      compare(await list(file), expected(file), 'tar');
    });
  }
});
