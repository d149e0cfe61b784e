/**
 * CVMFS scrape: 200 local Stratum 1 servers × 10 repositories each, every response
 * delayed 20 ms, scraped by the `cvmfs-stratum` pipeline (snapshot and metrics sinks
 * included) against a baseline measured in the same run: a sequential scrape of the same
 * servers with the same HTTP client and parsers, in the shape of the old Python tool
 * (one server at a time per worker, one request at a time: index, then each repository's
 * manifest and status file, then the GeoAPI; meta.json too, which the new scrape reads).
 *
 * Target: at least 10x faster than the baseline and under 3 s. The ClickHouse history sink
 * is off (`history=false`): this measures the scrape, not chDB.
 *
 * value: the pipeline's wall time, s: the median of three scrapes run one after another
 * (as exporter mode runs them; each run opens its own connections; `runs_s` lists all
 * three, the first one colder). baseline: the sequential scrape's wall time, s.
 * ratio: baseline / value (≥ 10 meets the target). peak_rss_mb: this process's peak RSS
 * (the servers run in a child process, so it is the scraper's own).
 *
 * `BENCH_CVMFS_SERVERS`, `BENCH_CVMFS_REPOS`, `BENCH_CVMFS_DELAY_MS` change the size;
 * `BENCH_CVMFS_BASELINE_WORKERS` runs the baseline with that many workers (default 1,
 * the fully sequential scrape); `BENCH_QUICK=1` uses 40 servers.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import pipeline from '../pipelines/cvmfs-stratum.ts';
import { HttpClient } from '../runtime/http-client.ts';
import { createLogger } from '../runtime/log.ts';
import { Permissions } from '../runtime/permissions.ts';
import { runPipeline } from '../runtime/runner.ts';
import { parseManifest } from '../sources/http/cvmfs/manifest.ts';
import { parseStatusFile } from '../sources/http/cvmfs/status-file.ts';
import { fail, note, peakRssMb, report, round } from './report.ts';

const BENCH = 'cvmfs-scrape';
const QUICK = process.env.BENCH_QUICK === '1';
const SERVERS = Number(process.env.BENCH_CVMFS_SERVERS ?? (QUICK ? 40 : 200));
const REPOS = Number(process.env.BENCH_CVMFS_REPOS ?? 10);
const DELAY_MS = Number(process.env.BENCH_CVMFS_DELAY_MS ?? 20);
const BASELINE_WORKERS = Number(process.env.BENCH_CVMFS_BASELINE_WORKERS ?? 1);
const TARGET_RATIO = 10;
const RUNS = Number(process.env.BENCH_CVMFS_RUNS ?? 3);
const TARGET_SECONDS = 3;
const GEO_HOSTS = ['cvmfs-s1fnal.opensciencegrid.org', 'cvmfs-stratum-one.cern.ch', 'cvmfs-stratum-one.ihep.ac.cn'];

// ---- the servers' process ---------------------------------------------------------------
if (process.argv[2] === '--serve') {
  const { startStratum, dateUtc } = await import('../test/servers/cvmfs-stratum.ts');
  const now = Math.floor(Date.now() / 1000);
  const ports: number[] = [];
  for (let s = 0; s < SERVERS; s++) {
    const repos = Array.from({ length: REPOS }, (_, r) => ({
      name: `repo${String(r).padStart(2, '0')}.bench.example.org`,
      revision: 1000 + r,
      timestamp: now - 3600,
      status: { last_snapshot: dateUtc(now - 300), last_gc: dateUtc(now - 86_400) },
    }));
    const server = await startStratum({ type: 1, geo: '2,1,3', repos });
    server.delayMs = DELAY_MS;
    server.logRequests = false;
    ports.push(Number(server.hostPort.split(':')[1]));
  }
  process.stdout.write(JSON.stringify({ ports }) + '\n');
  // serve until the parent closes our stdin
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
  await new Promise(() => undefined);
}

async function startServers(): Promise<{ hosts: string[]; stop: () => void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: process.env,
  });
  const ports = await new Promise<number[]>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve((JSON.parse(out.slice(0, nl)) as { ports: number[] }).ports);
    });
    child.on('exit', (code) => reject(new Error(`the servers' process exited with ${code}`)));
  });
  return { hosts: ports.map((p) => `127.0.0.1:${p}`), stop: () => child.stdin!.end() };
}

/** The old tool's shape: one server after another, one request after another. */
async function sequentialScrape(http: HttpClient, hosts: string[]): Promise<{ repos: number; failures: number }> {
  let repos = 0;
  let failures = 0;
  let next = 0;
  const worker = async () => {
    while (next < hosts.length) {
      const base = `http://${hosts[next++]}/cvmfs`;
      try {
        const index = await http.json<{ replicas: { name: string; url: string }[] }>(`${base}/info/v1/repositories.json`, { timeoutMs: 10_000 });
        await http.request(`${base}/info/v1/meta.json`, { okStatus: [404], timeoutMs: 10_000 });
        const names = index.replicas.map((r) => r.name).sort();
        for (const name of names) {
          const manifestUrl = `${base}/${name}/.cvmfspublished`;
          parseManifest((await http.request(manifestUrl, { timeoutMs: 10_000 })).body, manifestUrl);
          parseStatusFile(await http.json(`${base}/${name}/.cvmfs_status.json`, { timeoutMs: 10_000 }));
          repos++;
        }
        await http.request(`${base}/${names[0]}/api/v1.0/geo/x/${GEO_HOSTS.join(',')}`, { timeoutMs: 10_000 });
      } catch (err) {
        failures++;
        note(`baseline: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: BASELINE_WORKERS }, worker));
  return { repos, failures };
}

const servers = await startServers();
const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-bench-cvmfs-'));
try {
  note(`${BENCH}: ${SERVERS} stratum servers × ${REPOS} repositories, ${DELAY_MS} ms per response`);

  // warm-up (JIT, module loading), not measured: one small scrape
  await runPipeline({
    pipeline,
    params: { stratum1: servers.hosts.slice(0, 2), snapshot: path.join(stateDir, 'warm.json'), history: false },
    stateDir,
    log: createLogger({ level: 'error' }),
    registry: new Registry(),
  });

  // three scrapes, as an exporter would run them one after another; the value is their median
  const runs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const snapshotPath = path.join(stateDir, `cvmfs-${i}.json`);
    const t0 = performance.now();
    const run = await runPipeline({
      pipeline,
      params: { stratum1: servers.hosts, snapshot: snapshotPath, history: false },
      stateDir,
      log: createLogger({ level: 'error' }),
      registry: new Registry(),
    });
    runs.push((performance.now() - t0) / 1000);
    if (run.status !== 'succeeded') fail(BENCH, `the scrape ${run.status}: ${run.errors.map((e) => e.message).join('; ')}`);
    const snapshot = JSON.parse(await fs.readFile(snapshotPath, 'utf8')) as { servers: { ok: boolean; repositories: { ok: boolean }[] }[] };
    const okRepos = snapshot.servers.flatMap((s) => s.repositories).filter((r) => r.ok).length;
    if (snapshot.servers.length !== SERVERS || okRepos !== SERVERS * REPOS) {
      fail(BENCH, `the scrape read ${okRepos} repositories on ${snapshot.servers.length} servers, expected ${SERVERS * REPOS} on ${SERVERS}`);
    }
    note(`${BENCH}: pipeline run ${i + 1}: ${runs[i]!.toFixed(3)} s for ${okRepos} repositories`);
  }
  const value = [...runs].sort((a, b) => a - b)[Math.floor(RUNS / 2)]!;

  const http = new HttpClient(new Permissions({ net: ['*'] }));
  const b0 = performance.now();
  const base = await sequentialScrape(http, servers.hosts);
  const baseline = (performance.now() - b0) / 1000;
  await http.close();
  if (base.failures || base.repos !== SERVERS * REPOS) fail(BENCH, `the baseline read ${base.repos} repositories with ${base.failures} failures`);
  note(`${BENCH}: sequential baseline (${BASELINE_WORKERS} worker${BASELINE_WORKERS > 1 ? 's' : ''}) ${baseline.toFixed(3)} s`);

  const ratio = baseline / value;
  await report({
    bench: BENCH,
    value: round(value),
    unit: 's',
    baseline: round(baseline),
    ratio: round(ratio, 2),
    target: TARGET_RATIO,
    peak_rss_mb: peakRssMb(),
    max_seconds: TARGET_SECONDS,
    met: ratio >= TARGET_RATIO && value < TARGET_SECONDS,
    runs_s: runs.map((r) => round(r)),
    servers: SERVERS,
    repositories: SERVERS * REPOS,
    delay_ms: DELAY_MS,
    baseline_workers: BASELINE_WORKERS,
    quick: QUICK,
  });
} finally {
  servers.stop();
  await fs.rm(stateDir, { recursive: true, force: true });
}
