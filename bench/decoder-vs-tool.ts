/**
 * The shared part of the decoder benchmarks (decoders-xz, decoders-gzip): the same
 * 100 MiB of log-like text (seeded generator), compressed once by the real tool into
 * `$TMPDIR/sluice-bench-decoders-v1/` and reused (`BENCH_DECODERS_REBUILD=1` makes it
 * again); then best of 3 of `<tool> -dc file > /dev/null` against our decoder reading
 * the same file as a web stream, runs alternating. `BENCH_QUICK=1`: 20 MiB.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fail, note, peakRssMb, report, round } from './report.ts';

export interface DecoderBench {
  bench: string;
  target: number;
  /** the command-line tool: `xz`, `gzip` */
  tool: string;
  /** its Debian package, for the message when it is missing */
  debianPackage: string;
  /** how the tool compresses (to stdout), e.g. `xz -T1 -6 -c` */
  compress: string;
  extension: string;
  /** our decoder's name, for messages */
  name: string;
  decode: (input: fs.ReadStream, options: { name: string }) => AsyncIterable<Uint8Array>;
}

export async function runDecoderBench(spec: DecoderBench): Promise<void> {
  const BENCH = spec.bench;
  const QUICK = process.env.BENCH_QUICK === '1';
  const MIB = QUICK ? 20 : 100;
  const RUNS = 3;
  const DIR = path.join(os.tmpdir(), 'sluice-bench-decoders-v1');
  const PLAIN = path.join(DIR, `logs-${MIB}MiB.txt`);
  const PACKED = `${PLAIN}.${spec.extension}`;
  if (spawnSync(spec.tool, ['--version'], { stdio: 'ignore' }).status !== 0) fail(BENCH, `${spec.tool} is not installed (Debian: apt-get install -y ${spec.debianPackage})`);

  function prepare(): void {
    const ready = `${PACKED}.ok`;
    if (fs.existsSync(ready) && process.env.BENCH_DECODERS_REBUILD !== '1') return;
    fs.mkdirSync(DIR, { recursive: true });
    if (!fs.existsSync(PLAIN) || fs.statSync(PLAIN).size !== MIB * 2 ** 20) writeLogs(PLAIN, MIB);
    note(`${BENCH}: compressing ${MIB} MiB with ${spec.compress} (once; reused by later runs)`);
    const t0 = performance.now();
    const packed = spawnSync('sh', ['-c', `${spec.compress} "${PLAIN}" > "${PACKED}.tmp" && mv "${PACKED}.tmp" "${PACKED}"`], { stdio: 'inherit' });
    if (packed.status !== 0) fail(BENCH, `${spec.compress} failed`);
    note(`${BENCH}: compressed in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    fs.writeFileSync(ready, '');
  }

  async function tool(): Promise<number> {
    const t0 = performance.now();
    const done = spawnSync('sh', ['-c', `${spec.tool} -dc "${PACKED}" > /dev/null`], { stdio: 'inherit' });
    const seconds = (performance.now() - t0) / 1000;
    if (done.status !== 0) fail(BENCH, `${spec.tool} -dc exited with ${done.status}`);
    return seconds;
  }

  async function ours(): Promise<number> {
    const t0 = performance.now();
    let bytes = 0;
    for await (const chunk of spec.decode(fs.createReadStream(PACKED, { highWaterMark: 256 * 1024 }), { name: PACKED })) bytes += chunk.length;
    const seconds = (performance.now() - t0) / 1000;
    if (bytes !== MIB * 2 ** 20) fail(BENCH, `${spec.name} gave ${bytes} bytes, expected ${MIB * 2 ** 20}`);
    return seconds;
  }

  prepare();
  const packedBytes = fs.statSync(PACKED).size;
  note(`${BENCH}: ${MIB} MiB → ${(packedBytes / 2 ** 20).toFixed(1)} MiB ${spec.tool} (${(MIB * 2 ** 20 / packedBytes).toFixed(2)}:1)`);
  await ours(); // warm-up: page cache, native module loaded
  let bestTool = Infinity;
  let bestOurs = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const t = await tool();
    const o = await ours();
    note(`${BENCH}: run ${i + 1}: ${spec.tool} -dc ${(MIB / t).toFixed(1)} MiB/s, ${spec.name} ${(MIB / o).toFixed(1)} MiB/s`);
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
    target: spec.target,
    peak_rss_mb: peakRssMb(),
    input_mib: MIB,
    compressed_mib: round(packedBytes / 2 ** 20, 2),
    runs: RUNS,
    quick: QUICK,
  });
}

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

