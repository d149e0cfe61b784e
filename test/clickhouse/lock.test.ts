import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './backends.ts';

interface Result { code: number | null; stdout: string; stderr: string }

function env(stateDir: string): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, SLUICE_STATE_DIR: stateDir };
  delete e.SLUICE_CLICKHOUSE_URL;
  return e;
}

function run(args: string[], stateDir: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, env: env(stateDir), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A process that opens the embedded store and keeps it open until its stdin closes. */
const HOLDER = `
const { openStore, storeConfigFromEnv } = await import('./runtime/clickhouse/open-store.ts');
const store = await openStore(storeConfigFromEnv(), { stateDir: process.env.SLUICE_STATE_DIR });
await store.command('CREATE TABLE IF NOT EXISTS held (a UInt8) ENGINE = MergeTree ORDER BY a');
process.stdout.write('ready ' + process.pid + '\\n');
process.stdin.resume();
process.stdin.on('end', async () => { await store.close(); process.exit(0); });
`;

/** Opens the store through the API and prints what it threw. */
const OPENER = `
const { openStore, storeConfigFromEnv } = await import('./runtime/clickhouse/open-store.ts');
try {
  await openStore(storeConfigFromEnv(), { stateDir: process.env.SLUICE_STATE_DIR });
  console.log('opened');
} catch (err) {
  console.log(JSON.stringify({ name: err.name, kind: err.kind, message: err.message }));
}
`;

describe('a second process on the same embedded store', () => {
  let stateDir: string;
  let holder: ChildProcess;
  let holderPid: number;

  beforeAll(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-lock-'));
    holder = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', HOLDER], { cwd: ROOT, env: env(stateDir), stdio: ['pipe', 'pipe', 'inherit'] });
    holderPid = await new Promise<number>((resolve, reject) => {
      let out = '';
      holder.stdout!.on('data', (d) => {
        out += d;
        const m = /ready (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      holder.on('exit', (code) => reject(new Error(`the holder exited (${code}) before opening the store`)));
    });
  });

  afterAll(async () => {
    if (holder.exitCode === null) {
      holder.stdin!.end();
      await new Promise((resolve) => holder.once('exit', resolve));
    }
    await rm(stateDir, { recursive: true, force: true });
  });

  it('sluice query fails with one line naming the directory and the fix, and no stack trace', async () => {
    const r = await run(['runtime/cli/main.ts', 'query', 'SELECT 1'], stateDir);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const dir = path.join(stateDir, 'clickhouse');
    expect(r.stderr).toBe(
      `sluice: embedded ClickHouse at ${dir} is in use by another process (pid ${holderPid}): ` +
        'stop the other sluice process, or use a ClickHouse server via SLUICE_CLICKHOUSE_URL\n',
    );
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('openStore throws a FatalError with the same line', async () => {
    const r = await run(['--input-type=module', '-e', OPENER], stateDir);
    expect(r.code).toBe(0);
    const thrown = JSON.parse(r.stdout) as { name: string; kind: string; message: string };
    expect(thrown).toMatchObject({ name: 'FatalError', kind: 'fatal' });
    expect(thrown.message).toMatch(/^embedded ClickHouse at .+ is in use by another process \(pid \d+\): stop the other sluice process, or use a ClickHouse server via SLUICE_CLICKHOUSE_URL$/);
    expect(r.stderr).toBe(''); // chDB never got to print the engine's exception
  });

  it('once the holder is gone, the store opens and keeps its data', async () => {
    holder.stdin!.end();
    await new Promise((resolve) => holder.once('exit', resolve));
    const r = await run(['runtime/cli/main.ts', 'query', "SELECT name FROM system.tables WHERE database = 'sluice'"], stateDir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('┌─name─┐\n│ held │\n└──────┘\n');
  });
});
