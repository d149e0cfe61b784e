/**
 * Spool files (an inner image that needs random access and arrives as a stream) are
 * removed on success, on failure, and when the run is stopped with SIGTERM; the disk
 * budget stops a spool that would pass it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BufferDevice } from '../../sources/images/block-device.ts';
import { imageEntries } from '../../sources/images/image-entries.ts';
import { ImageError } from '../../sources/images/image-error.ts';
import { liveSpools } from '../../sources/images/spool.ts';
import { fixture, fixtureContext, listImage } from './golden.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const temp = mkdtempSync(path.join(os.tmpdir(), 'sluice-spool-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

const spools = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('sluice-image-'));

describe('spooling', () => {
  it('removed after a successful read', async () => {
    const dir = path.join(temp, 'ok');
    mkdirSync(dir);
    const { layers } = await listImage('gpt.img.xz', { tempDir: dir });
    expect(layers[0]!.format).toBe('xz');
    expect(spools(dir)).toEqual([]);
    expect(liveSpools()).toBe(0);
  });

  it('removed when the compressed image is truncated', async () => {
    const dir = path.join(temp, 'bad');
    mkdirSync(dir);
    const bytes = readFileSync(fixture('gpt.img.xz')).subarray(0, 3000);
    const err = await (async () => {
      for await (const _ of imageEntries(fixtureContext(), new BufferDevice('cut.img.xz', bytes), { tempDir: dir }));
    })().catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^xz: cannot decode cut\.img\.xz: .*truncated/);
    expect(spools(dir)).toEqual([]);
  });

  it('a spool that would pass the disk budget stops with an ImageError naming the image', async () => {
    const dir = path.join(temp, 'budget');
    mkdirSync(dir);
    const err = await listImage('gpt.img.xz', { tempDir: dir, spoolBudget: 1024 * 1024 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toMatch(/^spool: gpt\.img\.xz \(xz-decompressed\): spooling needs more than the 1048576-byte disk budget/);
    expect(spools(dir)).toEqual([]);
  });

  it('removed when the run is stopped with SIGTERM', async () => {
    const dir = path.join(temp, 'term');
    mkdirSync(dir);
    const image = path.join(temp, 'zeros.img.xz');
    // 768 MiB of zeros, xz-compressed to almost nothing: decompressing it to the spool takes a while
    execFileSync('sh', ['-c', `head -c 768M /dev/zero | xz -0 -T1 > "${image}"`]);
    writeFileSync(path.join(temp, 'keep'), '');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'runtime/cli/main.ts', 'pipeline', 'altrepo-image', '--param', `path=${image}`, '--param', `tempDir=${dir}`, '--param', 'hashImage=false', '--param', `snapshot=${temp}/snap.jsonl`, '--state-dir', path.join(temp, 'state'), `--allow-write=${temp}`, '--quiet'],
      { cwd: ROOT, stdio: 'ignore' },
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (spools(dir).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(spools(dir).length).toBe(1);
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    expect(spools(dir)).toEqual([]);
  }, 120_000);
});
