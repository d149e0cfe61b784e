import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../../', import.meta.url));
let dir: string;
let script: string;

/**
 * The child runs the sink the way the runner does (a real RunContext, open, batches,
 * close) on its own process.stdout, and reports on stderr the largest amount of output
 * the stream held in memory after a batch settled.
 */
const childSource = `
import { createRequire } from 'node:module';
import { stdout } from ${JSON.stringify(path.join(repo, 'sinks/stdout.ts'))};
import { GuardedFs } from ${JSON.stringify(path.join(repo, 'runtime/guarded-fs.ts'))};
import { HttpClient } from ${JSON.stringify(path.join(repo, 'runtime/http-client.ts'))};
import { createLogger } from ${JSON.stringify(path.join(repo, 'runtime/log.ts'))};
import { Permissions } from ${JSON.stringify(path.join(repo, 'runtime/permissions.ts'))};

// the script lives in a temp dir: resolve packages from the repository
const { Registry } = createRequire(${JSON.stringify(path.join(repo, 'package.json'))})('prom-client');
const total = Number(process.argv[2]);
const permissions = new Permissions({});
const http = new HttpClient(permissions);
const signal = new AbortController().signal;
const ctx = { runId: 'r', pipeline: 'stdout-test', signal, permissions, fs: new GuardedFs(permissions), http,
  log: createLogger({ level: 'silent' }), stateDir: '.sluice', metrics: new Registry() };
const sink = stdout();
await sink.open(ctx);
process.stderr.write('started\\n');
let maxBuffered = 0;
let error;
try {
  for (let i = 0; i < total; i += 500) {
    const batch = [];
    for (let j = i; j < Math.min(total, i + 500); j++) {
      batch.push({ i: j, big: BigInt(j) * 10n ** 20n, nested: { pad: 'x'.repeat(200), list: [j, null, 'a"b'] } });
    }
    await sink.write(batch, { signal, itemIds: [], attempt: 1 });
    maxBuffered = Math.max(maxBuffered, process.stdout.writableLength);
  }
} catch (err) {
  error = { name: err.name, message: err.message, kind: err.kind };
}
await sink.close({ status: error ? 'failed' : 'succeeded' });
await http.close();
process.stderr.write(JSON.stringify({ maxBuffered, error }) + '\\n');
`;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-stdout-'));
  // .mts: the temp dir has no package.json saying "type": "module"
  script = path.join(dir, 'write-records.mts');
  writeFileSync(script, childSource);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function startChild(total: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', script, String(total)], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const started = new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('started\n')) resolve();
    });
    void exited.then(() => reject(new Error(`child exited before writing: ${stderr}`)));
  });
  started.catch(() => undefined);
  const report = async () => {
    const code = await exited;
    const last = stderr.trim().split('\n').pop()!;
    return { code, stderr, report: JSON.parse(last) as { maxBuffered: number; error?: { name: string; message: string; kind: string } } };
  };
  return { child, started, report };
}

describe('stdout sink', () => {
  it('writes one JSON line per record, BigInt as strings, and waits for drain instead of buffering', async () => {
    const total = 40_000;
    const { child, started, report } = startChild(total);
    // do not read until the child is writing, so the pipe fills and write() returns false
    child.stdout.pause();
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (out += chunk));
    await started;
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.stdout.resume();

    const { code, stderr, report: result } = await report();
    expect(code, stderr).toBe(0);
    expect(result.error).toBeUndefined();

    expect(out.endsWith('\n')).toBe(true);
    const lines = out.slice(0, -1).split('\n');
    expect(lines).toHaveLength(total);
    expect(out.length).toBeGreaterThan(10_000_000);
    expect(lines[1]).toBe(`{"i":1,"big":"100000000000000000000","nested":{"pad":"${'x'.repeat(200)}","list":[1,null,"a\\"b"]}}`);
    lines.forEach((line, i) => {
      const record = JSON.parse(line) as { i: number; big: string };
      if (record.i !== i || record.big !== (BigInt(i) * 10n ** 20n).toString()) throw new Error(`line ${i} is ${line}`);
    });
    // with backpressure the stream holds about one batch (~130 KB) beyond its high-water mark,
    // not the whole 10 MB of output
    expect(result.maxBuffered).toBeLessThan(1_000_000);
  }, 60_000);

  it('rejects with a fatal error, not a crash, when the reader goes away', async () => {
    const { child, report } = startChild(1_000_000);
    child.stdout.once('data', () => child.stdout.destroy());
    const { code, stderr, report: result } = await report();
    expect(code, stderr).toBe(0);
    expect(result.error?.name).toBe('FatalError');
    expect(result.error?.kind).toBe('fatal');
    expect(result.error?.message).toContain('stdout');
    expect(result.error?.message).toContain('EPIPE');
  }, 60_000);
});
