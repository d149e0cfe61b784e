/**
 * gzip decoding: sluice's `gunzip` (sources/decoders/gzip.ts: node:zlib with 128 KiB
 * output chunks, as a web stream) against the `gzip` tool, on the same file.
 *
 * Input: the same 100 MiB of log-like text as decoders-xz.bench.ts (seeded generator,
 * same file under `$TMPDIR/sluice-bench-decoders-v1/`), compressed once with `gzip -6 -n`
 * and reused by later runs (`BENCH_DECODERS_REBUILD=1` makes it again).
 *
 * value: sluice MiB/s of decompressed output, the whole file drained from
 *   `gunzip(fs.createReadStream(file))` (web stream), best of 3.
 * baseline: MiB/s of `gzip -dc file > /dev/null` (a shell and the tool: nothing else),
 *   best of 3, runs alternating with ours.
 * ratio = value / baseline; target 1.0.
 * The bench checks that gunzip produces the original size, and exits non-zero if not.
 *
 * `BENCH_QUICK=1`: 20 MiB.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzip } from '../sources/decoders/gzip.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

const BENCH = 'decoders-gzip';
const QUICK = process.env.BENCH_QUICK === '1';
const MIB = QUICK ? 20 : 100;
const RUNS = 3;
const TARGET = 1.0;
const DIR = path.join(os.tmpdir(), 'sluice-bench-decoders-v1');
const PLAIN = path.join(DIR, `logs-${MIB}MiB.txt`);
const PACKED = `${PLAIN}.gz`;

if (spawnSync('gzip', ['--version'], { stdio: 'ignore' }).status !== 0) fail(BENCH, 'gzip is not installed (Debian: apt-get install -y gzip)');

/** Log-like lines from a seeded xorshift generator, written to `file` until it holds `mib` MiB. */
function writeLogs(file: string, mib: number): void {
  let s = 0x2545f491;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  const words = ['GET', 'POST', 'PUT', '/api/v1/items', '/static/app.js', '/index.html', '/repo/x86_64/Packages', '200', '404', '500', 'mirror', 'cvmfs', 'stratum1', 'alice', 'bob', 'carol', 'ok', 'error', 'timeout', 'retry'];
  const fd = fs.openSync(file, 'w');
  const target = mib * 2 ** 20;
  let written = 0;
  while (written < target) {
    const lines: string[] = [];
    for (let i = 0; i < 2000; i++) {
      const n = next();
      const pad = (v: number) => String(v).padStart(2, '0');
      lines.push(`2024-01-${pad(1 + (n % 28))}T${pad(n % 24)}:${pad((n >>> 8) % 60)}:${pad((n >>> 16) % 60)}Z ${words[n % 20]} ${words[(n >>> 5) % 20]} ${words[(n >>> 10) % 20]} id=${next().toString(16)} bytes=${next() % 100000} ${words[(n >>> 15) % 20]}\n`);
    }
    let chunk = Buffer.from(lines.join(''));
    if (written + chunk.length > target) chunk = chunk.subarray(0, target - written);
    fs.writeSync(fd, chunk);
    written += chunk.length;
  }
  fs.closeSync(fd);
}

function prepare(): void {
  const ready = `${PACKED}.ok`;
  if (fs.existsSync(ready) && process.env.BENCH_DECODERS_REBUILD !== '1') return;
  fs.mkdirSync(DIR, { recursive: true });
  if (!fs.existsSync(PLAIN) || fs.statSync(PLAIN).size !== MIB * 2 ** 20) writeLogs(PLAIN, MIB);
  note(`${BENCH}: compressing ${MIB} MiB with gzip -6 -n (once; reused by later runs)`);
  const t0 = performance.now();
  const gz = spawnSync('sh', ['-c', `gzip -6 -n -c "${PLAIN}" > "${PACKED}.tmp" && mv "${PACKED}.tmp" "${PACKED}"`], { stdio: 'inherit' });
  if (gz.status !== 0) fail(BENCH, 'gzip -6 failed');
  note(`${BENCH}: compressed in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  fs.writeFileSync(ready, '');
}

async function tool(): Promise<number> {
  const t0 = performance.now();
  const done = spawnSync('sh', ['-c', `gzip -dc "${PACKED}" > /dev/null`], { stdio: 'inherit' });
  const seconds = (performance.now() - t0) / 1000;
  if (done.status !== 0) fail(BENCH, `gzip -dc exited with ${done.status}`);
  return seconds;
}

async function ours(): Promise<number> {
  const t0 = performance.now();
  let bytes = 0;
  for await (const chunk of gunzip(fs.createReadStream(PACKED, { highWaterMark: 256 * 1024 }), { name: PACKED })) bytes += chunk.length;
  const seconds = (performance.now() - t0) / 1000;
  if (bytes !== MIB * 2 ** 20) fail(BENCH, `gunzip gave ${bytes} bytes, expected ${MIB * 2 ** 20}`);
  return seconds;
}

prepare();
const packedBytes = fs.statSync(PACKED).size;
note(`${BENCH}: ${MIB} MiB → ${(packedBytes / 2 ** 20).toFixed(1)} MiB gzip (${(MIB * 2 ** 20 / packedBytes).toFixed(2)}:1)`);
await ours(); // warm-up: page cache, native module loaded
let bestTool = Infinity;
let bestOurs = Infinity;
for (let i = 0; i < RUNS; i++) {
  const t = await tool();
  const o = await ours();
  note(`${BENCH}: run ${i + 1}: gzip -dc ${(MIB / t).toFixed(1)} MiB/s, gunzip ${(MIB / o).toFixed(1)} MiB/s`);
  bestTool = Math.min(bestTool, t);
  bestOurs = Math.min(bestOurs, o);
}
const value = MIB / bestOurs;
const baseline = MIB / bestTool;
await report({
  bench: BENCH,
  value: round(value, 1),
  unit: 'MiB/s',
  baseline: round(baseline, 1),
  ratio: round(value / baseline),
  target: TARGET,
  peak_rss_mb: peakRssMb(),
  input_mib: MIB,
  compressed_mib: round(packedBytes / 2 ** 20, 2),
  runs: RUNS,
  quick: QUICK,
});
