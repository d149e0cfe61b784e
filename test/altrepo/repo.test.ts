/**
 * altrepo-repo end to end on embedded ClickHouse (chDB): the snapshot fixture, a flat
 * directory and an archive of the RPM fixtures, loaded and compared with what rpm
 * printed when the fixtures were made (fixtures/rpm/golden); pkg_hash against
 * ClickHouse's own murmurHash3_32; the second load; bad input (a truncated RPM, a
 * list that does not match its release file); a store that fails part of a package.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import repoPipeline, { REPO_TABLES } from '../../pipelines/altrepo-repo.ts';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import { quoteIdentifier, quoteString, type ClickHouseStore, type InsertOptions, type InsertRows } from '../../runtime/clickhouse/store.ts';
import { PermanentError, TransientError } from '../../runtime/errors.ts';
import { pkgHash } from '../../sources/rpm/index.ts';
import { qfRows, qfSections, RPMS, sums, text } from '../rpm/support.ts';
import { copyTree, RPM_FIXTURES, rowCount, run, scalar, SNAPSHOT, tempDir } from './support.ts';

let dir: string;
let store: ClickHouseStore;
const TABLES = Object.values(REPO_TABLES).map((t) => t.name);
const BASE = { branch: 'sisyphus', date: '2024-01-02' };

beforeAll(async () => {
  dir = await tempDir('repo');
  store = await openEmbeddedStore({ dir: path.join(dir, 'clickhouse'), database: 'sluice' });
});
afterAll(async () => {
  await store?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  for (const t of TABLES) await store.command(`DROP TABLE IF EXISTS ${quoteIdentifier(store.database)}.${quoteIdentifier(t)}`);
});

const t = (name: string) => `${quoteIdentifier(store.database)}.${quoteIdentifier(name)}`;
const state = () => path.join(dir, 'state');
const MD5 = sums('MD5SUMS');
const SHA1 = sums('SHA1SUMS');
const SHA256 = sums('SHA256SUMS');
const B2 = sums('B2SUMS');
const none = (s: string) => (s === '(none)' ? '' : s);

async function counts(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of TABLES) out[name] = await rowCount(store, name);
  return out;
}

describe('altrepo-repo on the snapshot fixture', () => {
  it('loads every package once, with the fields, files, dependencies and changelog rpm printed', async () => {
    const record = await run(repoPipeline, store, { path: SNAPSHOT, ...BASE }, { stateDir: state() });
    expect(record.status).toBe('succeeded');
    expect(record.errors).toEqual([]);
    expect(record.counts.items).toBe(6);

    const rows = await store.query<Record<string, string | number>>(`SELECT * FROM ${t('packages')} FINAL ORDER BY filename`);
    expect(rows.map((r) => r.filename)).toEqual(RPMS);
    for (const row of rows) {
      const f = String(row.filename);
      const q = qfSections(f);
      const s = (tag: string) => text(q.get(tag)!);
      expect(row).toMatchObject({
        name: s('NAME'), version: s('VERSION'), release: s('RELEASE'), arch: s('ARCH'),
        summary: s('SUMMARY'), description: s('DESCRIPTION'), license: s('LICENSE'), group: s('GROUP'),
        url: none(s('URL')), buildhost: s('BUILDHOST'), sourcerpm: none(s('SOURCERPM')),
        packager: none(s('PACKAGER')), vendor: none(s('VENDOR')), disttag: none(s('DISTTAG')),
        sha1header: s('SHA1HEADER'), payload_compressor: s('PAYLOADCOMPRESSOR'),
        md5: MD5.get(f), sha1: SHA1.get(f), sha256: SHA256.get(f), blake2b: B2.get(f),
        file_size: String(fs.statSync(path.join(RPM_FIXTURES, f)).size),
      });
      expect(Number(row.epoch)).toBe(s('EPOCH') === '(none)' ? 0 : Number(s('EPOCH')));
      expect(Number(row.size)).toBe(Number(s('SIZE')));
      expect(Number(row.is_source)).toBe(f.endsWith('.src.rpm') ? 1 : 0);
      expect(await scalar(store, `SELECT toUnixTimestamp(buildtime) AS n FROM ${t('packages')} WHERE filename = ${quoteString(f)}`)).toBe(Number(s('BUILDTIME')));
      const hash = String(row.pkg_hash);

      const files = await store.query<Record<string, string | number>>(
        `SELECT path, size, mode, digest, link_target, flags, user, group, toUnixTimestamp(mtime) AS mtime FROM ${t('package_files')} FINAL WHERE pkg_hash = ${hash} ORDER BY path`,
      );
      const want = qfRows(q, 'FILES').map(([p, size, mode, digest, link, flags, , user, group, mtime]) => [p, size, mode, digest, link, flags, user, group, mtime]);
      expect(files.map((r) => [r.path, r.size, r.mode, r.digest, r.link_target, r.flags, r.user, r.group, r.mtime].map(String))).toEqual(
        want.sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0)),
      );

      for (const [kind, tag] of [['require', 'REQUIRES'], ['provide', 'PROVIDES'], ['conflict', 'CONFLICTS'], ['obsolete', 'OBSOLETES'], ['recommend', 'RECOMMENDS'], ['suggest', 'SUGGESTS']] as const) {
        const deps = await store.query<{ name: string; flags: number; version: string }>(
          `SELECT name, flags, version FROM ${t('package_depends')} FINAL WHERE pkg_hash = ${hash} AND kind = '${kind}' ORDER BY name, flags, version`,
        );
        const expected = qfRows(q, tag).map(([name, flags, , , version]) => [name, flags, version ?? '']).sort((a, b) => (a.join('\t') < b.join('\t') ? -1 : 1));
        expect(deps.map((d) => [d.name, String(d.flags), d.version]).sort((a, b) => (a.join('\t') < b.join('\t') ? -1 : 1)), `${f} ${kind}`).toEqual(expected);
      }

      const log = await store.query<{ time: number; name: string; text: string }>(
        `SELECT toUnixTimestamp(time) AS time, name, text FROM ${t('package_changelog')} FINAL WHERE pkg_hash = ${hash} ORDER BY idx`,
      );
      expect(log.map((c) => [String(c.time), c.name])).toEqual(qfRows(q, 'CHANGELOG').map(([time, name]) => [time, name]));
      expect(log.every((c) => c.text.length > 0)).toBe(true);

      const marker = await store.query<{ rows: number; md5: string; sha256: string }>(`SELECT rows, md5, sha256 FROM ${t('package_hash')} FINAL WHERE pkg_hash = ${hash}`);
      expect(marker).toEqual([{ rows: 1 + files.length + (await scalar(store, `SELECT count() AS n FROM ${t('package_depends')} FINAL WHERE pkg_hash = ${hash}`)) + log.length, md5: MD5.get(f), sha256: SHA256.get(f) }]);
    }

    const where = await store.query<{ arch: string; component: string; filename: string }>(
      `SELECT arch, component, filename FROM ${t('repository_state')} FINAL WHERE branch = 'sisyphus' AND date = '2024-01-02' ORDER BY arch, component, filename`,
    );
    expect(where.map((r) => `${r.arch}/${r.component}/${r.filename}`)).toEqual([
      'noarch/checkinstall/sluice-latin1-1.0-alt0.1.noarch.rpm',
      'noarch/classic/sluice-bz2-0.9-1.noarch.rpm',
      'noarch/classic/sluice-xz-0.9-1.noarch.rpm',
      'noarch/classic/sluice-zstd-0.9-1.noarch.rpm',
      'src/classic/sluice-gz-1.2.3-alt1.src.rpm',
      'x86_64/classic/sluice-gz-1.2.3-alt1.x86_64.rpm',
    ]);
    // nothing was written twice
    expect(await counts()).toEqual(Object.fromEntries(await Promise.all(TABLES.map(async (n) => [n, await scalar(store, `SELECT count() AS n FROM ${t(n)} FINAL`)]))));
  }, 120_000);

  it("pkg_hash is ALT's id: ClickHouse's murmurHash3_32 over SHA1HEADER ‖ SIGMD5 (from rpm's golden output) and BUILDTIME give the same", async () => {
    await run(repoPipeline, store, { path: SNAPSHOT, ...BASE }, { stateDir: state() });
    for (const f of RPMS) {
      const q = qfSections(f);
      const [sha1, md5, gpg, buildtime] = ['SHA1HEADER', 'SIGMD5', 'SIGGPG', 'BUILDTIME'].map((k) => text(q.get(k)!));
      expect(gpg).toBe('(none)'); // unsigned fixtures: SIGGPG contributes no bytes
      const theirs = await store.query<{ h: string }>(
        `SELECT toString(bitOr(bitShiftLeft(toUInt64(${buildtime} - 1000000000), 32), toUInt64(murmurHash3_32(concat(unhex('${sha1}'), unhex('${md5}')))))) AS h`,
      );
      const ours = await store.query<{ h: string }>(`SELECT toString(pkg_hash) AS h FROM ${t('packages')} FINAL WHERE filename = ${quoteString(f)}`);
      expect(ours, f).toEqual(theirs);
    }
    // and with a signature (several SIGGPG bytes), against pkgHash itself
    const gpg = Buffer.from('89021c04000102000605024f3a1b2c000a0910aabbccddeeff0011', 'hex');
    const sigmd5 = Buffer.from('a9bc5a41f7dea83bbbffe033bef54acb', 'hex');
    const sha1header = 'da7db9ad5f62e5a652eb5461fb68394f064ba3ec';
    const [{ h }] = await store.query<{ h: string }>(
      `SELECT toString(bitOr(bitShiftLeft(toUInt64(1700000000 - 1000000000), 32), toUInt64(murmurHash3_32(concat(unhex('${sha1header}'), unhex('${sigmd5.toString('hex')}'), unhex('${gpg.toString('hex')}')))))) AS h`,
    ) as [{ h: string }];
    expect(pkgHash({ buildtime: 1700000000, sha1header, sigmd5, siggpg: gpg }).toString()).toBe(h);
  }, 120_000);

  it('the second load of an unchanged branch opens no package file and writes only repository_state rows', async () => {
    const root = path.join(dir, 'second');
    fs.rmSync(root, { recursive: true, force: true });
    copyTree(SNAPSHOT, root);
    const first = await run(repoPipeline, store, { path: root, ...BASE }, { stateDir: state() });
    expect(first.status).toBe('succeeded');
    const before = await counts();
    // the package files go away: the lists alone must do
    for (const sub of ['x86_64', 'noarch', 'SRPMS']) fs.rmSync(path.join(root, 'files', sub), { recursive: true, force: true });
    const second = await run(repoPipeline, store, { path: root, branch: 'sisyphus', date: '2024-01-03' }, { stateDir: state() });
    expect(second.status).toBe('succeeded');
    expect(second.errors).toEqual([]);
    expect(second.counts.records).toBe(6);
    const after = await counts();
    expect(after).toEqual({ ...before, repository_state: before.repository_state! + 6 });
    expect(await scalar(store, `SELECT count() AS n FROM ${t('repository_state')} FINAL WHERE date = '2024-01-03'`)).toBe(6);
    // the same state as the day before, ids included: from the merged lists for x86_64 and src, from package_hash for noarch (genpkglist's lists)
    const day = (d: string) => store.query(`SELECT arch, component, filename, toString(pkg_hash) AS h FROM ${t('repository_state')} FINAL WHERE date = '${d}' ORDER BY filename`);
    expect(await day('2024-01-03')).toEqual(await day('2024-01-02'));
    expect(await scalar(store, `SELECT count() AS n FROM (SELECT pkg_hash FROM ${t('repository_state')} WHERE date = '2024-01-03') AS s WHERE s.pkg_hash NOT IN (SELECT pkg_hash FROM ${t('packages')})`)).toBe(0);
  }, 120_000);
});

describe('altrepo-repo on a flat directory and on an archive', () => {
  it('a directory of RPMs: the same packages and ids; state rows by package arch; again: only state rows', async () => {
    const record = await run(repoPipeline, store, { path: RPM_FIXTURES, ...BASE }, { stateDir: state() });
    expect(record.status).toBe('succeeded');
    expect(record.counts.items).toBe(6);
    const got = await store.query<{ filename: string; h: string }>(`SELECT filename, toString(pkg_hash) AS h FROM ${t('packages')} FINAL ORDER BY filename`);
    const { readPackage } = await import('../../sources/rpm/index.ts');
    for (const r of got) expect(r.h).toBe(pkgHash(await readPackage(fs.createReadStream(path.join(RPM_FIXTURES, r.filename)))).toString());
    const where = await store.query<{ arch: string; component: string }>(`SELECT arch, component FROM ${t('repository_state')} FINAL ORDER BY arch`);
    expect(where.map((w) => `${w.arch}/${w.component}`)).toEqual(['noarch/', 'noarch/', 'noarch/', 'noarch/', 'src/', 'x86_64/']);
    const before = await counts();
    const again = await run(repoPipeline, store, { path: RPM_FIXTURES, ...BASE, date: '2024-01-03' }, { stateDir: state() });
    expect(again.counts.records).toBe(6);
    expect(await counts()).toEqual({ ...before, repository_state: before.repository_state! + 6 });
  }, 120_000);

  it('a tar.gz of RPMs: every member read once, the same packages', async () => {
    const tarball = path.join(dir, 'rpms.tar.gz');
    const r = spawnSync('tar', ['czf', tarball, '-C', RPM_FIXTURES, ...RPMS, 'make.sh']);
    expect(r.status, String(r.stderr)).toBe(0);
    const record = await run(repoPipeline, store, { path: tarball, ...BASE }, { stateDir: state() });
    expect(record.status).toBe('succeeded');
    expect(record.counts.items).toBe(6); // make.sh is not an RPM
    expect(await store.query(`SELECT filename FROM ${t('packages')} FINAL ORDER BY filename`)).toEqual(RPMS.map((filename) => ({ filename })));
    expect(await scalar(store, `SELECT count() AS n FROM ${t('package_hash')} FINAL`)).toBe(6);
  }, 120_000);
});

describe('layout', () => {
  it('layout=snapshot on a directory that is not one stops the run saying so; layout=flat reads a snapshot as plain RPMs', async () => {
    const bad = await run(repoPipeline, store, { path: RPM_FIXTURES, ...BASE, layout: 'snapshot' }, { stateDir: state() });
    expect(bad.status).toBe('failed');
    expect(bad.errors[0]!.message).toMatch(/fixtures\/rpm is not an ALT snapshot: no <arch>\/base\/ with a package list or a release file/);
    const flat = await run(repoPipeline, store, { path: SNAPSHOT, ...BASE, layout: 'flat' }, { stateDir: state() });
    expect(flat.status).toBe('succeeded');
    // the files under files/ (the RPMS.<comp>/ entries are symlinks, not followed)
    expect(flat.counts.items).toBe(6);
    expect(await scalar(store, `SELECT count() AS n FROM ${t('repository_state')} FINAL WHERE component = ''`)).toBe(6);
  }, 120_000);
});

describe('bad input', () => {
  it('a truncated RPM: its item fails naming the file and the offset, dead-lettered; every other package is loaded in full', async () => {
    const root = path.join(dir, 'truncated');
    fs.rmSync(root, { recursive: true, force: true });
    copyTree(SNAPSHOT, root);
    const victim = path.join(root, 'files/noarch/RPMS/sluice-xz-0.9-1.noarch.rpm');
    const original = fs.readFileSync(victim);
    fs.writeFileSync(victim, original.subarray(0, 5000));
    const stateDir = path.join(dir, 'state-truncated');
    const record = await run(repoPipeline, store, { path: root, ...BASE }, { stateDir, onError: 'dead-letter' });
    expect(record.status).toBe('succeeded');
    expect(record.counts.deadLettered).toBe(1);
    expect(record.errors).toHaveLength(1);
    expect(record.errors[0]).toMatchObject({ kind: 'permanent', item: 'noarch/RPMS.classic/sluice-xz-0.9-1.noarch.rpm' });
    expect(record.errors[0]!.message).toMatch(/noarch\/RPMS\.classic\/sluice-xz-0\.9-1\.noarch\.rpm: truncated RPM: .* at byte \d+/);
    const letters = fs.readdirSync(path.join(stateDir, 'dead-letter', 'altrepo-repo'));
    const lines = fs.readFileSync(path.join(stateDir, 'dead-letter', 'altrepo-repo', letters[0]!), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toMatchObject([{ item: 'noarch/RPMS.classic/sluice-xz-0.9-1.noarch.rpm', errorKind: 'permanent' }]);
    // the five others: whole, and marked
    expect(await store.query(`SELECT filename FROM ${t('package_hash')} FINAL ORDER BY filename`)).toEqual(RPMS.filter((f) => !f.startsWith('sluice-xz')).map((filename) => ({ filename })));
    expect(await scalar(store, `SELECT count() AS n FROM ${t('packages')} FINAL`)).toBe(5);
    expect(await scalar(store, `SELECT count() AS n FROM ${t('package_files')} FINAL`)).toBe(88 - 11);
    // noarch's lists are genpkglist's (no id in them): the broken package's id is not known, so no state row for it
    expect(await scalar(store, `SELECT count() AS n FROM ${t('repository_state')} FINAL`)).toBe(5);

    // mended, run again: only the missing package is loaded
    fs.writeFileSync(victim, original);
    const again = await run(repoPipeline, store, { path: root, ...BASE }, { stateDir });
    expect(again.errors).toEqual([]);
    expect(await store.query(`SELECT filename FROM ${t('package_hash')} ORDER BY filename`)).toEqual(RPMS.map((filename) => ({ filename })));
    // 6 state rows, and the xz package's rows and marker
    const xzRows = await scalar(store, `SELECT rows AS n FROM ${t('package_hash')} FINAL WHERE filename = 'sluice-xz-0.9-1.noarch.rpm'`);
    expect(xzRows).toBe(1 + 11 + qfRows(qfSections('sluice-xz-0.9-1.noarch.rpm'), 'REQUIRES').length + qfRows(qfSections('sluice-xz-0.9-1.noarch.rpm'), 'PROVIDES').length + 1);
    expect(again.counts.records).toBe(6 + xzRows + 1);
    expect(await scalar(store, `SELECT count() AS n FROM ${t('repository_state')} FINAL`)).toBe(6);
  }, 120_000);

  it('a truncated RPM in a flat directory (skip): named with its path and offset, the rest loaded', async () => {
    const flat = path.join(dir, 'flat-bad');
    fs.rmSync(flat, { recursive: true, force: true });
    fs.mkdirSync(flat);
    for (const f of RPMS) fs.copyFileSync(path.join(RPM_FIXTURES, f), path.join(flat, f));
    const bytes = fs.readFileSync(path.join(flat, 'sluice-zstd-0.9-1.noarch.rpm'));
    fs.writeFileSync(path.join(flat, 'sluice-zstd-0.9-1.noarch.rpm'), bytes.subarray(0, bytes.length - 100));
    const record = await run(repoPipeline, store, { path: flat, ...BASE }, { stateDir: state() });
    expect(record.counts.skipped).toBe(1);
    expect(record.errors[0]!.message).toMatch(new RegExp(`${flat.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/sluice-zstd-0\\.9-1\\.noarch\\.rpm: truncated RPM: the signature says header \\+ payload are \\d+ bytes, the input ends after \\d+ at byte ${bytes.length - 100}`));
    expect(await scalar(store, `SELECT count() AS n FROM ${t('package_hash')} FINAL`)).toBe(5);
  }, 120_000);

  it('a listed package whose file is missing, and one whose file differs from its list: each fails naming it', async () => {
    const root = path.join(dir, 'missing');
    fs.rmSync(root, { recursive: true, force: true });
    copyTree(SNAPSHOT, root);
    fs.rmSync(path.join(root, 'files/noarch/RPMS/sluice-bz2-0.9-1.noarch.rpm'));
    // another real package under the latin1 package's name: a valid RPM, not the one listed
    fs.copyFileSync(path.join(RPM_FIXTURES, 'sluice-xz-0.9-1.noarch.rpm'), path.join(root, 'files/noarch/RPMS/sluice-latin1-1.0-alt0.1.noarch.rpm'));
    const record = await run(repoPipeline, store, { path: root, ...BASE }, { stateDir: state() });
    expect(record.counts.skipped).toBe(2);
    const byItem = Object.fromEntries(record.errors.map((e) => [e.item, e.message]));
    expect(byItem['noarch/RPMS.classic/sluice-bz2-0.9-1.noarch.rpm']).toMatch(/^package file not found: looked for .*noarch\/RPMS\.classic\/sluice-bz2-0\.9-1\.noarch\.rpm and .*files\/noarch\/RPMS\/sluice-bz2-0\.9-1\.noarch\.rpm/);
    expect(byItem['noarch/RPMS.checkinstall/sluice-latin1-1.0-alt0.1.noarch.rpm']).toMatch(
      new RegExp(`noarch/RPMS\\.checkinstall/sluice-latin1-1\\.0-alt0\\.1\\.noarch\\.rpm: MD5 is ${MD5.get('sluice-xz-0.9-1.noarch.rpm')}, but noarch/base/pkglist\\.checkinstall\\.xz says ${MD5.get('sluice-latin1-1.0-alt0.1.noarch.rpm')}`),
    );
    expect(await scalar(store, `SELECT count() AS n FROM ${t('package_hash')} FINAL`)).toBe(4);
  }, 120_000);

  it('a package list that does not match its release file is not read; the other lists are', async () => {
    const root = path.join(dir, 'badsum');
    fs.rmSync(root, { recursive: true, force: true });
    copyTree(SNAPSHOT, root);
    const release = path.join(root, 'noarch/base/release');
    const text0 = fs.readFileSync(release, 'utf8');
    fs.writeFileSync(release, text0.replace(/^ ([0-9a-f]{128}) (\d+) base\/pkglist\.classic\.xz$/m, (_m, _h, size) => ` ${'0'.repeat(128)} ${size} base/pkglist.classic.xz`));
    const record = await run(repoPipeline, store, { path: root, ...BASE }, { stateDir: state() });
    expect(record.counts.skipped).toBe(1);
    expect(record.errors).toMatchObject([{ item: 'noarch/base/pkglist.classic.xz', kind: 'permanent' }]);
    expect(record.errors[0]!.message).toMatch(/^noarch\/base\/pkglist\.classic\.xz: BLAKE2b is [0-9a-f]{128}, the release file says 0{128}/);
    expect(await store.query(`SELECT filename FROM ${t('package_hash')} FINAL ORDER BY filename`)).toEqual(
      ['sluice-gz-1.2.3-alt1.src.rpm', 'sluice-gz-1.2.3-alt1.x86_64.rpm', 'sluice-latin1-1.0-alt0.1.noarch.rpm'].map((filename) => ({ filename })),
    );
  }, 120_000);
});

/** The store, with hooks before and after every insert (to fail some, or to lose the answer of some). */
class HookedStore implements ClickHouseStore {
  constructor(
    private readonly inner: ClickHouseStore,
    private readonly hook: (table: string, rows: Record<string, unknown>[]) => Promise<void>,
    private readonly after: (table: string) => Promise<void> = async () => undefined,
  ) {}
  get kind() { return this.inner.kind; }
  get description() { return this.inner.description; }
  get database() { return this.inner.database; }
  version() { return this.inner.version(); }
  features() { return this.inner.features(); }
  command(sql: string, settings?: Record<string, string | number>) { return this.inner.command(sql, settings); }
  query<T = Record<string, unknown>>(sql: string): Promise<T[]> { return this.inner.query<T>(sql); }
  queryText(sql: string, format: string) { return this.inner.queryText(sql, format); }
  async insert(table: string, rows: InsertRows, options?: InsertOptions): Promise<void> {
    const list = [...(rows as Iterable<Record<string, unknown>>)];
    await this.hook(table, list);
    await this.inner.insert(table, list, options);
    await this.after(table);
  }
  close() { return Promise.resolve(); }
}

describe('a package counts as stored only when all its rows are written', () => {
  it('files of one package rejected for good: the package is not marked (its item fails), the others are; the next run loads it in full', async () => {
    const xz = pkgHash(await (await import('../../sources/rpm/index.ts')).readPackage(fs.createReadStream(path.join(RPM_FIXTURES, 'sluice-xz-0.9-1.noarch.rpm')))).toString();
    const failing = new HookedStore(store, async (table, rows) => {
      if (table === 'package_files' && rows.some((r) => r.pkg_hash === xz && String(r.path).endsWith('/f2.txt'))) {
        throw new PermanentError('Cannot parse input: simulated bad row');
      }
    });
    const record = await run(repoPipeline, failing, { path: SNAPSHOT, ...BASE }, { stateDir: state() });
    expect(record.counts.skipped).toBe(1);
    expect(record.errors[0]!.item).toBe('noarch/RPMS.classic/sluice-xz-0.9-1.noarch.rpm');
    expect(await scalar(store, `SELECT count() AS n FROM ${t('package_hash')} FINAL WHERE pkg_hash = ${xz}`)).toBe(0);
    expect(await scalar(store, `SELECT count() AS n FROM ${t('package_hash')} FINAL`)).toBe(5);
    // its other rows were written (a batch is split until only the bad row is left): not enough to count
    expect(await scalar(store, `SELECT count() AS n FROM ${t('packages')} FINAL WHERE pkg_hash = ${xz}`)).toBe(1);

    const again = await run(repoPipeline, store, { path: SNAPSHOT, ...BASE }, { stateDir: state() });
    expect(again.errors).toEqual([]);
    expect(await scalar(store, `SELECT count() AS n FROM ${t('package_hash')} FINAL`)).toBe(6);
    expect(await scalar(store, `SELECT count() AS n FROM ${t('package_files')} FINAL WHERE pkg_hash = ${xz}`)).toBe(11);
  }, 120_000);

  it('an insert whose answer is lost is retried: every row once, every marker once', async () => {
    let lost = 0;
    // the rows are stored, then the answer is lost
    const flaky = new HookedStore(store, async () => undefined, async (table) => {
      if ((table === 'package_hash' || table === 'package_files') && lost < 2) {
        lost++;
        throw new TransientError('Connection reset by peer (simulated)');
      }
    });
    const record = await run(repoPipeline, flaky, { path: SNAPSHOT, ...BASE }, { stateDir: state() });
    expect(record.status).toBe('succeeded');
    expect(record.counts.retries).toBeGreaterThanOrEqual(2);
    expect(await rowCount(store, 'package_hash')).toBe(6);
    expect(await rowCount(store, 'package_files')).toBe(88);
  }, 120_000);
});

