import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openServerStore } from '../../runtime/clickhouse/server-store.ts';
import { quoteIdentifier } from '../../runtime/clickhouse/store.ts';
import { renderTable } from '../../runtime/cli/query-command.ts';
import { BACKENDS, ROOT, serverUrl, uniqueName, type BackendKind } from './backends.ts';

interface Result { code: number | null; stdout: string; stderr: string }

function spawnNode(args: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe.each(BACKENDS)('sluice query on %s', (kind: BackendKind) => {
  let stateDir: string;
  let database: string;
  let env: NodeJS.ProcessEnv;
  const extra: string[] = [];
  const sluice = (...args: string[]) => spawnNode(['runtime/cli/main.ts', 'query', ...args, ...extra], env);

  beforeAll(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-query-'));
    database = uniqueName('sluice_test_query');
    env = { ...process.env, SLUICE_STATE_DIR: stateDir, SLUICE_CLICKHOUSE_DATABASE: database };
    delete env.SLUICE_CLICKHOUSE_URL;
    if (kind === 'server') extra.push('--clickhouse-url', serverUrl());
    const create = await sluice('CREATE TABLE files (path String, size UInt64, note Nullable(String), tags Array(String)) ENGINE = MergeTree ORDER BY path');
    expect(create).toEqual({ code: 0, stdout: '', stderr: '' });
    const insert = await sluice("INSERT INTO files VALUES ('/etc/motd', 18446744073709551615, NULL, ['a','b']), ('/x', 7, 'two\nlines', [])");
    expect(insert).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  afterAll(async () => {
    if (kind === 'server') {
      const store = await openServerStore({ url: serverUrl(), database: 'default' });
      await store.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(database)}`);
      await store.close();
    }
    await rm(stateDir, { recursive: true, force: true });
  });

  it('prints a table', async () => {
    const r = await sluice('SELECT path, size, note, tags FROM files ORDER BY path');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        '┌─path──────┬─────────────────size─┬─note───────┬─tags──────┐',
        '│ /etc/motd │ 18446744073709551615 │ NULL       │ ["a","b"] │',
        '│ /x        │                    7 │ two\\nlines │ []        │',
        '└───────────┴──────────────────────┴────────────┴───────────┘',
        '',
      ].join('\n'),
    );
  });

  it('--format json, ndjson and csv', async () => {
    const json = await sluice('SELECT path, size, note FROM files ORDER BY path', '--format', 'json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([
      { path: '/etc/motd', size: '18446744073709551615', note: null },
      { path: '/x', size: '7', note: 'two\nlines' },
    ]);
    const ndjson = await sluice('SELECT path, size FROM files ORDER BY path', '--format=ndjson');
    expect(ndjson.stdout).toBe('{"path":"/etc/motd","size":"18446744073709551615"}\n{"path":"/x","size":"7"}\n');
    const csv = await sluice('SELECT path, size FROM files ORDER BY path', '--format', 'csv');
    expect(csv.stdout).toBe('"path","size"\n"/etc/motd",18446744073709551615\n"/x",7\n');
  });

  it('an error is one line and exit code 1', async () => {
    const r = await sluice('SELECT nope FROM files');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^sluice: .*query "SELECT nope FROM files": .*nope.*\n$/);
    expect(r.stderr.split('\n')).toHaveLength(2);
    const usage = await sluice('SELECT 1', '--format', 'yaml');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toBe('sluice: --format must be table, json, ndjson, csv, not "yaml"\n');
  });
});

describe('what sluice query loads', () => {
  /** runs the command in a child and reports whether chDB's native library got mapped */
  const probe = (args: string[], env: NodeJS.ProcessEnv) =>
    spawnNode(
      [
        '--input-type=module',
        '-e',
        `const { main } = await import('./runtime/cli/query-command.ts');
         const code = await main(${JSON.stringify(args)});
         const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
         process.stdout.write('\\n' + JSON.stringify({ code, chdb: maps.includes('libchdb') }));`,
      ],
      env,
    ).then((r) => JSON.parse(r.stdout.slice(r.stdout.lastIndexOf('\n') + 1)) as { code: number; chdb: boolean });

  let stateDir: string;
  beforeAll(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-query-load-'));
  });
  afterAll(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  it('--help and the server path never load chDB; the embedded path does', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_STATE_DIR: stateDir };
    delete env.SLUICE_CLICKHOUSE_URL;
    expect(await probe(['--help'], env)).toEqual({ code: 0, chdb: false });
    expect(await probe(['SELECT 1', '--clickhouse-url', serverUrl()], env)).toEqual({ code: 0, chdb: false });
    expect(await probe(['SELECT 1', '--clickhouse-url', serverUrl()], { ...env, SLUICE_CLICKHOUSE_URL: serverUrl() })).toEqual({ code: 0, chdb: false });
    expect(await probe(['SELECT 1'], env)).toEqual({ code: 0, chdb: true });
  });
});

describe('renderTable', () => {
  it('right-aligns numbers and counts characters, not bytes', () => {
    expect(renderTable([{ name: 'n', type: 'Nullable(UInt32)' }, { name: 's', type: 'String' }], [[5, 'ünï'], [null, '']])).toBe(
      ['┌────n─┬─s───┐', '│    5 │ ünï │', '│ NULL │     │', '└──────┴─────┘', ''].join('\n'),
    );
  });
});
