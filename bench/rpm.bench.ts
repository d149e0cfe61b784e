/**
 * RPM reading: 2,000 real, distinct packages (built by rpmbuild from one generated spec
 * with 2,000 subpackages: each its own name, version, summary, dependencies and files,
 * 1–64 KiB of data, every 50th with an extra 1 MiB file; gzip payloads) read by sluice
 * — lead, signature and main header parsed, NAME/VERSION/RELEASE/ARCH/SHA1HEADER/SIGMD5
 * taken, pkgHash computed, and md5 + sha1 + sha256 + blake2b-512 of the whole file in
 * the same pass — against what a shell script does today: one
 * `rpm -qp --queryformat '%{NAME} %{VERSION} …\n' <all files>` process, then one
 * `sha256sum <all files>` (one digest, not four).
 *
 * value: sluice files/s, wall time of the whole pass, with two packages in flight at a
 *   time (`BENCH_RPM_IN_FLIGHT`, default 2) as a loader runs items concurrently under the
 *   runner's `maxInFlight`; files read with `readSync` in chunks of up to 1 MiB, see
 *   `fileChunks`. sluice's own threads count: headers are parsed and md5 computed on the
 *   main thread while sluice's hash worker (sources/rpm/digests.ts: one thread, chunks
 *   handed over in shared memory) computes sha1, sha256 and blake2b-512 — all four
 *   digests of every file, as before. Two packages in flight let the main thread read and
 *   parse one package while the worker hashes the other.
 * baseline: files/s of rpm + sha256sum, run one after the other (their wall times added).
 * ratio = value / baseline; target 1.0 (at least as fast as the tools).
 * Extra fields: the same work on the tools' side (rpm + md5sum + sha1sum + sha256sum +
 *   b2sum, four digests like sluice) as `baseline_same_digests` / `ratio_same_digests`,
 *   and each tool's time. Hashing is most of sluice's work (node:crypto, ~3.7 ns a byte
 *   for the four digests); the brief's baseline computes one digest where sluice
 *   computes four. On a loaded machine the result swings with scheduling (the hand-over
 *   between the two threads waits on the other thread being scheduled).
 * Both sides run three times after a warm-up read of every file (so both find them in the page
 * cache); the better run of each counts. The bench checks that sluice's names, versions
 * and sha256 equal rpm's and sha256sum's, and exits non-zero if not.
 *
 * Needs `rpm` and `rpmbuild` (Debian: `apt-get install rpm`). The packages are built
 * once into `$TMPDIR/sluice-bench-rpm-v1/` (about a minute on 2 cores) and reused by
 * later runs; `BENCH_RPM_REBUILD=1` rebuilds them. `BENCH_QUICK=1`: 200 packages.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pkgHash, readPackage } from '../sources/rpm/package.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

const BENCH = 'rpm';
const QUICK = process.env.BENCH_QUICK === '1';
const COUNT = QUICK ? 200 : 2000;
/** packages read at once, like a loader's `maxInFlight` (env `BENCH_RPM_IN_FLIGHT`) */
const IN_FLIGHT = Math.max(1, Number(process.env.BENCH_RPM_IN_FLIGHT ?? 2));
const BUILDERS = 2; // rpmbuild processes, each building COUNT / BUILDERS subpackages
const ROOT = path.join(os.tmpdir(), `sluice-bench-rpm-v1${QUICK ? '-quick' : ''}`);
const run = promisify(execFile);

for (const tool of ['rpm', 'rpmbuild', 'md5sum', 'sha1sum', 'sha256sum', 'b2sum']) {
  if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0) {
    fail(BENCH, `${tool} is not installed; the baseline needs it (Debian: apt-get install -y rpm coreutils)`);
  }
}

/** A spec whose subpackages are numbered `first` … `first + n − 1`. */
function spec(part: number, first: number, n: number): string {
  const out = [
    `Name: sluice-bench-${part}`,
    'Version: 1.0',
    'Release: alt1',
    'Summary: sluice RPM benchmark',
    'License: MIT',
    'Group: Development/Other',
    'BuildArch: noarch',
    'AutoReqProv: no',
    '%description',
    'Benchmark packages.',
    '',
  ];
  const install = ['%install'];
  const files: string[] = [];
  for (let i = first; i < first + n; i++) {
    const id = String(i).padStart(4, '0');
    const kib = 1 + ((i * 7919) % 64);
    out.push(
      `%package -n bench-p${id}`,
      `Summary: benchmark package ${i}`,
      `Version: ${1 + (i % 7)}.${i}`,
      `Release: alt${1 + (i % 3)}`,
      `Group: Development/Other`,
      `Requires: bench-p${String((i + 1) % COUNT).padStart(4, '0')} >= 1.0`,
      `Provides: bench-virtual-${i % 10} = ${i}`,
      `%description -n bench-p${id}`,
      `Benchmark package number ${i}, with ${kib} KiB of data.`,
      '',
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

async function build(): Promise<string[]> {
  const rpmsDir = path.join(ROOT, 'RPMS', 'noarch');
  const marker = path.join(ROOT, 'COMPLETE');
  if (process.env.BENCH_RPM_REBUILD !== '1' && fs.existsSync(marker)) {
    const list = fs.readdirSync(rpmsDir).filter((f) => f.startsWith('bench-p')).sort();
    if (list.length === COUNT) return list.map((f) => path.join(rpmsDir, f));
  }
  fs.rmSync(ROOT, { recursive: true, force: true });
  fs.mkdirSync(path.join(ROOT, 'SPECS'), { recursive: true });
  note(`building ${COUNT} packages with rpmbuild into ${ROOT} …`);
  const started = performance.now();
  const per = COUNT / BUILDERS;
  await Promise.all(
    Array.from({ length: BUILDERS }, async (_, part) => {
      const file = path.join(ROOT, 'SPECS', `bench-${part}.spec`);
      fs.writeFileSync(file, spec(part, part * per, per));
      await run(
        'rpmbuild',
        [
          '--quiet', '-bb',
          '--define', `_topdir ${ROOT}`,
          '--define', `_builddir ${ROOT}/BUILD-${part}`,
          '--define', `_buildrootdir ${ROOT}/BUILDROOT-${part}`,
          '--define', '_binary_payload w6.gzdio',
          '--define', '__os_install_post %{nil}',
          file,
        ],
        { maxBuffer: 64 * 1024 * 1024 },
      );
    }),
  );
  const list = fs.readdirSync(rpmsDir).filter((f) => f.startsWith('bench-p')).sort();
  if (list.length !== COUNT) fail(BENCH, `rpmbuild made ${list.length} packages, expected ${COUNT}`);
  fs.writeFileSync(marker, `${COUNT}\n`);
  fs.rmSync(path.join(ROOT, 'BUILDROOT-0'), { recursive: true, force: true });
  fs.rmSync(path.join(ROOT, 'BUILDROOT-1'), { recursive: true, force: true });
  note(`built in ${round((performance.now() - started) / 1000, 1)} s`);
  return list.map((f) => path.join(rpmsDir, f));
}

/** Run a tool over all files and return its stdout (and how long it took). */
function tool(command: string, args: string[]): Promise<{ stdout: string; seconds: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = (performance.now() - started) / 1000;
      if (code !== 0) reject(new Error(`${command} exited with ${code}: ${err.slice(0, 500)}`));
      else resolve({ stdout: Buffer.concat(out).toString('utf8'), seconds });
    });
  });
}

const QF = '%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{SHA1HEADER} %{SIGMD5}\\n';

async function baseline(files: string[]): Promise<{
  seconds: number;
  rpmSeconds: number;
  shaSeconds: number;
  otherDigestSeconds: number;
  lines: string[];
  sha256: string[];
}> {
  const rpm = await tool('rpm', ['-qp', '--queryformat', QF, ...files]);
  const sha = await tool('sha256sum', files);
  let otherDigestSeconds = 0;
  for (const other of ['md5sum', 'sha1sum', 'b2sum']) otherDigestSeconds += (await tool(other, files)).seconds;
  return {
    seconds: rpm.seconds + sha.seconds,
    rpmSeconds: rpm.seconds,
    shaSeconds: sha.seconds,
    otherDigestSeconds,
    lines: rpm.stdout.trimEnd().split('\n'),
    sha256: sha.stdout.trimEnd().split('\n').map((l) => l.slice(0, 64)),
  };
}

/**
 * A file's bytes in chunks of up to 1 MiB, read with `readSync` like the tools' own read
 * loops: the files are in the page cache, and on a loaded 2-core machine the thread-pool
 * round trips of async reads cost more than the reads themselves.
 */
function* fileChunks(file: string): Generator<Buffer> {
  const fd = fs.openSync(file, 'r');
  try {
    let left = fs.fstatSync(fd).size;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.max(1, Math.min(left, 1 << 20)));
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) return;
      left -= n;
      yield buf.subarray(0, n);
    }
  } finally {
    fs.closeSync(fd);
  }
}

async function sluice(files: string[]): Promise<{ seconds: number; lines: string[]; sha256: string[]; bytes: number }> {
  const lines: string[] = new Array(files.length);
  const sha256: string[] = new Array(files.length);
  const ids: bigint[] = new Array(files.length); // pkgHash, as a loader computes it
  let bytes = 0;
  const started = performance.now();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      const file = files[i]!;
      const pkg = await readPackage(fileChunks(file), { source: file });
      lines[i] = `${pkg.name} ${pkg.version} ${pkg.release} ${pkg.arch} ${pkg.sha1header} ${pkg.sigmd5?.toString('hex')}`;
      ids[i] = pkgHash(pkg);
      sha256[i] = pkg.digests.sha256;
      bytes += pkg.byteLength;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return { seconds: (performance.now() - started) / 1000, lines, sha256, bytes };
}

const files = await build();
// warm-up: every file read once, so both sides find them in the page cache
for (const file of files) fs.readFileSync(file);

let best: Awaited<ReturnType<typeof sluice>> | undefined;
let base: Awaited<ReturnType<typeof baseline>> | undefined;
for (let round_ = 0; round_ < 3; round_++) {
  const s = await sluice(files);
  if (!best || s.seconds < best.seconds) best = s;
  const b = await baseline(files);
  if (!base || b.seconds < base.seconds) base = b;
  note(
    `run ${round_ + 1}: sluice ${round(s.seconds, 2)} s; rpm ${round(b.rpmSeconds, 2)} s + sha256sum ${round(b.shaSeconds, 2)} s` +
      ` (+ md5sum, sha1sum, b2sum ${round(b.otherDigestSeconds, 2)} s)`,
  );
}
const s = best!;
const b = base!;

// same answers as the tools
for (let i = 0; i < files.length; i++) {
  if (s.lines[i] !== b.lines[i]) fail(BENCH, `${files[i]}: sluice read "${s.lines[i]}", rpm printed "${b.lines[i]}"`);
  if (s.sha256[i] !== b.sha256[i]) fail(BENCH, `${files[i]}: sluice sha256 ${s.sha256[i]}, sha256sum ${b.sha256[i]}`);
}

const value = files.length / s.seconds;
const baselineRate = files.length / b.seconds;
const sameDigestsRate = files.length / (b.seconds + b.otherDigestSeconds);
await report({
  bench: BENCH,
  value: round(value, 1),
  unit: 'files/s',
  baseline: round(baselineRate, 1),
  ratio: round(value / baselineRate, 3),
  target: 1.0,
  peak_rss_mb: peakRssMb(),
  files: files.length,
  total_mb: round(s.bytes / 1024 ** 2, 1),
  sluice_mb_per_s: round(s.bytes / 1024 ** 2 / s.seconds, 1),
  sluice_s: round(s.seconds, 3),
  rpm_s: round(b.rpmSeconds, 3),
  sha256sum_s: round(b.shaSeconds, 3),
  md5sum_sha1sum_b2sum_s: round(b.otherDigestSeconds, 3),
  baseline_same_digests: round(sameDigestsRate, 1),
  ratio_same_digests: round(value / sameDigestsRate, 3),
});
