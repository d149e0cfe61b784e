/**
 * xz decoding: sluice's `unxz` (sources/decoders/xz.ts: liblzma through node-liblzma,
 * one bounded output chunk per pull) against the `xz` tool, on the same file.
 *
 * Input: 100 MiB of log-like text (timestamps, methods, paths, status codes, random ids
 * and sizes from a seeded generator: compressible, ~4.8:1 with xz, but not trivially),
 * compressed once with `xz -T1 -6` (one block, as most .xz files in the wild) into
 * `$TMPDIR/sluice-bench-decoders-v1/` and reused by later runs (compressing takes 1–2
 * minutes on 2 cores; `BENCH_DECODERS_REBUILD=1` makes it again).
 *
 * value: sluice MiB/s of decompressed output, the whole file drained from
 *   `unxz(fs.createReadStream(file))` (web stream, 256 KiB chunks), best of 3.
 * baseline: MiB/s of `xz -dc file > /dev/null` (a shell and the tool: nothing else), best
 *   of 3, runs alternating with ours.
 * ratio = value / baseline; target 0.6.
 * The bench checks that unxz produces the original size, and exits non-zero if not.
 *
 * `BENCH_QUICK=1`: 20 MiB.
 */
import { unxz } from '../sources/decoders/xz.ts';
import { runDecoderBench } from './decoder-vs-tool.ts';

await runDecoderBench({
  bench: 'decoders-xz',
  target: 0.6,
  tool: 'xz',
  debianPackage: 'xz-utils',
  compress: 'xz -T1 -6 -c',
  extension: 'xz',
  name: 'unxz',
  decode: (input, options) => unxz(input, options),
});
