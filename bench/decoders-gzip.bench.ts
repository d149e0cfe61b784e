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
import { gunzip } from '../sources/decoders/gzip.ts';
import { runDecoderBench } from './decoder-vs-tool.ts';

await runDecoderBench({
  bench: 'decoders-gzip',
  target: 1.0,
  tool: 'gzip',
  debianPackage: 'gzip',
  compress: 'gzip -6 -n -c',
  extension: 'gz',
  name: 'gunzip',
  decode: (input, options) => gunzip(input, options),
});
