/**
 * The rsync source's process hygiene, seen from the child's side with a stand-in
 * program that records its argv and environment: the argument array reaches it as
 * given (no shell: `$(…)`, backquotes and `;` stay literal), the password is in its
 * environment only (not the parent's, not argv), nothing else of the parent's
 * environment leaks in, and the permissions are checked before it starts.
 */
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rsync, type RsyncRecord } from '../../sources/rsync/index.ts';
import type { SourceYield } from '../../runtime/pipeline.ts';
import { testRunContext } from '../support/run-context.ts';

let dir: string;
let fake: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-rsync-src-'));
  fake = path.join(dir, 'rsync');
  // prints what it got, one NUL-separated list each, and an itemized line
  await writeFile(fake, `#!/bin/sh
printf '%s\\0' "$@" > "${dir}/argv"
env > "${dir}/env"
echo '>f+++++++++ 3 x.txt'
echo 'Number of regular files transferred: 1'
exit 0
`);
  await chmod(fake, 0o755);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function collect(it: AsyncIterable<SourceYield<RsyncRecord>>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const v of it) {
    const data = (v as { data?: unknown }).data ?? v;
    out.push(data);
    const ack = (v as { ack?: () => void }).ack;
    ack?.();
  }
  return out;
}

describe('the rsync child process', () => {
  it('gets the arguments as given, the password in its environment only, nothing else of ours', async () => {
    const dest = path.join(dir, 'dest');
    const marker = path.join(dir, 'pwned');
    process.env.SLUICE_SECRET_OF_THE_PARENT = 'do-not-leak';
    const ctx = testRunContext({ dir, permissions: { run: [fake], net: ['mirror.example.org:873'], write: [dest] } });
    const records = await collect(rsync(ctx, {
      host: 'mirror.example.org', module: 'fedora', user: 'fedora', dest, password: 'pw-for-the-child',
      options: ['-rlptH', `--exclude=$(touch ${marker})`, '--exclude=`touch x`;rm -rf /', '--exclude=a b'], program: fake,
    }));
    delete process.env.SLUICE_SECRET_OF_THE_PARENT;
    const argv = (await readFile(path.join(dir, 'argv'), 'utf8')).split('\0').slice(0, -1);
    expect(argv.slice(0, 4)).toEqual(['-rlptH', `--exclude=$(touch ${marker})`, '--exclude=`touch x`;rm -rf /', '--exclude=a b']);
    expect(argv.slice(-3)).toEqual(['--', 'rsync://fedora@mirror.example.org:873/fedora/', `${dest}/`]);
    expect(argv.join(' ')).not.toContain('pw-for-the-child');
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
    const env = await readFile(path.join(dir, 'env'), 'utf8');
    expect(env).toMatch(/^RSYNC_PASSWORD=pw-for-the-child$/m);
    expect(env).toMatch(/^LC_ALL=C$/m);
    expect(env).not.toContain('do-not-leak');
    expect(process.env.RSYNC_PASSWORD).toBeUndefined();
    expect(records[0]).toMatchObject({ kind: 'file', path: 'x.txt', change: 'created', size: 3 });
    expect(records[1]).toMatchObject({ kind: 'summary', ok: true, exitCode: 0, stats: { regularFilesTransferred: 1 } });
  });

  it('with a user and no password, the child gets an empty one (rsync would prompt on a terminal otherwise)', async () => {
    const dest = path.join(dir, 'dest2');
    const ctx = testRunContext({ dir, permissions: { run: [fake], net: ['mirror.example.org'], write: [dest] } });
    await collect(rsync(ctx, { host: 'mirror.example.org', module: 'm', user: 'u', dest, program: fake }));
    expect(await readFile(path.join(dir, 'env'), 'utf8')).toMatch(/^RSYNC_PASSWORD=$/m);
  });

  it('checks run, net and write permissions before anything starts', async () => {
    const dest = path.join(dir, 'dest3');
    const argvFile = path.join(dir, 'argv');
    await rm(argvFile, { force: true });
    const denied = [
      [{ net: ['mirror.example.org'], write: [dest] }, /running .*rsync is not allowed/],
      [{ run: [fake], write: [dest] }, /network access to mirror\.example\.org:873 is not allowed/],
      [{ run: [fake], net: ['mirror.example.org'] }, /write access to .*dest3 is not allowed/],
    ] as const;
    for (const [permissions, error] of denied) {
      const ctx = testRunContext({ dir, permissions });
      await expect(collect(rsync(ctx, { host: 'mirror.example.org', module: 'm', dest, program: fake }))).rejects.toThrow(error);
    }
    await expect(stat(argvFile)).rejects.toThrow(/ENOENT/);
  });
});
