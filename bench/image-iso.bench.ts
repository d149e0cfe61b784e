/**
 * ISO listing and hashing: sluice's `image()` source reading an ISO in one pass (no
 * extraction) against `xorriso -osirrox` extracting it plus `sha256sum` of the extracted
 * tree, in the same run, on the same ISO.
 *
 * Input: a generated tree (seeded: directories of 100 files, small files of 1–256 KiB
 * and, one in 200, large ones of 1–16 MiB, text-like content), ~1 GiB (`BENCH_QUICK=1`: 128 MiB),
 * made into an ISO by `xorriso -as mkisofs -R -J` once under
 * `$TMPDIR/sluice-bench-images-v2/` and reused (`BENCH_IMAGES_REBUILD=1` makes it again).
 *
 * value: MiB/s of file content listed and sha256-hashed by a pipeline (source `image()`,
 *   a transform that hashes each entry's `content()`, a null sink), best of 2.
 * baseline: MiB/s of `xorriso -osirrox on -indev ISO -extract / DIR` then
 *   `find DIR -type f -print0 | xargs -0 sha256sum`, best of 2, runs alternating.
 * ratio = value / baseline; target 1.0; peak RSS target < 256 MiB: `peak_rss_mb` is the
 * peak of the process that ran sluice's pipeline (one child process per run).
 * The bench checks that both saw the same files with the same sha256, and exits
 * non-zero if not.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { createLogger } from '../runtime/log.ts';
import { definePipeline, type Sink } from '../runtime/pipeline.ts';
import { runPipeline } from '../runtime/runner.ts';
import { mapConcurrent } from '../operators/map-concurrent.ts';
import { hashStream } from '../sources/files/hash-stream.ts';
import { image } from '../sources/images/image.ts';
import type { ImageEntry } from '../sources/images/image-entry.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

export const BENCH_DIR = path.join(os.tmpdir(), 'sluice-bench-images-v2');
export const QUICK = process.env.BENCH_QUICK === '1';
export const TREE_MIB = QUICK ? 128 : 1024;
export const TREE = path.join(BENCH_DIR, `tree-${TREE_MIB}MiB`);

/** The generated tree (made once): returns its file count and bytes. */
export function makeTree(): { files: number; bytes: number } {
  const ready = `${TREE}.ok`;
  if (fs.existsSync(ready) && process.env.BENCH_IMAGES_REBUILD !== '1') return JSON.parse(fs.readFileSync(ready, 'utf8')) as { files: number; bytes: number };
  fs.rmSync(TREE, { recursive: true, force: true });
  fs.mkdirSync(TREE, { recursive: true });
  note(`image bench: generating a ${TREE_MIB} MiB tree in ${TREE} (once)`);
  let s = 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  // a 4 MiB pool of text-like lines; files are slices of it at random offsets, each with its own first line
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima', 'mirror', 'package', 'release', 'x86_64', 'noarch', 'sisyphus', 'p10', 'build'];
  const lines: string[] = [];
  let poolBytes = 0;
  while (poolBytes < 4 * 2 ** 20) {
    const n = next();
    const line = `${words[n % 20]}-${(n >>> 5) % 1000}.${(n >>> 15) % 100} ${words[(n >>> 10) % 20]} ${next().toString(16)} ${next() % 100000} ${words[(n >>> 20) % 20]}\n`;
    lines.push(line);
    poolBytes += line.length;
  }
  const pool = Buffer.from(lines.join(''));
  const target = TREE_MIB * 2 ** 20;
  let bytes = 0;
  let files = 0;
  let dir = '';
  while (bytes < target) {
    if (files % 100 === 0) {
      dir = path.join(TREE, `d${String(Math.floor(files / 1000)).padStart(3, '0')}`, `s${String(Math.floor(files / 100) % 10)}`);
      fs.mkdirSync(dir, { recursive: true });
    }
    const large = next() % 1000 < 5;
    let size = large ? 2 ** 20 + (next() % (15 * 2 ** 20)) : 1024 + (next() % (256 * 1024));
    size = Math.min(size, target - bytes);
    const fd = fs.openSync(path.join(dir, `f${files}.txt`), 'w');
    const head = Buffer.from(`file ${files} ${next().toString(16)}\n`);
    fs.writeSync(fd, head.subarray(0, Math.min(head.length, size)));
    let written = Math.min(head.length, size);
    while (written < size) {
      const at = next() % (pool.length - 65536);
      const n = Math.min(65536, size - written);
      fs.writeSync(fd, pool, at, n);
      written += n;
    }
    fs.closeSync(fd);
    bytes += size;
    files++;
  }
  const info = { files, bytes };
  fs.writeFileSync(ready, JSON.stringify(info));
  return info;
}

/** `sha256sum` lines → relative path → sha256 */
export function parseSums(text: string, root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{64})  (.*)$/.exec(line);
    if (m) out.set(path.relative(root, m[2]!), m[1]!);
  }
  return out;
}

/** List and sha256 every file of `file` through the runner into a null sink; returns path → sha256. */
export async function hashImage(file: string): Promise<{ sums: Map<string, string>; bytes: number; seconds: number }> {
  const sums = new Map<string, string>();
  let bytes = 0;
  const sink: Sink<{ path: string; sha256: string; size: number }> = {
    name: 'null',
    kind: 'null',
    batch: { maxRecords: 1000 },
    write: (records) => {
      for (const r of records) {
        sums.set(r.path, r.sha256);
        bytes += r.size;
      }
    },
  };
  const pipeline = definePipeline({
    name: 'image-bench',
    description: 'list and sha256 every file of an image',
    params: z.object({}),
    permissions: { read: [file] },
    maxInFlight: 16,
    source: (ctx) => image(ctx, { path: file }),
    transform: () => mapConcurrent(async (e: ImageEntry) => ({ path: e.innerPath, size: e.size, sha256: (await hashStream(e.content())).sha256 }), 4),
    sinks: () => [sink],
  });
  const t0 = performance.now();
  const run = await runPipeline({ pipeline, stateDir: path.join(BENCH_DIR, 'state'), log: createLogger({ level: 'silent' }) });
  const seconds = (performance.now() - t0) / 1000;
  if (run.status !== 'succeeded') fail('image-bench', `the run ${run.status}: ${JSON.stringify(run.errors.slice(0, 3))}`);
  return { sums, bytes, seconds };
}

/**
 * `hashImage` in a child process of its own (so its peak RSS is its own, not the sum of
 * the runs and the baselines before it): seconds, sums, and the child's peak RSS.
 */
export function measure(bench: string, file: string): { seconds: number; sums: Map<string, string>; peakRssMb: number } {
  const sumsFile = path.join(BENCH_DIR, `${bench}-ours.json`);
  const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--measure', file, sumsFile], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  if (child.status !== 0) fail(bench, `the measuring child exited with ${child.status}`);
  const result = JSON.parse(child.stdout.trim().split('\n').pop()!) as { seconds: number; peakRssMb: number };
  const sums = new Map(Object.entries(JSON.parse(fs.readFileSync(sumsFile, 'utf8')) as Record<string, string>));
  return { ...result, sums };
}

/** Run a shell command, timed; fails the bench if it fails. */
export function timed(bench: string, command: string): number {
  const t0 = performance.now();
  const done = spawnSync('sh', ['-c', command], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (done.status !== 0) fail(bench, `${command} exited with ${done.status}`);
  return (performance.now() - t0) / 1000;
}

export function compare(bench: string, ours: Map<string, string>, theirs: Map<string, string>): void {
  if (ours.size !== theirs.size) fail(bench, `sluice saw ${ours.size} files, the tools ${theirs.size}`);
  for (const [p, sum] of theirs) if (ours.get(p) !== sum) fail(bench, `${p}: sluice ${ours.get(p)}, the tools ${sum}`);
}

async function main(): Promise<void> {
  const BENCH = 'image-iso';
  for (const tool of ['xorriso', 'sha256sum']) if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0) fail(BENCH, `${tool} is not installed (Debian: apt-get install -y xorriso coreutils)`);
  const tree = makeTree();
  const iso = path.join(BENCH_DIR, `tree-${TREE_MIB}MiB.iso`);
  if (!fs.existsSync(`${iso}.ok`) || process.env.BENCH_IMAGES_REBUILD === '1') {
    note(`${BENCH}: making the ISO with xorriso (once)`);
    timed(BENCH, `xorriso -as mkisofs -quiet -R -J -o "${iso}" "${TREE}" 2>/dev/null`);
    fs.writeFileSync(`${iso}.ok`, '');
  }
  const out = path.join(BENCH_DIR, 'iso-extract');
  const sumsFile = path.join(BENCH_DIR, 'iso-sums.txt');
  const mib = tree.bytes / 2 ** 20;
  note(`${BENCH}: ${tree.files} files, ${mib.toFixed(0)} MiB, ISO ${(fs.statSync(iso).size / 2 ** 20).toFixed(0)} MiB`);
  measure(BENCH, iso); // warm-up: page cache
  let bestTool = Infinity;
  let bestOurs = Infinity;
  let peak = 0;
  let theirs = new Map<string, string>();
  let mine = new Map<string, string>();
  for (let i = 0; i < 2; i++) {
    fs.rmSync(out, { recursive: true, force: true });
    const t = timed(BENCH, `xorriso -osirrox on -indev "${iso}" -extract / "${out}" >/dev/null 2>&1 && cd "${out}" && find . -type f -print0 | xargs -0 sha256sum > "${sumsFile}"`);
    theirs = parseSums(fs.readFileSync(sumsFile, 'utf8'), '.');
    fs.rmSync(out, { recursive: true, force: true });
    const o = measure(BENCH, iso);
    mine = o.sums;
    peak = Math.max(peak, o.peakRssMb);
    note(`${BENCH}: run ${i + 1}: xorriso+sha256sum ${(mib / t).toFixed(1)} MiB/s, sluice ${(mib / o.seconds).toFixed(1)} MiB/s`);
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
    target: 1.0,
    peak_rss_mb: peak,
    rss_target_mb: 256,
    bench_process_rss_mb: peakRssMb(),
    files: tree.files,
    tree_mib: round(mib, 1),
    quick: QUICK,
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === '--measure') {
    const { sums, seconds } = await hashImage(process.argv[3]!);
    fs.writeFileSync(process.argv[4]!, JSON.stringify(Object.fromEntries(sums)));
    process.stdout.write(`${JSON.stringify({ seconds, peakRssMb: peakRssMb() })}\n`);
  } else await main();
}
