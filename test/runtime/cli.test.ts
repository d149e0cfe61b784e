import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunRecord } from '../../runtime/run-record.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const GOOD = path.join(ROOT, 'test/pipelines/good');
const BROKEN = path.join(ROOT, 'test/pipelines/broken');

interface CliResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function cli(args: string[], options: { pipelines?: string; state?: string; onStdout?: (text: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, SLUICE_PIPELINES_DIR: options.pipelines ?? GOOD, SLUICE_STATE_DIR: options.state ?? path.join(os.tmpdir(), 'sluice-cli-state') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; options.onStdout?.(stdout, child); });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

let state: string;
beforeAll(async () => { state = await mkdtemp(path.join(os.tmpdir(), 'sluice-cli-')); });

describe('pipeline list, check, --help', () => {
  it('lists pipelines with their descriptions', async () => {
    const r = await cli(['pipeline', 'list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ticker\s+Numbers, one every few milliseconds$/m);
    expect(r.stdout).toMatch(/^fetch\s+Fetch a URL/m);
  });

  it('check passes on valid pipelines and fails naming the broken file', async () => {
    const ok = await cli(['pipeline', 'check']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('4 of 4 pipelines ok');
    const bad = await cli(['pipeline', 'check'], { pipelines: BROKEN });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/FAIL {2}misnamed: .*misnamed\.ts: name is "something-else" but the file is misnamed\.ts/);
    expect(bad.stdout).toContain('ok    ticker');
  });

  it('--help prints the params from the zod schema: types, defaults, descriptions', async () => {
    const r = await cli(['pipeline', 'ticker', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--param count=<integer>\s+how many numbers \(default 1000000\)/);
    expect(r.stdout).toMatch(/--param tags=<string\[\] \(repeat --param tags=…\)>\s+labels copied into every record \(default \[\]\)/);
    expect(r.stdout).toMatch(/--param mode=<"plain"\|"fancy">/);
    expect(r.stdout).toContain('--allow-net');
  });

  it('an unknown pipeline names the known ones', async () => {
    const r = await cli(['pipeline', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no pipeline "nope" in .*; known pipelines: fetch, hang, readfile, ticker/);
  });
});

describe('params on the command line', () => {
  it('coerces values by the schema, repeats array params, and --params-json merges', async () => {
    const r = await cli(['pipeline', 'ticker', '--quiet', '--state-dir', state, '--param', 'count=2', '--param', 'delayMs=0',
      '--param', 'tags=a', '--param', 'tags=b', '--param', 'verbose=true', '--params-json', '{"mode":"fancy"}']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual([
      { n: 0, tags: ['a', 'b'], mode: 'fancy', verbose: true },
      { n: 1, tags: ['a', 'b'], mode: 'fancy', verbose: true },
    ]);
  });

  it('an unknown param is one line naming it and the valid ones; nothing runs', async () => {
    const r = await cli(['pipeline', 'ticker', '--state-dir', state, '--param', 'cuont=2']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('sluice: ticker: unknown param "cuont"; valid params: count, delayMs, tags, mode, verbose');
    expect(r.stdout).toBe('');
  });

  it('an invalid value is one line naming the param', async () => {
    const r = await cli(['pipeline', 'ticker', '--state-dir', state, '--param', 'count=many']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/invalid param "count"/);
    const bad = await cli(['pipeline', 'ticker', '--params-json', '{nope']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--params-json is not valid JSON');
  });

  it('an unknown flag is a usage error', async () => {
    const r = await cli(['pipeline', 'ticker', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown flag --bogus');
  });
});

describe('stopping with signals', () => {
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    it(`${signal} mid-run: stops pulling, flushes accepted records, writes the run record, exits ${code}`, async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-sig-'));
      let sent = false;
      const r = await cli(['pipeline', 'ticker', '--state-dir', dir, '--param', 'delayMs=2'], {
        state: dir,
        onStdout: (text, child) => {
          if (!sent && text.split('\n').length > 50) { sent = true; child.kill(signal); }
        },
      });
      expect(r.code).toBe(code);
      const runs = await cli(['pipeline', 'runs', '--format', 'json', '--state-dir', dir], { state: dir });
      const [record] = JSON.parse(runs.stdout) as RunRecord[];
      expect(record).toMatchObject({ pipeline: 'ticker', status: 'interrupted', trigger: 'cli' });
      const printed = r.stdout.trim().split('\n');
      // every record the run counted as accepted reached stdout, and nothing more
      expect(printed.length).toBe(record!.counts.recordsBySink.stdout);
      expect(printed.length).toBeGreaterThan(50);
      expect(record!.counts.records).toBeLessThan(1_000_000);
      expect(r.stderr).toContain(`${signal}: stopping`);
      expect(r.stderr).toMatch(/ticker interrupted in/);
    });
  }
});

describe('a second Ctrl-C', () => {
  it('aborts at once instead of waiting for in-flight items', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-int2-'));
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), 'pipeline', 'hang', '--state-dir', dir], {
      cwd: ROOT, env: { ...process.env, SLUICE_PIPELINES_DIR: GOOD }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let sentFirst = false;
    let sentSecond = false;
    child.stderr.on('data', (d) => {
      stderr += d;
      // the first Ctrl-C once the run is under way, the second once it is stopping
      if (!sentFirst && stderr.includes('hang: item pulled')) { sentFirst = true; child.kill('SIGINT'); }
      if (!sentSecond && stderr.includes('SIGINT: stopping')) { sentSecond = true; child.kill('SIGINT'); }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(code).toBe(130);
    expect(stderr).toContain('SIGINT again: aborting now');
    // the grace period (10 s) was not waited out: no summary was printed
    expect(stderr).not.toMatch(/hang interrupted in/);
  });
});

describe('logs and metrics outputs', () => {
  it('--log-format json writes pino lines on stderr, one object each', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-json-'));
    const r = await cli(['pipeline', 'ticker', '--log-format', 'json', '--state-dir', dir, '--param', 'count=3', '--param', 'delayMs=0'], { state: dir });
    expect(r.code).toBe(0);
    const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('{'));
    expect(lines.length).toBeGreaterThan(0);
    const finished = lines.map((l) => JSON.parse(l)).find((o) => o.msg === 'run finished');
    expect(finished).toMatchObject({ level: 30, pipeline: 'ticker', status: 'succeeded', counts: { items: 3 } });
  });

  it('--metrics-port keeps serving /metrics after the run until Ctrl-C; the output passes promtool', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-port-'));
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), 'pipeline', 'ticker',
      '--metrics-port', '0', '--state-dir', dir, '--param', 'count=5', '--param', 'delayMs=0'], {
      cwd: ROOT, env: { ...process.env, SLUICE_PIPELINES_DIR: GOOD }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    const serving = new Promise<string>((resolve) => {
      child.stderr.on('data', (d) => {
        stderr += d;
        const m = /still serving (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(stderr);
        if (m) resolve(m[1]!);
      });
    });
    const closed = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    const url = await serving;
    const body = await (await fetch(url)).text();
    expect(body).toMatch(/sluice_runs_total\{pipeline="ticker",status="succeeded"\} 1/);
    expect(body).toMatch(/sluice_component_sent_events_total\{pipeline="ticker",component_id="stdout",component_kind="sink",component_type="stdout"\} 5/);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect(check.status).toBe(0);
    expect(check.stdout + check.stderr).toBe('');
    child.kill('SIGINT');
    expect(await closed).toBe(130);
  });
});

describe('permissions', () => {
  let server: http.Server;
  let port = 0;
  beforeAll(async () => {
    server = http.createServer((_req, res) => res.end('pong'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('a host the pipeline may not reach is refused, naming the flag that allows it', async () => {
    const r = await cli(['pipeline', 'fetch', '--state-dir', state, '--param', `url=http://127.0.0.1:${port}/ping`]);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`network access to 127.0.0.1:${port} is not allowed`);
    expect(r.stderr).toContain(`--allow-net=127.0.0.1:${port}`);
  });

  it('--allow-net widens the run', async () => {
    const r = await cli(['pipeline', 'fetch', '--quiet', '--state-dir', state, `--allow-net=127.0.0.1:${port}`, '--param', `url=http://127.0.0.1:${port}/ping`]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ status: 200, body: 'pong' });
  });

  it('a symlink inside the read root that points outside it cannot be read', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'sluice-perm-'));
    const root = path.join(base, 'root');
    await mkdir(root);
    await writeFile(path.join(base, 'secret.txt'), 'top secret');
    await writeFile(path.join(root, 'ok.txt'), 'fine');
    await symlink(path.join(base, 'secret.txt'), path.join(root, 'escape.txt'));
    const denied = await cli(['pipeline', 'readfile', '--state-dir', state, '--param', `root=${root}`, '--param', 'file=escape.txt']);
    expect(denied.stdout).toBe('');
    expect(denied.stderr).toContain(`read access to ${path.join(root, 'escape.txt')} (really ${path.join(base, 'secret.txt')}) is not allowed`);
    expect(denied.stderr).toContain(`--allow-read=${base}`);
    const dotdot = await cli(['pipeline', 'readfile', '--state-dir', state, '--param', `root=${root}`, '--param', 'file=../secret.txt']);
    expect(dotdot.stdout).toBe('');
    expect(dotdot.stderr).toContain('is not allowed');
    const fine = await cli(['pipeline', 'readfile', '--quiet', '--state-dir', state, '--param', `root=${root}`, '--param', 'file=ok.txt']);
    expect(JSON.parse(fine.stdout)).toEqual({ text: 'fine' });
  });
});

describe('the demo pipeline', () => {
  it('inventory walks fixtures/ into a snapshot with sha256 sums and prints a summary', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-demo-'));
    const snap = path.join(dir, 'inventory.json');
    const r = await cli(['pipeline', 'inventory', '--state-dir', dir, '--param', `snapshot=${snap}`, '--metrics-textfile', path.join(dir, 'sluice.prom')], { pipelines: path.join(ROOT, 'pipelines') });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/inventory succeeded in/);
    const records = JSON.parse(await readFile(snap, 'utf8')) as { path: string; sha256: string; size: number }[];
    const hello = records.find((x) => x.path === 'demo/hello.txt');
    expect(hello).toMatchObject({ size: 13, sha256: '0eb9ac01932359d3fe23b042658f5175437b367223e99d44f1f7b661863ad435' });
    expect(records.map((x) => x.path)).toEqual([...records.map((x) => x.path)].sort());
    const prom = await readFile(path.join(dir, 'sluice.prom'), 'utf8');
    expect(prom).toMatch(new RegExp(`sluice_inventory_files_total ${records.length}\\b`));
    expect(prom).toMatch(/sluice_runs_total\{pipeline="inventory",status="succeeded"\} 1/);
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: prom, encoding: 'utf8' });
    expect(lint.stdout + lint.stderr).toBe('');
    expect(lint.status).toBe(0);
    // the rows are in the embedded ClickHouse, and the summary says how to look at them
    expect(r.stderr).toContain('npm run query -- "SELECT path, size, sha256 FROM inventory_files FINAL');
    const q = await cli(['query', '--state-dir', dir, '--format', 'json', "SELECT count() AS n, sum(size) AS bytes FROM inventory_files FINAL WHERE root = 'fixtures'"], { state: dir });
    expect(q.code).toBe(0);
    const [row] = JSON.parse(q.stdout) as { n: string | number; bytes: string | number }[];
    expect(Number(row!.n)).toBe(records.length);
    expect(Number(row!.bytes)).toBe(records.reduce((sum, x) => sum + x.size, 0));
    const runs = await cli(['pipeline', 'runs', '--state-dir', dir], { state: dir });
    expect(runs.stdout).toMatch(/inventory\s+cli\s+succeeded/);
  });

  it('a second process on the same embedded store gets one line naming the fix', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-lock-'));
    let second: CliResult | undefined;
    const first = await cli(['pipeline', 'ticker', '--state-dir', dir, '--param', 'delayMs=5'], {
      state: dir,
      onStdout: (text, child) => {
        if (second || text.split('\n').length < 20) return;
        second = { code: -1, signal: null, stdout: '', stderr: '' };
        cli(['pipeline', 'runs', '--state-dir', dir], { state: dir }).then((r) => { second = r; child.kill('SIGTERM'); });
      },
    });
    expect(first.code).toBe(143);
    expect(second!.code).toBe(1);
    expect(second!.stderr.trim().split('\n')).toHaveLength(1);
    expect(second!.stderr).toMatch(/stop the other sluice process, or use a ClickHouse server via SLUICE_CLICKHOUSE_URL/);
    expect(second!.stderr).not.toMatch(/\n\s+at /);
  });
});
