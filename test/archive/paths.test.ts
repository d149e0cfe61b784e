/**
 * Hostile member names: normalised so that no path leaves the archive's root, and
 * `safeJoin` refuses to write one outside its destination (zip-slip).
 */
import { createReadStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { archiveEntries } from '../../sources/archive/archive-entries.ts';
import { normalizeEntryPath, safeJoin } from '../../sources/archive/entry-path.ts';
import { hashStream } from '../../sources/files/hash-stream.ts';
import { fixture, goldenListing, goldenSums } from './golden.ts';

describe('normalizeEntryPath', () => {
  it.each([
    ['./hello.txt', 'hello.txt'],
    ['a//b/./c', 'a/b/c'],
    ['../evil', 'evil'],
    ['../../../../etc/passwd', 'etc/passwd'],
    ['/abs/path', 'abs/path'],
    ['//server/share/x', 'server/share/x'],
    ['a/../../mid', 'mid'],
    ['a/b/../c', 'a/c'],
    ['dir\\..\\..\\win.txt', 'win.txt'],
    ['C:\\Windows\\system32', 'Windows/system32'],
    ['C:/x', 'x'],
    ['c:notes.txt', 'c:notes.txt'],
    ['dir/', 'dir'],
    ['./', ''],
    ['/', ''],
    ['..', ''],
  ])('%s → %s', (raw, normalised) => {
    expect(normalizeEntryPath(raw)).toBe(normalised);
  });
});

describe('safeJoin', () => {
  const dest = path.join(os.tmpdir(), 'sluice-out');

  it.each(['a.txt', 'dir/b.txt', './c.txt', 'a/./b'])('joins %s under the destination', (name) => {
    const joined = safeJoin(dest, name);
    expect(joined.startsWith(dest + path.sep)).toBe(true);
    expect(joined).toBe(path.join(dest, name));
  });

  it.each(['../evil', 'a/../../evil', 'a/b/../../../x', '/etc/passwd', '\\\\server\\share', 'C:\\x', 'C:/x', '..\\..\\win', 'a/..', 'nul\0byte', '', '.', './'])(
    'refuses %j with a PermanentError naming it',
    (name) => {
      let error: unknown;
      try {
        safeJoin(dest, name);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(PermanentError);
      expect((error as PermanentError).message).toContain(JSON.stringify(name));
      expect((error as PermanentError).message).toContain(dest);
    },
  );

  it('refuses a destination-relative escape through a long chain too', () => {
    expect(() => safeJoin(dest, `${'x/'.repeat(50)}${'../'.repeat(51)}etc`)).toThrow(PermanentError);
  });
});

describe('archives with hostile names', () => {
  const sums = goldenSums();

  it('evil.tar: ../, /abs and a/../../ stay inside, keep their raw names, and every path passes safeJoin', async () => {
    const entries = [];
    for await (const e of archiveEntries(createReadStream(fixture('evil.tar')), { name: 'evil.tar' })) {
      entries.push({ path: e.path, rawPath: e.rawPath, text: Buffer.from(await new Response(e.content()).arrayBuffer()).toString() });
    }
    expect(entries).toEqual([
      { path: 'evil', rawPath: '../evil', text: 'evil content\n' },
      { path: 'abs/path', rawPath: '/abs/path', text: 'abs content\n' },
      { path: 'mid', rawPath: 'a/../../mid', text: 'mid content\n' },
      { path: 'ok.txt', rawPath: 'ok.txt', text: 'ok.txt content\n' },
    ]);
    expect(goldenListing('evil.tar').map((g) => g.name)).toEqual(entries.map((e) => e.rawPath));
    for (const e of entries) expect(safeJoin('/srv/out', e.path).startsWith('/srv/out/')).toBe(true);
    // where GNU tar extracted a member at the same place, the bytes agree (it refuses the ones with "..")
    expect(sums.get('evil.tar!abs/path')).toBe((await import('node:crypto')).createHash('sha256').update('abs content\n').digest('hex'));
    expect(sums.get('evil.tar!ok.txt')).toBeDefined();
    expect(sums.has('evil.tar!evil')).toBe(false);
  });

  it('evil.zip: the same for zip, backslashes included; each member stays inside', async () => {
    const got = [];
    for await (const e of archiveEntries(createReadStream(fixture('evil.zip')), { name: 'evil.zip' })) {
      got.push({ path: e.path, rawPath: e.rawPath, sha256: (await hashStream(e.content(), ['sha256'])).sha256 });
    }
    expect(got.map(({ path: p, rawPath }) => [p, rawPath])).toEqual([
      ['evil.txt', '../evil.txt'],
      ['abs/path.txt', '/abs/path.txt'],
      ['mid.txt', 'safe/../../mid.txt'],
      ['ok.txt', 'ok.txt'],
      ['win.txt', 'dir\\..\\..\\win.txt'],
    ]);
    // unzip drops ".." segments instead (safe/../../mid.txt → safe/mid.txt): same bytes, other place
    const unzipPlace: Record<string, string> = { 'evil.txt': 'evil.txt', 'abs/path.txt': 'abs/path.txt', 'mid.txt': 'safe/mid.txt', 'ok.txt': 'ok.txt', 'win.txt': 'dir/win.txt' };
    for (const e of got) expect(e.sha256, e.path).toBe(sums.get(`evil.zip!${unzipPlace[e.path]}`));
    for (const e of got) expect(() => safeJoin('/srv/out', e.path)).not.toThrow();
    for (const e of got.filter((g) => g.rawPath !== 'ok.txt')) expect(() => safeJoin('/srv/out', e.rawPath)).toThrow(PermanentError);
  });
});
