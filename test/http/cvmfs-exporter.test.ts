/**
 * Exporter mode end to end: `npm run pipeline -- cvmfs-stratum … --every … --metrics-port 0`
 * as a child process against a local stratum server.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dateUtc, startStratum, stratumRoute, type StratumModel } from '../servers/cvmfs-stratum.ts';
import { FaultyServer, selfSignedCertificate } from '../servers/faulty-server.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
let stratum: FaultyServer & { model: StratumModel };
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-cvmfs-exporter-'));
  const now = Math.floor(Date.now() / 1000);
  stratum = await startStratum({ type: 1, repos: [
    { name: 'a.example.org', revision: 3, status: { last_snapshot: dateUtc(now - 60) } },
    { name: 'b.example.org', revision: 4 },
  ] });
  // every scrape takes a while: two scrapes at once would show as two index requests at once
  stratum.fault('repositories.json', { kind: 'delay', ms: 250 });
});

afterAll(async () => {
  await stratum.close();
});

function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; stderr: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), 'pipeline', 'cvmfs-stratum', ...args], {
    cwd: ROOT,
    env: { ...process.env, SLUICE_STATE_DIR: dir, SLUICE_PIPELINES_DIR: path.join(ROOT, 'pipelines'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, stderr: () => stderr, exited };
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, tries = 300): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('cvmfs-stratum --every --metrics-port', () => {
  it('re-scrapes on the interval, one scrape at a time, serving /metrics throughout; Ctrl-C ends it', async () => {
    const snapshot = path.join(dir, 'cvmfs.json');
    const run = start(['--every', '200ms', '--metrics-port', '0', '--quiet', '--state-dir', dir,
      '--param', `stratum1=${stratum.hostPort}`, '--param', `snapshot=${snapshot}`, '--param', 'geoapiOrder=1', '--param', 'geoapiOrder=2', '--param', 'geoapiOrder=3']);
    try {
      const port = await until('the metrics port', () => /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(run.stderr())?.[1]);
      const metrics = async () => {
        const res = await fetch(`http://127.0.0.1:${port}/metrics`);
        return { status: res.status, text: await res.text() };
      };
      // /metrics answers while the first scrape waits on the slow index
      const early = await metrics();
      expect(early.status).toBe(200);
      const runsDone = (text: string) => Number(/sluice_runs_total\{pipeline="cvmfs-stratum",status="succeeded"\} (\d+)/.exec(text)?.[1] ?? 0);
      const later = await until('three finished scrapes', async () => {
        const m = await metrics();
        return runsDone(m.text) >= 3 ? m.text : undefined;
      });
      expect(later).toContain(`repo_revision{server="${stratum.hostPort}",repository="a.example.org"} 3`);
      expect(later).toMatch(new RegExp(`server_last_success_timestamp_seconds\\{server="${stratum.hostPort.replace(/\./g, '\\.')}"\\} \\d`));
      // the next scrape sees a change on the server
      stratum.model.repos[0]!.revision = 9;
      await until('the new revision', async () => ((await metrics()).text.includes(`repository="a.example.org"} 9`) ? true : undefined));
      expect(stratum.hits('repositories.json')).toBeGreaterThanOrEqual(4);
      expect(stratum.peakActiveByPath.get('/cvmfs/info/v1/repositories.json')).toBe(1);
    } finally {
      run.child.kill('SIGINT');
    }
    expect(await run.exited).toBe(130);
    // every scrape left a run record
    const list = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), 'pipeline', 'runs', '--pipeline', 'cvmfs-stratum', '--format', 'json', '--state-dir', dir], { cwd: ROOT, encoding: 'utf8' });
    const runs = JSON.parse(list.stdout) as { status: string }[];
    // three were seen finished on /metrics; the one Ctrl-C stopped (if any) says so
    expect(runs.filter((r) => r.status === 'succeeded').length).toBeGreaterThanOrEqual(3);
    expect(runs.every((r) => r.status === 'succeeded' || r.status === 'interrupted')).toBe(true);
  }, 60_000);

  it('one run over https on its own port, metrics into a node_exporter textfile', async () => {
    const cert = selfSignedCertificate(dir);
    const secure = await new FaultyServer(stratumRoute({ type: 1, repos: [{ name: 'tls.example.org', revision: 21 }] }), '127.0.0.1', cert).start();
    try {
      const textfile = path.join(dir, 'cvmfs.prom');
      const snapshot = path.join(dir, 'https.json');
      const run = start(['--quiet', '--state-dir', dir, '--metrics-textfile', textfile,
        '--param', `stratum1=${secure.origin}`, '--param', `snapshot=${snapshot}`, '--param', 'history=false'], { NODE_EXTRA_CA_CERTS: cert.certFile });
      expect(await run.exited).toBe(0);
      expect(await readFile(textfile, 'utf8')).toContain(`repo_revision{server="${secure.hostPort}",repository="tls.example.org"} 21`);
      const doc = JSON.parse(await readFile(snapshot, 'utf8')) as { servers: { base: string; ok: boolean }[] };
      expect(doc.servers).toMatchObject([{ base: secure.origin, ok: true }]);
      expect(secure.requests.map((r) => r.path)).toContain('/cvmfs/tls.example.org/.cvmfspublished');
    } finally {
      await secure.close();
    }
  }, 60_000);

  it('a bad --every is a usage error', async () => {
    const run = start(['--every', 'soon', '--param', `stratum1=${stratum.hostPort}`]);
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain('--every must be a duration like 60s, 5m or 1h, not "soon"');
  }, 30_000);
});
