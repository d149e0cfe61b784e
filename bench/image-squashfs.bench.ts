/**
 * squashfs (xz) listing and hashing: sluice's `image()` source against `unsquashfs`
 * extracting the image plus `sha256sum` of the extracted tree, in the same run.
 *
 * Input: the same generated tree as image-iso.bench.ts (~1 GiB; `BENCH_QUICK=1`:
 * 128 MiB), made into a squashfs by `mksquashfs -comp xz` (128 KiB blocks) once and
 * reused (`BENCH_IMAGES_REBUILD=1` makes it again).
 *
 * value: MiB/s of file content listed and sha256-hashed by a pipeline (source
 *   `image()`, each entry's `content()` hashed, a null sink), best of 2.
 * baseline: MiB/s of `unsquashfs -d DIR IMAGE` (which decompresses on every core)
 *   then `find DIR -type f -print0 | xargs -0 sha256sum`, best of 2, runs alternating.
 * ratio = value / baseline; target 0.5; peak RSS target < 256 MiB (of the process that
 * ran the pipeline: one child process per run).
 * The bench checks that both saw the same files with the same sha256.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { BENCH_DIR, compare, makeTree, measure, parseSums, QUICK, timed, TREE, TREE_MIB } from './image-iso.bench.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

const BENCH = 'image-squashfs';
for (const tool of ['mksquashfs', 'unsquashfs']) if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0) fail(BENCH, `${tool} is not installed (Debian: apt-get install -y squashfs-tools)`);
const tree = makeTree();
const image = path.join(BENCH_DIR, `tree-${TREE_MIB}MiB.xz.squashfs`);
if (!fs.existsSync(`${image}.ok`) || process.env.BENCH_IMAGES_REBUILD === '1') {
  note(`${BENCH}: making the squashfs with mksquashfs -comp xz (once; minutes for 1 GiB)`);
  timed(BENCH, `mksquashfs "${TREE}" "${image}" -comp xz -noappend -no-progress -quiet`);
  fs.writeFileSync(`${image}.ok`, '');
}
const out = path.join(BENCH_DIR, 'squashfs-extract');
const sumsFile = path.join(BENCH_DIR, 'squashfs-sums.txt');
const mib = tree.bytes / 2 ** 20;
note(`${BENCH}: ${tree.files} files, ${mib.toFixed(0)} MiB, squashfs ${(fs.statSync(image).size / 2 ** 20).toFixed(0)} MiB`);
measure(BENCH, image); // warm-up
let bestTool = Infinity;
let bestOurs = Infinity;
let peak = 0;
let theirs = new Map<string, string>();
let mine = new Map<string, string>();
for (let i = 0; i < 2; i++) {
  fs.rmSync(out, { recursive: true, force: true });
  const t = timed(BENCH, `unsquashfs -no-progress -d "${out}" "${image}" >/dev/null && cd "${out}" && find . -type f -print0 | xargs -0 sha256sum > "${sumsFile}"`);
  theirs = parseSums(fs.readFileSync(sumsFile, 'utf8'), '.');
  fs.rmSync(out, { recursive: true, force: true });
  const o = measure(BENCH, image);
  mine = o.sums;
  peak = Math.max(peak, o.peakRssMb);
  note(`${BENCH}: run ${i + 1}: unsquashfs+sha256sum ${(mib / t).toFixed(1)} MiB/s, sluice ${(mib / o.seconds).toFixed(1)} MiB/s`);
  bestTool = Math.min(bestTool, t);
  bestOurs = Math.min(bestOurs, o.seconds);
}
compare(BENCH, mine, theirs);
const value = mib / bestOurs;
const baseline = mib / bestTool;
await report({
  bench: BENCH,
  value: round(value, 1),
  unit: 'MiB/s',
  baseline: round(baseline, 1),
  ratio: round(value / baseline),
  target: 0.5,
  peak_rss_mb: peak,
  rss_target_mb: 256,
  bench_process_rss_mb: peakRssMb(),
  files: tree.files,
  tree_mib: round(mib, 1),
  quick: QUICK,
});
