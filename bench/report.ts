/**
 * How a benchmark hands back its result: exactly one JSON line on stdout (the runner
 * `bench/run.ts` passes it through) and the same object in `bench/results/<name>.json`.
 * Everything else a benchmark says goes to stderr, through `note`.
 *
 * @example
 * ```ts
 * await report({ bench: 'overhead', value: 1.2e6, unit: 'records/s', baseline: 2e6,
 *   ratio: 0.6, target: 0.5, peak_rss_mb: peakRssMb() });
 * ```
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The fields every benchmark prints, in this order; extra fields may follow. */
export interface BenchResult {
  bench: string;
  value: number;
  unit: string;
  baseline: number;
  ratio: number;
  target: number;
  peak_rss_mb: number;
  [extra: string]: unknown;
}

const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

/** Peak resident set size of this process so far, in MiB (the kernel's high-water mark). */
export function peakRssMb(): number {
  // maxRSS is in KiB on every platform Node supports
  return round(process.resourceUsage().maxRSS / 1024, 1);
}

/** Current resident set size of this process, in MiB. */
export function rssMb(): number {
  return round(process.memoryUsage().rss / (1024 * 1024), 1);
}

export function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** A line for people, on stderr (stdout carries only the result line). */
export function note(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/** Print the result line and write it to `bench/results/<bench>.json`. */
export async function report(result: BenchResult): Promise<void> {
  const { bench, value, unit, baseline, ratio, target, peak_rss_mb, ...extra } = result;
  // the required fields first, in a fixed order, so the lines diff well between runs
  const line = JSON.stringify({ bench, value, unit, baseline, ratio, target, peak_rss_mb, ...extra });
  await fs.mkdir(RESULTS_DIR, { recursive: true });
  await fs.writeFile(path.join(RESULTS_DIR, `${bench}.json`), line + '\n');
  process.stdout.write(line + '\n');
}

/** End the benchmark with a failure: the reason on stderr, no result line, exit code 1. */
export function fail(bench: string, reason: string): never {
  process.stderr.write(`[bench] ${bench} FAILED: ${reason}\n`);
  process.exit(1);
}
