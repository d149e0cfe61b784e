/**
 * Runs the benchmarks: `npm run bench` runs every `bench/*.bench.ts`, `npm run bench --
 * <name> [<name> …]` runs the named ones. Each runs in a child process of its own (so
 * the peak RSS it reports is its own), through tsx. A benchmark prints exactly one JSON
 * result line on stdout; this runner passes that line through to its own stdout and
 * sends anything else the child prints to stderr.
 *
 * Exits non-zero when a benchmark fails, prints no result line (or more than one), or
 * runs longer than `BENCH_TIMEOUT_MS` (default 15 minutes).
 *
 * `BENCH_NODE_ARGS` adds node flags to each child, e.g.
 * `BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=bench/results/prof" npm run bench -- overhead`.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const SUFFIX = '.bench.ts';
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 15 * 60_000);

function discover(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of fs.readdirSync(BENCH_DIR).sort()) {
    if (file.endsWith(SUFFIX)) found.set(file.slice(0, -SUFFIX.length), path.join(BENCH_DIR, file));
  }
  return found;
}

interface Outcome {
  name: string;
  line?: string;
  problem?: string;
}

function runOne(name: string, file: string): Promise<Outcome> {
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', file], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const results: string[] = [];
    let pending = '';
    const takeLine = (line: string) => {
      if (!line.trim()) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        parsed = undefined;
      }
      if (parsed && typeof parsed === 'object' && (parsed as { bench?: unknown }).bench === name) results.push(line);
      else process.stderr.write(`[${name} stdout] ${line}\n`);
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        takeLine(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ name, problem: `could not start: ${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      takeLine(pending);
      if (timedOut) return resolve({ name, problem: `killed after ${TIMEOUT_MS} ms (BENCH_TIMEOUT_MS)` });
      if (code !== 0) return resolve({ name, problem: `exited with ${signal ?? `code ${code}`}` });
      if (results.length !== 1) {
        return resolve({ name, problem: `printed ${results.length} result lines on stdout; a benchmark must print exactly one` });
      }
      resolve({ name, line: results[0] });
    });
  });
}

async function main(): Promise<number> {
  const available = discover();
  const asked = process.argv.slice(2).filter((a) => a !== '--');
  const unknown = asked.filter((n) => !available.has(n));
  if (unknown.length) {
    process.stderr.write(
      `unknown benchmark ${unknown.map((n) => `"${n}"`).join(', ')}; ` +
        `available: ${[...available.keys()].join(', ') || '(none found in bench/)'}\n`,
    );
    return 2;
  }
  const names = asked.length ? asked : [...available.keys()];
  const failed: string[] = [];
  for (const name of names) {
    process.stderr.write(`[bench] running ${name}\n`);
    const outcome = await runOne(name, available.get(name)!);
    if (outcome.line) {
      process.stdout.write(outcome.line + '\n');
    } else {
      process.stderr.write(`[bench] ${name} failed: ${outcome.problem}\n`);
      failed.push(name);
    }
  }
  if (failed.length) {
    process.stderr.write(`[bench] ${failed.length} of ${names.length} failed: ${failed.join(', ')}\n`);
    return 1;
  }
  return 0;
}

process.exitCode = await main();
