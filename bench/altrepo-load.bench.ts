/**
 * altrepo-repo into embedded ClickHouse (chDB): an ALT snapshot of 2,000 real, distinct
 * packages (the ones bench/rpm.bench.ts builds with rpmbuild and caches in
 * `$TMPDIR/sluice-bench-rpm-v1/`; built here the same way when the cache is missing),
 * loaded twice in one process, the way a daily load of an unchanged branch goes:
 *
 * - first load: every package read (headers parsed, md5/sha1/sha256/blake2b of the file,
 *   checked against the list and `files/list`), and all its rows written;
 * - second load, the next date: the package list read, every package found stored by
 *   `seen` (its MD5 from the list), so no package file is opened and only
 *   `repository_state` rows are written. The list is in genpkglist's form, as ALT's
 *   are (no SHA1HEADER or SIGMD5 in it), so each package's id is looked up in
 *   `package_hash` by MD5 as well: the realistic path, one more batched query.
 *
 * value: second load, packages/s. baseline: first load, packages/s.
 * ratio: value / baseline, the speed of the second load over the first; target 5.
 * peak_rss_growth_mb: the process's peak RSS minus its RSS right after the store was
 *   opened (chDB maps ~600 MB by itself); target < 256 (`rss_target_mb`).
 * Checks (the bench fails otherwise): both runs succeed without errors; after the first,
 * `packages` and `package_hash` hold 2,000 packages; the second writes exactly 2,000
 * records, all `repository_state` rows, and no other table grows.
 *
 * The snapshot (`noarch/RPMS.classic/` hard links to the cached packages,
 * `noarch/base/pkglist.classic.xz` in genpkglist's form by sources/altrepo/pkglist.ts, a
 * release file with its BLAKE2b, `files/list/noarch.hash.xz`) is made once into
 * `$TMPDIR/sluice-bench-altrepo-v2/` and reused. `BENCH_QUICK=1`: 200 packages.
 */
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import repoPipeline from '../pipelines/altrepo-repo.ts';
import { openEmbeddedStore } from '../runtime/clickhouse/embedded-store.ts';
import { quoteIdentifier, type ClickHouseStore } from '../runtime/clickhouse/store.ts';
import { createLogger } from '../runtime/log.ts';
import { runPipeline } from '../runtime/runner.ts';
import { pkglistHeader } from '../sources/altrepo/pkglist.ts';
import { PACKAGE_TABLES, repositoryState } from '../sources/altrepo/tables.ts';
import { readPackage } from '../sources/rpm/index.ts';
import { fail, note, peakRssMb, report, round, rssMb } from './report.ts';

const BENCH = 'altrepo-load';
const QUICK = process.env.BENCH_QUICK === '1';
const COUNT = QUICK ? 200 : 2000;
const TARGET_RATIO = 5;
const TARGET_RSS_MB = 256;
const RPM_CACHE = path.join(os.tmpdir(), `sluice-bench-rpm-v1${QUICK ? '-quick' : ''}`);
const SNAPSHOT = path.join(os.tmpdir(), `sluice-bench-altrepo-v2${QUICK ? '-quick' : ''}`);
const run = promisify(execFile);

// ---- the packages: bench/rpm.bench.ts's generator and cache ----------------------------

/** The spec of bench/rpm.bench.ts: subpackages `first` … `first + n − 1`. */
function spec(part: number, first: number, n: number): string {
  const out = [
    `Name: sluice-bench-${part}`, 'Version: 1.0', 'Release: alt1', 'Summary: sluice RPM benchmark', 'License: MIT',
    'Group: Development/Other', 'BuildArch: noarch', 'AutoReqProv: no', '%description', 'Benchmark packages.', '',
  ];
  const install = ['%install'];
  const files: string[] = [];
  for (let i = first; i < first + n; i++) {
    const id = String(i).padStart(4, '0');
    const kib = 1 + ((i * 7919) % 64);
    out.push(
      `%package -n bench-p${id}`, `Summary: benchmark package ${i}`, `Version: ${1 + (i % 7)}.${i}`, `Release: alt${1 + (i % 3)}`,
      `Group: Development/Other`, `Requires: bench-p${String((i + 1) % COUNT).padStart(4, '0')} >= 1.0`, `Provides: bench-virtual-${i % 10} = ${i}`,
      `%description -n bench-p${id}`, `Benchmark package number ${i}, with ${kib} KiB of data.`, '',
    );
    const dir = `%{buildroot}/usr/share/bench/p${id}`;
    install.push(
      `mkdir -p ${dir}/sub && head -c ${kib * 768} /dev/urandom | base64 > ${dir}/data.txt && ` +
        `echo ${i} > ${dir}/sub/id && ln -s data.txt ${dir}/link` +
        (i % 50 === 0 ? ` && head -c 786432 /dev/urandom | base64 > ${dir}/big.txt` : ''),
    );
    files.push(`%files -n bench-p${id}`, `/usr/share/bench/p${id}`, '');
  }
  return [...out, ...install, '', ...files].join('\n');
}

async function packages(): Promise<string[]> {
  const rpmsDir = path.join(RPM_CACHE, 'RPMS', 'noarch');
  const list = () => (fs.existsSync(rpmsDir) ? fs.readdirSync(rpmsDir).filter((f) => f.startsWith('bench-p')).sort() : []);
  if (fs.existsSync(path.join(RPM_CACHE, 'COMPLETE')) && list().length === COUNT) return list().map((f) => path.join(rpmsDir, f));
  if (spawnSync('rpmbuild', ['--version'], { stdio: 'ignore' }).status !== 0) fail(BENCH, 'rpmbuild is not installed and no cached packages in ' + RPM_CACHE);
  fs.rmSync(RPM_CACHE, { recursive: true, force: true });
  fs.mkdirSync(path.join(RPM_CACHE, 'SPECS'), { recursive: true });
  note(`building ${COUNT} packages with rpmbuild into ${RPM_CACHE} …`);
  const per = COUNT / 2;
  await Promise.all([0, 1].map(async (part) => {
    const file = path.join(RPM_CACHE, 'SPECS', `bench-${part}.spec`);
    fs.writeFileSync(file, spec(part, part * per, per));
    await run('rpmbuild', ['--quiet', '-bb', '--define', `_topdir ${RPM_CACHE}`, '--define', `_builddir ${RPM_CACHE}/BUILD-${part}`,
      '--define', `_buildrootdir ${RPM_CACHE}/BUILDROOT-${part}`, '--define', '_binary_payload w6.gzdio', '--define', '__os_install_post %{nil}', file],
    { maxBuffer: 64 * 1024 * 1024 });
  }));
  if (list().length !== COUNT) fail(BENCH, `rpmbuild made ${list().length} packages, expected ${COUNT}`);
  fs.writeFileSync(path.join(RPM_CACHE, 'COMPLETE'), `${COUNT}\n`);
  for (const part of [0, 1]) fs.rmSync(path.join(RPM_CACHE, `BUILDROOT-${part}`), { recursive: true, force: true });
  return list().map((f) => path.join(rpmsDir, f));
}

// ---- the snapshot around them ----------------------------------------------------------

const hex = (algo: string, data: Buffer) => createHash(algo).update(data).digest('hex');

function xz(data: Buffer): Buffer {
  const r = spawnSync('xz', ['-c', '-6', '-T1'], { input: data, maxBuffer: 1 << 30 });
  if (r.status !== 0) fail(BENCH, `xz failed: ${r.stderr}`);
  return r.stdout;
}

async function snapshot(files: string[]): Promise<{ root: string; bytes: number }> {
  const rpms = path.join(SNAPSHOT, 'noarch', 'RPMS.classic');
  const marker = path.join(SNAPSHOT, 'COMPLETE');
  const size = () => files.reduce((n, f) => n + fs.statSync(f).size, 0);
  if (fs.existsSync(marker) && fs.readFileSync(marker, 'utf8').trim() === String(COUNT)) return { root: SNAPSHOT, bytes: size() };
  note(`making the snapshot in ${SNAPSHOT} …`);
  fs.rmSync(SNAPSHOT, { recursive: true, force: true });
  fs.mkdirSync(rpms, { recursive: true });
  const headers: Buffer[] = [];
  const hashes: string[] = [];
  for (const file of files) {
    const name = path.basename(file);
    try {
      fs.linkSync(file, path.join(rpms, name));
    } catch {
      fs.copyFileSync(file, path.join(rpms, name));
    }
    const bytes = fs.readFileSync(file);
    const pkg = await readPackage([bytes], { source: file });
    headers.push(pkglistHeader(pkg, { filename: name, size: bytes.length, md5: pkg.digests.md5, blake2b: pkg.digests.blake2b }, 'genpkglist'));
    hashes.push(`${pkg.digests.sha256}  ${name}`);
  }
  const list = xz(Buffer.concat(headers));
  fs.mkdirSync(path.join(SNAPSHOT, 'noarch', 'base'), { recursive: true });
  fs.writeFileSync(path.join(SNAPSHOT, 'noarch', 'base', 'pkglist.classic.xz'), list);
  fs.writeFileSync(path.join(SNAPSHOT, 'noarch', 'base', 'release'),
    ['Label: bench', 'Architectures: noarch', 'Components: classic', 'BLAKE2b:', ` ${hex('blake2b512', list)} ${list.length} base/pkglist.classic.xz`, ''].join('\n'));
  fs.mkdirSync(path.join(SNAPSHOT, 'files', 'list'), { recursive: true });
  fs.writeFileSync(path.join(SNAPSHOT, 'files', 'list', 'noarch.hash.xz'), xz(Buffer.from(hashes.join('\n') + '\n')));
  fs.writeFileSync(marker, `${COUNT}\n`);
  return { root: SNAPSHOT, bytes: size() };
}

// ---- the loads -------------------------------------------------------------------------

async function counts(store: ClickHouseStore): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of [...Object.values(PACKAGE_TABLES), repositoryState]) {
    const rows = await store.query<{ n: string }>(`SELECT count() AS n FROM ${quoteIdentifier(store.database)}.${quoteIdentifier(t.name)}`);
    out[t.name] = Number(rows[0]!.n);
  }
  return out;
}

const files = await packages();
const { root, bytes } = await snapshot(files);
// both loads find the package files and the lists in the page cache
for (const f of fs.readdirSync(path.join(root, 'noarch', 'RPMS.classic'))) fs.readFileSync(path.join(root, 'noarch', 'RPMS.classic', f));

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-altrepo-'));
const log = createLogger({ level: 'warn' });
try {
  const store = await openEmbeddedStore({ dir: path.join(work, 'clickhouse'), database: 'sluice' });
  const rssAfterOpen = rssMb();
  const load = async (date: string) => {
    const started = performance.now();
    const record = await runPipeline({
      pipeline: repoPipeline,
      params: { path: root, branch: 'bench', date },
      openStore: () => Promise.resolve(store),
      keepStoreOpen: true,
      stateDir: path.join(work, 'state'),
      log,
    });
    const seconds = (performance.now() - started) / 1000;
    if (record.status !== 'succeeded' || record.errors.length) fail(BENCH, `load of ${date}: ${record.status}, errors ${JSON.stringify(record.errors.slice(0, 3))}`);
    return { seconds, record };
  };

  const first = await load('2024-01-02');
  const afterFirst = await counts(store);
  if (afterFirst.packages !== COUNT || afterFirst.package_hash !== COUNT) fail(BENCH, `first load stored ${afterFirst.packages} packages and ${afterFirst.package_hash} markers, expected ${COUNT}`);
  note(`first load: ${round(first.seconds, 2)} s, ${first.record.counts.records} rows (${JSON.stringify(afterFirst)})`);

  const second = await load('2024-01-03');
  const afterSecond = await counts(store);
  if (second.record.counts.records !== COUNT) fail(BENCH, `second load wrote ${second.record.counts.records} records, expected ${COUNT} repository_state rows`);
  for (const [table, n] of Object.entries(afterFirst)) {
    const want = table === 'repository_state' ? n + COUNT : n;
    if (afterSecond[table] !== want) fail(BENCH, `after the second load ${table} has ${afterSecond[table]} rows, expected ${want}`);
  }
  note(`second load: ${round(second.seconds, 2)} s`);
  await store.close();

  const firstRate = COUNT / first.seconds;
  const secondRate = COUNT / second.seconds;
  const peak = peakRssMb();
  await report({
    bench: BENCH,
    value: round(secondRate, 1),
    unit: 'packages/s (second load)',
    baseline: round(firstRate, 1),
    ratio: round(secondRate / firstRate, 2),
    target: TARGET_RATIO,
    peak_rss_mb: peak,
    packages: COUNT,
    list_form: 'genpkglist',
    total_mb: round(bytes / 1024 ** 2, 1),
    first_s: round(first.seconds, 3),
    second_s: round(second.seconds, 3),
    first_packages_per_s: round(firstRate, 1),
    second_packages_per_s: round(secondRate, 1),
    first_mb_per_s: round(bytes / 1024 ** 2 / first.seconds, 1),
    first_rows: first.record.counts.records,
    second_rows: second.record.counts.records,
    rss_after_open_mb: rssAfterOpen,
    peak_rss_growth_mb: round(peak - rssAfterOpen, 1),
    rss_target_mb: TARGET_RSS_MB,
  });
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
