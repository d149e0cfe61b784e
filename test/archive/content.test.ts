/**
 * Every regular member's content against the sha256 of the file the real tool
 * (GNU tar, unzip) extracted when the fixture was made (golden/sha256sums.txt).
 */
import { createReadStream } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { archiveEntries } from '../../sources/archive/archive-entries.ts';
import { hashStream } from '../../sources/files/hash-stream.ts';
import { fixture, goldenSums } from './golden.ts';

const SUMS = goldenSums();

/** "<archive>!<path>" → sha256 of every member with content; hard links → "link:<target>" */
async function hashes(file: string, nested = false): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const entry of archiveEntries(createReadStream(fixture(file)), { name: file, nested })) {
    expect(entry.error, entry.path).toBeUndefined();
    if (entry.type !== 'file') continue;
    if (entry.hardLinkTarget !== undefined) out.set(`${file}!${entry.path}`, `link:${file}!${entry.hardLinkTarget}`);
    else out.set(`${file}!${entry.path}`, (await hashStream(entry.content(), ['sha256'])).sha256);
  }
  return out;
}

/** The golden sums of one archive's members (and their nested members when `nested`). */
function golden(file: string, nested: boolean): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, sum] of SUMS) {
    if (!key.startsWith(`${file}!`)) continue;
    const depth = key.split('!').length - 1;
    if (nested || depth === 1) out.set(key, sum);
  }
  return out;
}

describe('member content matches what the real tool extracted', () => {
  for (const file of ['tree.tar', 'tree.tar.gz', 'tree.tar.xz', 'tree-x86.tar.xz', 'tree-blocks.tar.xz', 'tree.tar.zst', 'tree.tar.bz2', 'tree.zip', 'sparse-pax.tar', 'sparse-pax01.tar']) {
    it(file, async () => {
      const ours = await hashes(file);
      const expected = golden(file, false);
      expect([...ours.keys()].sort()).toEqual([...expected.keys()].sort());
      for (const [key, sum] of ours) {
        // a hard link's bytes are its target's: tar extracts it as the same file
        const resolved = sum.startsWith('link:') ? ours.get(sum.slice(5))! : sum;
        expect(resolved, key).toBe(expected.get(key));
      }
    });
  }

  it('nested.tar with nested: members at every level (an archive member stands for its members; plain.txt.gz stays as it is)', async () => {
    const ours = await hashes('nested.tar', true);
    const expected = golden('nested.tar', true);
    // the nested archives themselves are not members any more, their members are
    for (const archive of ['nested.tar!inner.zip', 'nested.tar!inner.zip!deep.tar', 'nested.tar!packed.tar.gz']) expected.delete(archive);
    expect(Object.fromEntries(ours)).toEqual(Object.fromEntries(expected));
  });

  it('nested.tar without nested: the inner archives are members with their own bytes', async () => {
    expect(Object.fromEntries(await hashes('nested.tar'))).toEqual(Object.fromEntries(golden('nested.tar', false)));
  });
});
