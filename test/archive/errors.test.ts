/**
 * Broken archives and bombs: a clear PermanentError naming the archive (and the member
 * and offset where known), the members before it intact, a broken nested archive that
 * does not take its neighbours with it; and the rule for content(): valid until the
 * next member is pulled, read once, waited for.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { archiveEntries, type ArchiveEntriesOptions } from '../../sources/archive/archive-entries.ts';
import type { ArchiveEntry } from '../../sources/archive/archive-entry.ts';
import { ArchiveLimitError } from '../../sources/archive/limits.ts';
import { DecodeError } from '../../sources/decoders/decode-error.ts';
import { fixture, goldenListing } from './golden.ts';
import { normalizeEntryPath } from '../../sources/archive/entry-path.ts';

/**
 * Read every member (content too), as a pipeline would: a member whose content fails is
 * noted and the next one is pulled. What was read, the content errors, and the error
 * that ended the archive.
 */
async function readAll(file: string, options: Partial<ArchiveEntriesOptions> = {}, input: AsyncIterable<Uint8Array> = createReadStream(fixture(file))) {
  const entries: ArchiveEntry[] = [];
  const texts = new Map<string, string>();
  const contentErrors = new Map<string, unknown>();
  try {
    for await (const e of archiveEntries(input, { name: file, ...options })) {
      entries.push(e);
      if (e.type !== 'file' || e.error || e.hardLinkTarget !== undefined) continue;
      try {
        texts.set(e.path, await new Response(e.content()).text());
      } catch (err) {
        contentErrors.set(e.path, err);
      }
    }
  } catch (error) {
    return { entries, texts, contentErrors, error };
  }
  return { entries, texts, contentErrors, error: undefined };
}

describe('corrupt and truncated archives', () => {
  it('corrupt.tar.xz: a DecodeError naming the archive and the compressed offset, after the members before the damage', async () => {
    const { entries, error } = await readAll('corrupt.tar.xz');
    expect(error).toBeInstanceOf(DecodeError);
    expect(error).toBeInstanceOf(PermanentError);
    const e = error as DecodeError;
    expect(e.message).toMatch(/^xz: cannot decode corrupt\.tar\.xz: compressed data is corrupt \(at compressed byte \d+\)$/);
    expect(e.item).toBe('corrupt.tar.xz');
    expect(e.offset).toBeGreaterThan(0);
    // the members read are (a prefix of) those `xz -dc | tar -tv` listed before the error
    const golden = goldenListing('corrupt.tar.xz').map((g) => normalizeEntryPath(g.name)).filter(Boolean);
    expect(entries.length).toBeGreaterThan(0);
    expect(golden.slice(0, entries.length)).toEqual(entries.map((x) => x.path));
    expect(readFileSync(fixture('golden/corrupt.tar.xz.error'), 'utf8')).toContain('Compressed data is corrupt');
  });

  it('truncated.tar.gz: a DecodeError saying truncated, after the members gzip -dc | tar got out of it', async () => {
    const { entries, texts, error } = await readAll('truncated.tar.gz');
    expect(error).toBeInstanceOf(DecodeError);
    expect((error as DecodeError).message).toMatch(/^gzip: cannot decode truncated\.tar\.gz: the stream ends too early \(truncated\)/);
    const golden = goldenListing('truncated.tar.gz').map((g) => normalizeEntryPath(g.name)).filter(Boolean);
    expect(golden.slice(0, entries.length)).toEqual(entries.map((x) => x.path));
    expect(texts.get('bin/run.sh')).toBe('#!/bin/sh\necho run\n');
  });

  it('a tar cut in the middle of a member: that member\'s content and the archive fail with a PermanentError, not a short member', async () => {
    const tar = readFileSync(fixture('tree.tar'));
    const cut = tar.subarray(0, 10000); // data/numbers.txt's data runs from 4096 to 32989
    const { entries, contentErrors, error } = await readAll('cut.tar', {}, (async function* () { yield cut; })());
    expect(entries.at(-1)!.path).toBe('data/numbers.txt');
    const truncated = /^cut\.tar: not a readable tar after member "\.\/data\/numbers\.txt" \(header at byte 3584\): Unexpected end of data/;
    expect(contentErrors.get('data/numbers.txt')).toBeInstanceOf(PermanentError);
    expect((contentErrors.get('data/numbers.txt') as Error).message).toMatch(truncated);
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as Error).message).toMatch(truncated);
  });

  it('bytes that are no archive: a PermanentError saying so', async () => {
    const { error } = await readAll('notes.txt', {}, (async function* () { yield Buffer.from('just some text\n'.repeat(100)); })());
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as Error).message).toBe('notes.txt is not a tar or zip archive');
    const gz = await readAll('plain.txt.gz', { nested: true }, (async function* () {
      const { gzipSync } = await import('node:zlib');
      yield gzipSync('not an archive\n');
    })());
    expect((gz.error as Error).message).toMatch(/^plain\.txt\.gz is not a tar or zip archive \(it is gzip-compressed/);
  });

  it('nested-bad.tar: the corrupt tar.xz inside is one error entry; the members around it are read', async () => {
    const { entries, texts, contentErrors, error } = await readAll('nested-bad.tar', { nested: true });
    expect(error).toBeUndefined();
    // the inner tar's member was listed before the damage was reached; reading it hits it
    expect(entries.map((e) => [e.path, e.error?.name])).toEqual([
      ['a-good.txt', undefined],
      ['bad.tar.xz!big.txt', undefined],
      ['bad.tar.xz', 'DecodeError'],
      ['c-after.txt', undefined],
    ]);
    const damage = /^xz: cannot decode nested-bad\.tar!bad\.tar\.xz: compressed data is corrupt \(at compressed byte \d+\)/;
    expect((contentErrors.get('bad.tar.xz!big.txt') as Error).message).toMatch(damage);
    expect(entries[2]!.error!.message).toMatch(damage);
    expect(() => entries[2]!.content()).toThrow(entries[2]!.error!);
    expect(texts.get('a-good.txt')).toBe('good before\n');
    expect(texts.get('c-after.txt')).toBe('good after\n');
  });
});

describe('bomb limits', () => {
  it('bomb.zip over the ratio: an ArchiveLimitError naming the archive and the member', async () => {
    const { entries, error } = await readAll('bomb.zip', { limits: { maxRatio: 100, ratioFloorBytes: 2 ** 20 } });
    expect(error).toBeInstanceOf(ArchiveLimitError);
    expect(error).toBeInstanceOf(PermanentError);
    const e = error as ArchiveLimitError;
    expect(e.archive).toBe('bomb.zip');
    expect(e.entry).toBe('zeros.bin');
    expect(e.limit).toBe('maxRatio');
    expect(e.message).toMatch(/^archive bomb guard: bomb\.zip, member zeros\.bin: [\d.]+ MiB decompressed from 20\.1 KiB of archive, more than 100x \(limits\.maxRatio\)$/);
    expect(entries.map((x) => x.path)).toEqual(['small.txt', 'zeros.bin']);
  });

  it('bomb.zip over the total: an ArchiveLimitError for maxTotalBytes', async () => {
    const { error } = await readAll('bomb.zip', { limits: { maxTotalBytes: 5 * 2 ** 20 } });
    expect(error).toBeInstanceOf(ArchiveLimitError);
    expect((error as ArchiveLimitError).limit).toBe('maxTotalBytes');
    expect((error as Error).message).toBe('archive bomb guard: bomb.zip, member zeros.bin: more than 5.0 MiB decompressed (limits.maxTotalBytes)');
  });

  it('bomb.zip is within the default limits (20 MiB: under the 64 MiB floor)', async () => {
    const { error } = await readAll('bomb.zip');
    expect(error).toBeUndefined();
  });

  it('bomb.tar.xz (100 MiB of zeros in 15 KB) trips the default ratio, even when nobody reads the member', async () => {
    const entries: string[] = [];
    let error: unknown;
    try {
      for await (const e of archiveEntries(createReadStream(fixture('bomb.tar.xz')), { name: 'bomb.tar.xz' })) entries.push(e.path);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ArchiveLimitError);
    expect((error as Error).message).toMatch(/^archive bomb guard: bomb\.tar\.xz, member zeros\.bin: 64\.\d MiB decompressed from 15\.\d KiB of archive, more than 1000x/);
    expect(entries).toEqual(['small.txt', 'zeros.bin']);
  });

  it('a nested bomb stops the whole archive (it is not one bad member)', async () => {
    const { error } = await readAll('nested.tar', { nested: true, limits: { maxTotalBytes: 1000 } });
    expect(error).toBeInstanceOf(ArchiveLimitError);
  });

  it('maxDepth: members deeper than it are not opened', async () => {
    const { entries } = await readAll('nested.tar', { nested: true, limits: { maxDepth: 1 } });
    expect(entries.map((e) => e.path)).toContain('inner.zip!deep.tar');
    expect(entries.map((e) => e.path)).not.toContain('inner.zip!deep.tar!deep/deep.txt');
  });
});

describe('content(): valid until the next member is pulled', () => {
  it('after the next member was pulled, content() throws a PermanentError that says why', async () => {
    const it = archiveEntries(createReadStream(fixture('tree.tar.gz')), { name: 'tree.tar.gz' });
    let first: ArchiveEntry | undefined;
    for await (const e of it) {
      if (e.path === 'bin/run.sh') first = e;
      else if (first) break;
    }
    expect(() => first!.content()).toThrow(/bin\/run\.sh: content\(\) called after the next archive member was read/);
  });

  it('a second content() throws; a member without content says why, every time', async () => {
    for await (const e of archiveEntries(createReadStream(fixture('tree.tar')), { name: 'tree.tar' })) {
      if (e.path === 'bin' || e.path === 'link-to-hello' || e.path === 'data/zz-hardlink-to-numbers') {
        const why = e.path === 'bin' ? /tree\.tar!bin is a directory/ : e.path === 'link-to-hello' ? /is a symlink to hello\.txt/ : /is a hard link to \.\/data\/numbers\.txt/;
        expect(() => e.content()).toThrow(why);
        expect(() => e.content()).toThrow(why);
      }
      if (e.path !== 'hello.txt') continue;
      const stream = e.content();
      expect(() => e.content()).toThrow(/content\(\) called a second time/);
      await stream.cancel();
    }
  });

  it('pulling the next member waits until an opened content is read, then the bytes are all there', async () => {
    const events: string[] = [];
    const reads: Array<Promise<void>> = [];
    for await (const e of archiveEntries(createReadStream(fixture('tree.tar.xz')), { name: 'tree.tar.xz' })) {
      events.push(`pulled ${e.path}`);
      if (e.path !== 'data/numbers.txt') continue;
      const stream = e.content();
      // read slowly, after the loop has asked for the next member
      reads.push((async () => {
        let n = 0;
        for await (const chunk of stream) {
          await sleep(5);
          n += chunk.length;
        }
        events.push(`read ${n}`);
      })());
    }
    await Promise.all(reads);
    const at = events.indexOf('pulled data/numbers.txt');
    expect(events[at + 1]).toBe('read 28893');
    expect(events[at + 2]).toBe('pulled data/secret.txt');
  });

  it('members nobody reads are skipped, at every nesting level', async () => {
    const paths: string[] = [];
    for await (const e of archiveEntries(createReadStream(fixture('nested.tar')), { name: 'nested.tar', nested: true })) paths.push(e.path);
    expect(paths).toEqual(['inner.zip!deep.tar!deep', 'inner.zip!deep.tar!deep/deep.txt', 'inner.zip!note.txt', 'packed.tar.gz!p.txt', 'plain.txt.gz', 'readme.txt']);
    // members larger than what the archive probe looks at (data/numbers.txt: 28 KB)
    const tree: string[] = [];
    for await (const e of archiveEntries(createReadStream(fixture('tree.tar.gz')), { name: 'tree.tar.gz', nested: true })) tree.push(e.path);
    expect(tree).toContain('hello.txt');
  });

  it('an opened content that is cancelled lets the next member through', async () => {
    const paths: string[] = [];
    for await (const e of archiveEntries(createReadStream(fixture('tree.zip')), { name: 'tree.zip' })) {
      paths.push(e.path);
      if (e.type === 'file') {
        const reader = e.content().getReader();
        await reader.read();
        await reader.cancel();
      }
    }
    expect(paths).toContain('link-to-hello');
  });
});
