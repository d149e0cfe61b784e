/**
 * The snapshot fixture's package lists, read back against the real packages they were
 * made from (independently of fixtures/altrepo/make.ts, which checks the same when it
 * builds them); the release files, hash lists, and what bad lists do.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readHashList } from '../../sources/altrepo/hash-list.ts';
import { APT_TAG, pkglistEntries, pkglistHeader } from '../../sources/altrepo/pkglist.ts';
import { parseRelease } from '../../sources/altrepo/release.ts';
import { unxz } from '../../sources/decoders/index.ts';
import { pkgHash, readHeaders, readPackage, SIGTAG, TAG } from '../../sources/rpm/index.ts';
import { sums } from '../rpm/support.ts';
import { RPM_FIXTURES, SNAPSHOT } from './support.ts';

/** The x86_64 lists hold whole headers with the signature merged; the noarch ones genpkglist's own form. */
const LISTS: Array<[list: string, files: string[], form: 'merged' | 'genpkglist']> = [
  ['x86_64/base/pkglist.classic.xz', ['sluice-gz-1.2.3-alt1.x86_64.rpm'], 'merged'],
  ['x86_64/base/pkglist.checkinstall.xz', [], 'merged'],
  ['x86_64/base/srclist.classic.xz', ['sluice-gz-1.2.3-alt1.src.rpm'], 'merged'],
  ['noarch/base/pkglist.classic.xz', ['sluice-bz2-0.9-1.noarch.rpm', 'sluice-xz-0.9-1.noarch.rpm', 'sluice-zstd-0.9-1.noarch.rpm'], 'genpkglist'],
  ['noarch/base/pkglist.checkinstall.xz', ['sluice-latin1-1.0-alt0.1.noarch.rpm'], 'genpkglist'],
];
/** The tags apt-rpm's genpkglist.cc copies, by number, written out here (not taken from the code under test). */
const GENPKGLIST = [1000, 1003, 1001, 1002, 1016, 1022, 1015, 1044, 1009, 1011, 1005, 1004, 1006, 100, 1048, 1049, 1050, 1053, 1054, 1055, 1047, 1112, 1113, 1090, 1114, 1115, 1117, 1118, 1116];
const MD5 = sums('MD5SUMS');
const B2 = sums('B2SUMS');
const SHA256 = sums('SHA256SUMS');

const stream = (file: string) => Readable.from([fs.readFileSync(file)]);

describe('pkglist.<comp>.xz of the snapshot fixture', () => {
  for (const [list, files, form] of LISTS) {
    it(`${list} (${form}): each header is its RPM's main header${form === 'merged' ? ', the merged signature' : "'s tags genpkglist copies"} and the apt tags`, async () => {
      const headers = [];
      for await (const h of readHeaders(unxz(stream(path.join(SNAPSHOT, list))), { source: list })) headers.push(h);
      expect(headers.map((h) => h.string(APT_TAG.FILENAME))).toEqual(files);
      for (const [i, f] of files.entries()) {
        const h = headers[i]!;
        const bytes = fs.readFileSync(path.join(RPM_FIXTURES, f));
        const pkg = await readPackage([bytes], { source: f });
        const copied = form === 'merged' ? pkg.header.tags() : GENPKGLIST.filter((tag) => pkg.header.has(tag));
        for (const tag of copied) expect(h.raw(tag)?.equals(pkg.header.raw(tag)!), `tag ${tag}`).toBe(true);
        if (form === 'merged') {
          // the signature, merged the way rpm merges it
          expect(h.raw(TAG.SIGMD5)!.equals(pkg.signature.raw(SIGTAG.MD5)!)).toBe(true);
          expect(h.string(TAG.SHA1HEADER)).toBe(pkg.signature.string(SIGTAG.SHA1));
          expect(h.string(TAG.SHA256HEADER)).toBe(pkg.signature.string(SIGTAG.SHA256));
          expect(h.number(TAG.SIGSIZE)).toBe(pkg.signature.number(SIGTAG.SIZE));
        } else {
          // nothing else: no signature values, no other main-header tag
          expect(h.tags().filter((tag) => tag < 1000000).sort()).toEqual([...copied].sort());
        }
        expect(h.has(TAG.SIGGPG)).toBe(false); // the fixtures are not signed
        // apt's tags against the golden sums of fixtures/rpm (md5sum, b2sum)
        expect(h.string(APT_TAG.MD5)).toBe(MD5.get(f));
        expect(h.string(APT_TAG.BLAKE2B)).toBe(B2.get(f));
        expect(h.number(APT_TAG.FILESIZE)).toBe(bytes.length);
      }
    });
  }

  it("pkglistEntries gives each package of a merged list its own pkg_hash without the package file, and none for genpkglist's form", async () => {
    for (const [list, files, form] of LISTS) {
      const entries = [];
      for await (const e of pkglistEntries(stream(path.join(SNAPSHOT, list)), { source: list })) entries.push(e);
      expect(entries.map((e) => e.filename)).toEqual(files);
      for (const e of entries) {
        const pkg = await readPackage([fs.readFileSync(path.join(RPM_FIXTURES, e.filename))]);
        expect(e.pkgHash).toBe(form === 'merged' ? pkgHash(pkg).toString() : '');
        expect([e.md5, e.name, e.version, e.release, e.isSource]).toEqual([MD5.get(e.filename), pkg.name, pkg.version, pkg.release, pkg.isSource]);
        expect(e.error).toBeUndefined();
      }
    }
  });

  it('an entry without the apt tags is an entry with an error; a broken list throws naming it and the offset', async () => {
    const pkg = await readPackage([fs.readFileSync(path.join(RPM_FIXTURES, 'sluice-xz-0.9-1.noarch.rpm'))]);
    const good = pkglistHeader(pkg, { filename: 'a.rpm', size: 1, md5: pkg.digests.md5 });
    const bare = pkg.header.bytes; // a main header alone: no file name, no md5
    const entries = [];
    for await (const e of pkglistEntries(Readable.from([Buffer.concat([good, bare, good])]), { source: 'list' })) entries.push(e);
    expect(entries.map((e) => e.error === undefined)).toEqual([true, false, true]);
    expect(entries[1]!.error!.message).toMatch(new RegExp(`^list: package list entry sluice-xz-0.9-1 has no valid file name \\(tag 1000000\\) and no valid MD5 \\(tag 1000005\\) at byte ${good.length}$`));
    const cut = Buffer.concat([good, good.subarray(0, 100)]);
    const read = async () => {
      for await (const _ of pkglistEntries(Readable.from([cut]), { source: 'cut.list' }));
    };
    await expect(read()).rejects.toThrow(new RegExp(`^cut\\.list: truncated RPM header: .* at byte ${good.length + 100}$`));
  });

  it('a corrupt xz list fails with the decoder naming the list', async () => {
    const data = fs.readFileSync(path.join(SNAPSHOT, 'noarch/base/pkglist.classic.xz'));
    const bad = Buffer.from(data);
    bad[Math.floor(bad.length / 2)]! ^= 0xff;
    const read = async () => {
      for await (const _ of pkglistEntries(Readable.from([bad]), { source: 'noarch/base/pkglist.classic.xz' }));
    };
    await expect(read()).rejects.toThrow(/noarch\/base\/pkglist\.classic\.xz/);
  });
});

describe('release and hash lists', () => {
  it('release: Components, and MD5Sum/BLAKE2b sections that match the lists', () => {
    const text = fs.readFileSync(path.join(SNAPSHOT, 'noarch/base/release'), 'utf8');
    const release = parseRelease(text);
    expect(release.components).toEqual(['classic', 'checkinstall']);
    expect(release.fields.get('Architectures')).toBe('noarch');
    const list = path.join(SNAPSHOT, 'noarch/base/pkglist.classic.xz');
    const b2 = spawnSync('b2sum', [list]).stdout.toString().split(' ')[0];
    const md5 = spawnSync('md5sum', [list]).stdout.toString().split(' ')[0];
    expect(release.sums.get('base/pkglist.classic.xz')).toEqual({ md5, blake2b: b2, size: fs.statSync(list).size });
  });

  it('files/list/<arch>.hash.xz: sha256 per file, as sha256sum computes it', async () => {
    const x86 = await readHashList(stream(path.join(SNAPSHOT, 'files/list/x86_64.hash.xz')));
    const noarch = await readHashList(stream(path.join(SNAPSHOT, 'files/list/noarch.hash.xz')));
    const src = await readHashList(stream(path.join(SNAPSHOT, 'files/list/src.hash.xz')));
    expect(x86.size + noarch.size + src.size).toBe(6);
    for (const m of [x86, noarch, src]) for (const [f, sha] of m) expect(sha).toBe(SHA256.get(f));
  });
});
