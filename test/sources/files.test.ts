import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../../runtime/context.ts';
import { describeError, FatalError } from '../../runtime/errors.ts';
import { GuardedFs } from '../../runtime/guarded-fs.ts';
import { createLogger, type Logger } from '../../runtime/log.ts';
import { PermissionError } from '../../runtime/permission-error.ts';
import { Permissions, type PermissionSpec } from '../../runtime/permissions.ts';
import type { TaggedItem } from '../../runtime/pipeline.ts';
import type { FileEntry } from '../../sources/entry.ts';
import { files, type FilesOptions } from '../../sources/files/files.ts';
import { hashStream } from '../../sources/files/hash-stream.ts';
import { testRunContext } from '../support/run-context.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
let base: string;
let root: string;
let outside: string;
const contexts: RunContext[] = [];

/**
 * root/
 *   .hidden  B.txt  a.txt (0o640, fixed mtime)  z.log
 *   b/c.bin (100 KB random)   b/d/e.txt   b/d/loop -> ..  (back into b)
 *   link-in -> b/c.bin        link-dir -> b               link-out -> ../outside/secret.txt
 * outside/secret.txt          (not readable by the run)
 */
beforeAll(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'sluice-files-'));
  root = path.join(base, 'root');
  outside = path.join(base, 'outside');
  mkdirSync(path.join(root, 'b', 'd'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(path.join(outside, 'secret.txt'), 'secret\n');
  // created out of order on purpose: the walk's order must not depend on it
  writeFileSync(path.join(root, 'z.log'), 'last\n');
  writeFileSync(path.join(root, 'b', 'd', 'e.txt'), 'deep\n');
  writeFileSync(path.join(root, 'b', 'c.bin'), randomBytes(100_000));
  writeFileSync(path.join(root, 'a.txt'), 'hello\n');
  writeFileSync(path.join(root, 'B.txt'), 'upper\n');
  writeFileSync(path.join(root, '.hidden'), 'dot\n');
  chmodSync(path.join(root, 'a.txt'), 0o640);
  utimesSync(path.join(root, 'a.txt'), new Date('2021-02-03T04:05:06.789Z'), new Date('2020-01-02T03:04:05.678Z'));
  symlinkSync('b/c.bin', path.join(root, 'link-in'));
  symlinkSync('b', path.join(root, 'link-dir'));
  symlinkSync('../outside/secret.txt', path.join(root, 'link-out'));
  symlinkSync('..', path.join(root, 'b', 'd', 'loop'));
});

afterAll(() => rmSync(base, { recursive: true, force: true }));

afterEach(async () => {
  for (const ctx of contexts.splice(0)) await ctx.http.close();
});

function runContext(permissions: PermissionSpec = { read: [root] }, overrides: { fs?: GuardedFs; log?: Logger } = {}): RunContext {
  const ctx: RunContext = { ...testRunContext({ dir: base, permissions, pipeline: 'files-test' }), ...overrides };
  contexts.push(ctx);
  return ctx;
}

async function collect(options: Partial<FilesOptions> = {}, ctx = runContext()): Promise<TaggedItem<FileEntry>[]> {
  const items: TaggedItem<FileEntry>[] = [];
  for await (const it of files(ctx, { root, ...options })) items.push(it);
  return items;
}

const ids = (items: TaggedItem<FileEntry>[]) => items.map((it) => it.id);
const errorOf = (it: TaggedItem<FileEntry>) => (it as { error?: unknown }).error;

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

describe('files source', () => {
  it('yields files depth-first, sorted by name in code-unit order, the same on every walk', async () => {
    const expected = ['.hidden', 'B.txt', 'a.txt', 'b/c.bin', 'b/d/e.txt', 'z.log'];
    const first = await collect();
    expect(ids(first)).toEqual(expected);
    expect(first.map((it) => it.data.path)).toEqual(expected);
    expect(ids(await collect())).toEqual(expected);
  });

  it('reports size, mode, mtime as fs.stat does, absolute paths, and bytes for progress', async () => {
    const items = await collect({ types: ['file', 'directory', 'symlink'] });
    expect(ids(items)).toEqual(['.hidden', 'B.txt', 'a.txt', 'b', 'b/c.bin', 'b/d', 'b/d/e.txt', 'b/d/loop', 'link-dir', 'link-in', 'link-out', 'z.log']);
    for (const { id, data, bytes } of items) {
      const stat = lstatSync(path.join(root, id));
      expect(data.absolutePath).toBe(path.join(root, id));
      expect(data.size, id).toBe(stat.size);
      expect(data.mode, id).toBe(stat.mode);
      expect(data.mtime.getTime(), id).toBe(stat.mtime.getTime());
      expect(bytes, id).toBe(data.type === 'file' ? stat.size : 0);
    }
    const a = items.find((it) => it.id === 'a.txt')!.data;
    expect(a.mode & 0o7777).toBe(0o640);
    expect(a.mtime.toISOString()).toBe('2020-01-02T03:04:05.678Z');
    const byId = new Map(items.map((it) => [it.id, it.data]));
    expect(byId.get('b')!.type).toBe('directory');
    expect(byId.get('link-dir')).toMatchObject({ type: 'symlink', linkTarget: 'b' });
    expect(byId.get('link-out')).toMatchObject({ type: 'symlink', linkTarget: '../outside/secret.txt' });
    expect(byId.get('b/d/loop')).toMatchObject({ type: 'symlink', linkTarget: '..' });
  });

  it('content() gives the bytes, and their sha256 matches sha256sum', async () => {
    const items = await collect();
    const paths = items.map((it) => it.data.absolutePath);
    const sums = new Map(
      execFileSync('sha256sum', paths, { encoding: 'utf8' })
        .trim()
        .split('\n')
        .map((line) => {
          const [digest, file] = line.split(/\s+\*?/, 2);
          return [file!, digest!] as const;
        }),
    );
    const md5 = execFileSync('md5sum', [path.join(root, 'b/c.bin')], { encoding: 'utf8' }).split(' ')[0];
    for (const { data } of items) {
      expect(await bytesOf(data.content())).toEqual(readFileSync(data.absolutePath));
      const digests = await hashStream(data.content());
      expect(digests, data.path).toEqual({ sha256: sums.get(data.absolutePath) });
    }
    const bin = items.find((it) => it.id === 'b/c.bin')!.data;
    expect(await hashStream(bin.content(), ['sha256', 'md5'])).toEqual({ sha256: sums.get(bin.absolutePath), md5 });
    await expect(hashStream(bin.content(), ['no-such-hash'])).rejects.toThrow(FatalError);
  });

  it('include and exclude globs match relative paths (dotfiles too); an excluded directory is not entered', async () => {
    expect(ids(await collect({ include: ['**/*.txt'] }))).toEqual(['B.txt', 'a.txt', 'b/d/e.txt']);
    expect(ids(await collect({ include: ['*'] }))).toEqual(['.hidden', 'B.txt', 'a.txt', 'z.log']);
    expect(ids(await collect({ exclude: ['b'] }))).toEqual(['.hidden', 'B.txt', 'a.txt', 'z.log']);
    expect(ids(await collect({ exclude: ['**/*.txt', '.*'] }))).toEqual(['b/c.bin', 'z.log']);
    expect(ids(await collect({ include: ['b/**'], exclude: ['b/d/**'] }))).toEqual(['b/c.bin']);
    // an excluded directory is never listed: its files are not even looked at
    const counting = new CountingFs(new Permissions({ read: [root] }));
    await collect({ exclude: ['b'] }, runContext({ read: [root] }, { fs: counting }));
    expect(counting.listed).not.toContain(path.join(root, 'b'));
  });

  it('maxDepth limits how deep entries are yielded; types chooses which kinds', async () => {
    expect(ids(await collect({ maxDepth: 1 }))).toEqual(['.hidden', 'B.txt', 'a.txt', 'z.log']);
    expect(ids(await collect({ maxDepth: 2, types: ['file', 'directory'] }))).toEqual(['.hidden', 'B.txt', 'a.txt', 'b', 'b/c.bin', 'b/d', 'z.log']);
    expect(ids(await collect({ types: ['directory'] }))).toEqual(['b', 'b/d']);
  });

  it('does not follow symlinks by default; content() of a link leading outside the read roots throws PermissionError', async () => {
    const items = await collect({ types: ['symlink'] });
    expect(ids(items)).toEqual(['b/d/loop', 'link-dir', 'link-in', 'link-out']);
    const byId = new Map(items.map((it) => [it.id, it.data]));
    // a link inside the root reads its target through the permission check
    expect(await bytesOf(byId.get('link-in')!.content())).toEqual(readFileSync(path.join(root, 'b/c.bin')));
    let error: unknown;
    try {
      byId.get('link-out')!.content();
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PermissionError);
    expect(describeError(error)).toContain('--allow-read');
    expect(describeError(error)).toContain(path.join(outside, 'secret.txt'));
    for (const it of items) expect(errorOf(it)).toBeUndefined();
  });

  it('with followSymlinks, follows links inside the root, yields an error item for a link escaping it, and stops at loops', async () => {
    const warnings: string[] = [];
    const log = createLogger({ level: 'warn', write: (line) => warnings.push(line) });
    const items = await collect({ followSymlinks: true }, runContext({ read: [root] }, { log }));
    expect(ids(items)).toEqual(['.hidden', 'B.txt', 'a.txt', 'b/c.bin', 'b/d/e.txt', 'link-dir/c.bin', 'link-dir/d/e.txt', 'link-in', 'link-out', 'z.log']);
    const byId = new Map(items.map((it) => [it.id, it]));

    const linkIn = byId.get('link-in')!;
    expect(linkIn.data).toMatchObject({ type: 'file', linkTarget: 'b/c.bin', size: 100_000 });
    expect(linkIn.bytes).toBe(100_000);
    expect(errorOf(linkIn)).toBeUndefined();

    const linkOut = byId.get('link-out')!;
    const error = errorOf(linkOut);
    expect(error).toBeInstanceOf(PermissionError);
    expect(describeError(error)).toContain('--allow-read');
    expect(linkOut.data).toMatchObject({ type: 'symlink', linkTarget: '../outside/secret.txt' });
    expect(() => linkOut.data.content()).toThrow(PermissionError);

    // b/d/loop -> .. is b itself, an ancestor: reported once, not walked forever
    expect(warnings.filter((w) => w.includes('path=b/d/loop'))).toHaveLength(1);
    expect(warnings.filter((w) => w.includes('path=link-dir/d/loop'))).toHaveLength(1);
    expect(ids(items).some((id) => id.includes('loop/'))).toBe(false);
  });

  it('throws for a root it cannot walk', async () => {
    await expect(collect({ root: path.join(base, 'missing') }, runContext({ read: [base] }))).rejects.toThrow(FatalError);
    await expect(collect({ root: path.join(root, 'a.txt') })).rejects.toThrow(/not a directory/);
    await expect(collect({ root: outside })).rejects.toThrow(PermissionError);
  });

  it('keeps walking past unreadable directories and files, yielding an error item for each', () => {
    // mode 0o000 means nothing to root, so the walk runs in a child process as `nobody` then
    const asRoot = process.getuid?.() === 0;
    const tree = mkdtempSync(path.join(os.tmpdir(), 'sluice-files-eacces-'));
    try {
      mkdirSync(path.join(tree, 'a-open'));
      mkdirSync(path.join(tree, 'locked'));
      mkdirSync(path.join(tree, 'noexec'));
      writeFileSync(path.join(tree, 'a-open', 'x.txt'), 'x\n');
      writeFileSync(path.join(tree, 'locked', 'inside.txt'), 'hidden\n');
      writeFileSync(path.join(tree, 'noexec', 'n.txt'), 'n\n');
      writeFileSync(path.join(tree, 'secret.txt'), 'no\n');
      writeFileSync(path.join(tree, 'z.txt'), 'z\n');
      chmodSync(tree, 0o755);
      chmodSync(path.join(tree, 'locked'), 0o000);
      chmodSync(path.join(tree, 'noexec'), 0o644); // listable, but its entries cannot be stat'ed
      chmodSync(path.join(tree, 'secret.txt'), 0o000);
      const script = path.join(tree, 'walk.mts');
      writeFileSync(
        script,
        `
        import { createRequire } from 'node:module';
        import { files } from ${JSON.stringify(path.join(repo, 'sources/files/files.ts'))};
        import { hashStream } from ${JSON.stringify(path.join(repo, 'sources/files/hash-stream.ts'))};
        import { describeError } from ${JSON.stringify(path.join(repo, 'runtime/errors.ts'))};
        import { GuardedFs } from ${JSON.stringify(path.join(repo, 'runtime/guarded-fs.ts'))};
        import { HttpClient } from ${JSON.stringify(path.join(repo, 'runtime/http-client.ts'))};
        import { createLogger } from ${JSON.stringify(path.join(repo, 'runtime/log.ts'))};
        import { Permissions } from ${JSON.stringify(path.join(repo, 'runtime/permissions.ts'))};
        const { Registry } = createRequire(${JSON.stringify(path.join(repo, 'package.json'))})('prom-client');
        const root = process.argv[2];
        const permissions = new Permissions({ read: [root] });
        const http = new HttpClient(permissions);
        const ctx = { runId: 'r', pipeline: 'eacces', signal: new AbortController().signal, permissions,
          fs: new GuardedFs(permissions), http, log: createLogger({ level: 'silent' }), stateDir: '.sluice', metrics: new Registry() };
        const out = [];
        for await (const it of files(ctx, { root, types: ['file', 'directory'], exclude: ['*.mts'] })) {
          const row = { id: it.id, type: it.data.type };
          if (it.error !== undefined) row.error = { name: it.error.name, kind: it.error.kind, text: describeError(it.error) };
          else if (it.data.type === 'file') {
            try { row.sha256 = (await hashStream(it.data.content())).sha256; } catch (err) { row.readError = err.code; }
          }
          out.push(row);
        }
        await http.close();
        process.stdout.write(JSON.stringify({ uid: process.getuid(), out }));
        `,
      );
      const result = spawnSync(process.execPath, ['--import', 'tsx', script, tree], {
        cwd: repo,
        encoding: 'utf8',
        ...(asRoot ? { uid: 65534, gid: 65534, env: { ...process.env, HOME: tree } } : {}),
      });
      expect(result.status, result.stderr).toBe(0);
      const { uid, out } = JSON.parse(result.stdout) as { uid: number; out: Record<string, unknown>[] };
      expect(uid).not.toBe(0);
      expect(out.map((r) => r.id)).toEqual(['a-open', 'a-open/x.txt', 'locked', 'noexec', 'noexec/n.txt', 'secret.txt', 'z.txt']);
      // a directory that cannot be listed is one error item, and the walk goes on
      expect(out[2]).toMatchObject({ id: 'locked', type: 'directory', error: { name: 'PermanentError', kind: 'permanent' } });
      expect((out[2]!.error as { text: string }).text).toMatch(/cannot list directory locked: permission denied \(EACCES\)/);
      expect(out[3]).toMatchObject({ id: 'noexec', type: 'directory' });
      expect(out[3]!.error).toBeUndefined();
      expect(out[4]).toMatchObject({ id: 'noexec/n.txt', type: 'file', error: { name: 'PermanentError' } });
      expect((out[4]!.error as { text: string }).text).toContain('cannot stat noexec/n.txt');
      // an unreadable file is listed; reading it fails with EACCES
      expect(out[5]).toMatchObject({ id: 'secret.txt', type: 'file', readError: 'EACCES' });
      expect(out[6]).toMatchObject({ id: 'z.txt', sha256: execFileSync('sha256sum', [path.join(tree, 'z.txt')], { encoding: 'utf8' }).split(' ')[0] });
    } finally {
      chmodSync(path.join(tree, 'locked'), 0o755);
      chmodSync(path.join(tree, 'noexec'), 0o755);
      rmSync(tree, { recursive: true, force: true });
    }
  }, 60_000);

  it('walks lazily: the first of 10,000 files comes before the tree is walked, and later changes are seen', async () => {
    const big = mkdtempSync(path.join(os.tmpdir(), 'sluice-files-big-'));
    try {
      for (let d = 0; d < 100; d++) {
        const sub = path.join(big, `d${String(d).padStart(3, '0')}`);
        mkdirSync(sub);
        for (let f = 0; f < 100; f++) writeFileSync(path.join(sub, `f${String(f).padStart(3, '0')}`), '');
      }
      const counting = new CountingFs(new Permissions({ read: [big] }));
      const walk = files(runContext({ read: [big] }, { fs: counting }), { root: big });
      const first = await walk.next();
      expect(first.value?.id).toBe('d000/f000');
      // one listing for the root and one for d000; two entries looked at
      expect(counting.listed).toEqual([big, path.join(big, 'd000')]);
      expect(counting.statted).toBe(2);

      // a file added to the last directory now is found, because that directory was not listed yet
      writeFileSync(path.join(big, 'd099', 'f100'), 'late');
      let count = 1;
      let last = '';
      for await (const it of walk) {
        count++;
        last = it.id;
      }
      expect(count).toBe(10_001);
      expect(last).toBe('d099/f100');
      expect(statSync(path.join(big, 'd099', 'f100')).size).toBe(4);
    } finally {
      rmSync(big, { recursive: true, force: true });
    }
  }, 60_000);
});

/** A real GuardedFs that counts what the walker asks of it. */
class CountingFs extends GuardedFs {
  readonly listed: string[] = [];
  statted = 0;
  override async readdir(target: string) {
    this.listed.push(target);
    return super.readdir(target);
  }
  override async lstat(target: string) {
    this.statted++;
    return super.lstat(target);
  }
}
