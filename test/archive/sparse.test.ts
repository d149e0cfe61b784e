/**
 * GNU sparse members: the PAX 1.0 and 0.1 forms are expanded to the file GNU tar
 * extracts; the old GNU form and PAX 0.0 are error entries that name the member, and
 * the members after them are still read. Never a silently short file.
 */
import { createReadStream } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { archiveEntries } from '../../sources/archive/archive-entries.ts';
import { hashStream } from '../../sources/files/hash-stream.ts';
import { fixture, goldenSums } from './golden.ts';

const SUMS = goldenSums();

describe('GNU sparse members', () => {
  for (const file of ['sparse-pax.tar', 'sparse-pax01.tar']) {
    it(`${file}: expanded to the 1 MiB file GNU tar extracts, holes as zeros`, async () => {
      const seen: string[] = [];
      for await (const e of archiveEntries(createReadStream(fixture(file)), { name: file })) {
        seen.push(e.path);
        if (e.path !== 'sparse.img') continue;
        expect(e.size).toBe(1048576);
        expect(e.rawPath).toBe('sparse.img');
        const chunks: Uint8Array[] = [];
        for await (const c of e.content()) chunks.push(c);
        const bytes = Buffer.concat(chunks);
        expect(bytes.length).toBe(1048576);
        expect(bytes.subarray(300000, 300006).toString()).toBe('MIDDLE');
        expect(bytes.subarray(1048000, 1048003).toString()).toBe('END');
        expect(bytes.subarray(0, 299008).every((b) => b === 0)).toBe(true);
        expect((await hashStream(new Blob([bytes]).stream(), ['sha256'])).sha256).toBe(SUMS.get(`${file}!sparse.img`));
        expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(64 * 1024);
      }
      expect(seen).toEqual(['sparse.img', 'after.txt']);
    });
  }

  for (const [file, why] of [
    ['sparse-gnu.tar', /old GNU format \(type flag S/],
    ['sparse-pax00.tar', /GNU sparse 0\.0/],
  ] as const) {
    it(`${file}: an error entry naming the member; the next member is still read`, async () => {
      const got: Array<{ path: string; error?: PermanentError; text?: string }> = [];
      for await (const e of archiveEntries(createReadStream(fixture(file)), { name: file })) {
        got.push({ path: e.path, ...(e.error ? { error: e.error } : { text: await new Response(e.content()).text() }) });
      }
      expect(got.map((g) => g.path)).toEqual(['sparse.img', 'after.txt']);
      const [sparse, after] = got;
      expect(sparse!.error).toBeInstanceOf(PermanentError);
      expect(sparse!.error!.message).toContain(`${file}!sparse.img`);
      expect(sparse!.error!.message).toMatch(why);
      expect(after!.text).toBe('dense\n');
    });
  }

  it('the content() of the refused member throws its error', async () => {
    for await (const e of archiveEntries(createReadStream(fixture('sparse-gnu.tar')), { name: 'sparse-gnu.tar' })) {
      if (e.path === 'sparse.img') expect(() => e.content()).toThrow(e.error!);
    }
  });

  it('holes count against the bomb limits', async () => {
    const run = async () => {
      for await (const e of archiveEntries(createReadStream(fixture('sparse-pax.tar')), { name: 'sparse-pax.tar', limits: { maxTotalBytes: 512 * 1024 } })) {
        if (e.path === 'sparse.img') for await (const _ of e.content());
      }
    };
    await expect(run()).rejects.toThrow(/archive bomb guard: sparse-pax\.tar, member sparse\.img: more than 512\.0 KiB/);
  });
});
