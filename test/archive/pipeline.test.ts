/**
 * End to end through the runner: archive() as a pipeline's source, a transform that
 * hashes each member, onError 'skip'. A truncated archive, a corrupt nested archive and
 * members that cannot be read are skipped and counted; every other member of every
 * archive arrives at the sink with the bytes the real tools extracted.
 * Also: descendArchive() as the files source would use it, and archive()'s errors for a
 * path it cannot open.
 */
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { filter, mergeMap, pipe } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { FatalError } from '../../runtime/errors.ts';
import { createLogger } from '../../runtime/log.ts';
import { PermissionError } from '../../runtime/permission-error.ts';
import { definePipeline, type Sink, type TaggedItem } from '../../runtime/pipeline.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { archive } from '../../sources/archive/archive.ts';
import type { ArchiveEntry } from '../../sources/archive/archive-entry.ts';
import { descendArchive } from '../../sources/archive/descend-archive.ts';
import type { FileEntry } from '../../sources/entry.ts';
import { files } from '../../sources/files/files.ts';
import { hashStream } from '../../sources/files/hash-stream.ts';
import { testRunContext } from '../support/run-context.ts';
import { FIXTURES, fixture, goldenSums } from './golden.ts';

const quiet = createLogger({ level: 'silent' });
const SUMS = goldenSums();
let temp: string;

beforeAll(() => {
  temp = mkdtempSync(path.join(os.tmpdir(), 'sluice-archive-'));
});
afterAll(() => {
  execFileSync('rm', ['-rf', temp]);
});

interface Hashed {
  id: string;
  sha256: string;
}

describe('archive() in a pipeline with onError skip', () => {
  it('one bad archive, one bad nested archive and unreadable members lose nothing else', async () => {
    const written: Hashed[] = [];
    const sink: Sink<Hashed> = {
      name: 'collect',
      kind: 'memory',
      batch: { maxRecords: 4, maxDelayMs: 20 },
      write: (records) => {
        written.push(...records);
      },
    };
    const archives = ['tree.tar.gz', 'truncated.tar.gz', 'nested-bad.tar', 'tree.zip', 'tree.tar.bz2'];
    const pipeline = definePipeline({
      name: 'archive-hashes',
      description: 'sha256 of every member of some archives',
      params: z.object({}),
      permissions: { read: [FIXTURES] },
      source: async function* (ctx) {
        for (const file of archives) yield* archive(ctx, { path: fixture(file), nested: true });
      },
      transform: () =>
        pipe(
          filter((e: ArchiveEntry) => e.hardLinkTarget === undefined),
          // content() right away: the archive is not moved past this member until it is read
          mergeMap(async (e: ArchiveEntry) => ({ id: `${path.basename(e.archive.split('!')[0]!)}!${e.path}`, sha256: (await hashStream(e.content(), ['sha256'])).sha256 })),
        ),
      sinks: () => [sink],
      onError: 'skip',
      maxInFlight: 8,
    });
    const run = await runPipeline({ pipeline, stateDir: path.join(temp, 'state'), log: quiet });
    expect(run.status).toBe('succeeded');

    const got = new Map(written.map((r) => [r.id, r.sha256]));
    expect(got.size).toBe(written.length); // each once
    // every member of the good archives, with the bytes tar and unzip extracted
    for (const file of ['tree.tar.gz', 'tree.zip', 'tree.tar.bz2']) {
      for (const [key, sum] of SUMS) {
        // (a tar's hard link was filtered out by the transform; a zip has none, it stores the file twice)
        if (!key.startsWith(`${file}!`) || (key.endsWith('zz-hardlink-to-numbers') && file !== 'tree.zip')) continue;
        expect(got.get(key), key).toBe(sum);
      }
    }
    // around the bad nested archive
    expect(got.get('nested-bad.tar!a-good.txt')).toBe(SUMS.get('nested-bad.tar!a-good.txt'));
    expect(got.get('nested-bad.tar!c-after.txt')).toBe(SUMS.get('nested-bad.tar!c-after.txt'));
    // the truncated archive's members before the damage
    expect(got.get('truncated.tar.gz!bin/run.sh')).toBe(SUMS.get('tree.tar.gz!bin/run.sh'));
    expect(got.has('truncated.tar.gz!data/numbers.txt')).toBe(false);

    // the failures: skipped and counted, with messages that name what failed
    expect(run.counts.errors.fatal).toBe(0);
    expect(run.counts.skipped).toBe(run.counts.errors.permanent);
    expect(run.counts.skipped).toBeGreaterThanOrEqual(3);
    const messages = run.errors.map((e) => `${e.item}: ${e.message}`).join('\n');
    expect(messages).toMatch(/truncated\.tar\.gz.*gzip: cannot decode .*truncated\.tar\.gz: the stream ends too early/);
    expect(messages).toMatch(/xz: cannot decode .*nested-bad\.tar!bad\.tar\.xz: compressed data is corrupt \(at compressed byte \d+\)/);
    expect(run.counts.records).toBe(written.length);
    expect(written.length).toBe(6 + 7 + 6 + 2 + 2); // tree.tar.gz, tree.zip, tree.tar.bz2, nested-bad, truncated
  });
});

describe('archive() cannot open its file', () => {
  it('a missing archive is a FatalError; one outside the allowed roots is the PermissionError', async () => {
    const ctx = testRunContext({ dir: temp });
    const missing = archive(ctx, { path: path.join(temp, 'nope.tar') });
    await expect(missing.next()).rejects.toThrow(FatalError);
    const outside = archive(ctx, { path: fixture('tree.tar') });
    await expect(outside.next()).rejects.toThrow(PermissionError);
  });

  it('a file that is no archive is one error item', async () => {
    const file = path.join(temp, 'notes.txt');
    writeFileSync(file, 'not an archive\n'.repeat(50));
    const items: TaggedItem<ArchiveEntry>[] = [];
    for await (const i of archive(testRunContext({ dir: temp }), { path: file })) items.push(i);
    expect(items).toHaveLength(1);
    expect(items[0]!.id).toBe(file);
    expect((items[0]!.error as Error).message).toBe(`${file} is not a tar or zip archive`);
  });
});

describe('descendArchive() for the files source', () => {
  it('archives found by the walk yield their members as <path>!<member>; other files stay files', async () => {
    const root = path.join(temp, 'tree');
    mkdirSync(path.join(root, 'sub'), { recursive: true });
    copyFileSync(fixture('tree.zip'), path.join(root, 'tree.zip'));
    copyFileSync(fixture('nested.tar'), path.join(root, 'sub', 'nested.tar'));
    copyFileSync(fixture('tree.tar.xz'), path.join(root, 'sub', 'renamed.bin')); // by the bytes, not the name
    writeFileSync(path.join(root, 'notes.txt'), 'notes\n');
    const ctx = testRunContext({ dir: temp });

    // what files() would do with an `archives` option
    async function* walkWithArchives(): AsyncGenerator<TaggedItem<FileEntry | ArchiveEntry>> {
      for await (const found of files(ctx, { root })) {
        if (yield* descendArchive(ctx, found.data, { nested: true })) continue;
        yield found;
      }
    }
    const seen = new Map<string, string>();
    for await (const i of walkWithArchives()) {
      expect(i.error, i.id).toBeUndefined();
      const entry = i.data as ArchiveEntry;
      seen.set(i.id, entry.hardLinkTarget === undefined ? (await hashStream(entry.content(), ['sha256'])).sha256 : 'link');
    }
    expect([...seen.keys()]).toEqual([
      'notes.txt',
      'sub/nested.tar!inner.zip!deep.tar!deep/deep.txt',
      'sub/nested.tar!inner.zip!note.txt',
      'sub/nested.tar!packed.tar.gz!p.txt',
      'sub/nested.tar!plain.txt.gz',
      'sub/nested.tar!readme.txt',
      'sub/renamed.bin!bin/run.sh',
      'sub/renamed.bin!data/empty.txt',
      'sub/renamed.bin!data/numbers.txt',
      'sub/renamed.bin!data/secret.txt',
      'sub/renamed.bin!data/zz-hardlink-to-numbers',
      'sub/renamed.bin!data/ünïcödé name.txt',
      'sub/renamed.bin!hello.txt',
      'tree.zip!bin/run.sh',
      'tree.zip!data/empty.txt',
      'tree.zip!data/numbers.txt',
      'tree.zip!data/secret.txt',
      'tree.zip!data/zz-hardlink-to-numbers',
      'tree.zip!data/ünïcödé name.txt',
      'tree.zip!hello.txt',
    ]);
    expect(seen.get('sub/nested.tar!inner.zip!deep.tar!deep/deep.txt')).toBe(SUMS.get('nested.tar!inner.zip!deep.tar!deep/deep.txt'));
    expect(seen.get('tree.zip!hello.txt')).toBe(SUMS.get('tree.zip!hello.txt'));
    expect(seen.get('sub/renamed.bin!data/numbers.txt')).toBe(SUMS.get('tree.tar.xz!data/numbers.txt'));
  });

  it('a member of a zip on disk has the zip\'s real path in absolutePath', async () => {
    const root = path.join(temp, 'tree');
    const ctx = testRunContext({ dir: temp });
    for await (const found of files(ctx, { root, include: ['tree.zip'] })) {
      for await (const member of descendArchive(ctx, found.data)) {
        expect(member.data.absolutePath).toBe(`${path.join(root, 'tree.zip')}!${member.data.path.slice('tree.zip!'.length)}`);
        await member.data.content().cancel();
      }
    }
  });

  it('an entry that is not an archive comes back untouched (false, nothing yielded)', async () => {
    const ctx = testRunContext({ dir: temp });
    const entry: FileEntry = {
      path: 'x.gz',
      absolutePath: '/nowhere/x.gz',
      type: 'file',
      size: 20,
      mode: 0o100644,
      mtime: new Date(0),
      content: () => new Blob([Buffer.from('1f8b', 'hex'), 'not really gzip']).stream(),
    };
    const it = descendArchive(ctx, entry);
    expect(await it.next()).toEqual({ done: true, value: false });
  });
});
