/**
 * Payloads of the four compressors, decoded by sluice's own decoders
 * (sources/decoders/): the cpio members must match `rpm -qplv`, and every file's
 * content must hash to the digest the header lists for it. The system tools (`xz -dc`
 * …) stand in as a `Decompressor` passed by the caller, to show the override works.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { readPackage } from '../../sources/rpm/package.ts';
import { parseHeader, TAG } from '../../sources/rpm/header.ts';
import { cpioEntries, payloadEntries, type PayloadEntry, type PayloadOptions } from '../../sources/rpm/payload.ts';
import { fixtureBytes, fixtureSource, layout, modeString, parseQplv, RPMS, TOOL_DECOMPRESSORS } from './support.ts';

async function collect(name: string, options: PayloadOptions = {}): Promise<{ entries: PayloadEntry[]; contents: Map<string, Buffer> }> {
  const entries: PayloadEntry[] = [];
  const contents = new Map<string, Buffer>();
  for await (const entry of payloadEntries(fixtureSource(name), options)) {
    entries.push(entry);
    if (entry.type === 'file') contents.set(entry.path, Buffer.from(await new Response(entry.content()).arrayBuffer()));
  }
  return { entries, contents };
}

const BY_COMPRESSOR = {
  gzip: 'sluice-gz-1.2.3-alt1.x86_64.rpm',
  xz: 'sluice-xz-0.9-1.noarch.rpm',
  zstd: 'sluice-zstd-0.9-1.noarch.rpm',
  bzip2: 'sluice-bz2-0.9-1.noarch.rpm',
};

describe.each(Object.entries(BY_COMPRESSOR))('%s payload (%s)', (compressor, name) => {
  it('the header says so', async () => {
    expect((await readPackage([fixtureBytes(name)])).payloadCompressor).toBe(compressor);
  });

  it('cpio members match rpm -qplv: path, permissions, owner, size, link target (ghosts have no member)', async () => {
    const { entries } = await collect(name);
    const ls = parseQplv(name);
    const notGhost = ls.filter((l) => !l.path.endsWith('/state.db'));
    expect(entries.map((e) => '/' + e.path).sort()).toEqual(notGhost.map((l) => l.path).sort());
    const byPath = new Map(entries.map((e) => ['/' + e.path, e]));
    for (const line of notGhost) {
      const e = byPath.get(line.path)!;
      expect(modeString(e.mode), line.path).toBe(line.perms);
      expect(e.size, line.path).toBe(line.size);
      expect(e.file?.user, line.path).toBe(line.user);
      expect(e.file?.group, line.path).toBe(line.group);
      expect(e.linkTarget, line.path).toBe(line.target);
      if (e.type === 'file') expect(e.nlink, line.path).toBe(line.nlink);
      expect(e.absolutePath).toBe(`${fixtureSource(name).absolutePath}/${e.path}`);
      expect(e.mtime.getTime()).toBe(1_700_000_000_000);
    }
  });

  it('a Decompressor passed in (here the system tool) is used instead, with the same result', async () => {
    if (compressor === 'gzip') return; // no tool stand-in needed: gzip is the reference case
    const ours = await collect(name);
    let used = 0;
    const tool = TOOL_DECOMPRESSORS[compressor as keyof typeof TOOL_DECOMPRESSORS];
    const theirs = await collect(name, {
      decompressors: {
        [compressor]: (compressed: AsyncIterable<Uint8Array>, options: { name: string }) => {
          used++;
          return tool(compressed, options);
        },
      },
    });
    expect(used).toBeGreaterThan(0);
    expect([...theirs.contents]).toEqual([...ours.contents]);
    expect(theirs.entries.map((e) => e.path)).toEqual(ours.entries.map((e) => e.path));
  });

  it('every file’s content hashes to the digest in the header', async () => {
    const { entries, contents } = await collect(name);
    const pkg = await readPackage([fixtureBytes(name)]);
    const algorithm = pkg.fileDigestAlgorithm;
    let checked = 0;
    for (const e of entries) {
      if (e.type !== 'file') continue;
      const content = contents.get(e.path)!;
      expect(content.length, e.path).toBe(e.size);
      expect(createHash(algorithm).update(content).digest('hex'), e.path).toBe(e.file!.digest);
      checked++;
    }
    expect(checked).toBeGreaterThan(5);
  });
});

describe('payloadEntries', () => {
  const gz = 'sluice-gz-1.2.3-alt1.x86_64.rpm';

  it('content() after the reader moved on opens the package again; hard links get the data of their set', async () => {
    const kept: PayloadEntry[] = [];
    for await (const e of payloadEntries(fixtureSource(gz))) kept.push(e);
    const read = async (suffix: string) => new Response(kept.find((e) => e.path.endsWith(suffix))!.content()).text();
    expect(await read('data/file03.txt')).toBe('data file 03\n');
    expect(await read('hard1')).toBe('linked content\n');
    expect(await read('hard2')).toBe('linked content\n');
    expect(await read('usr/bin/sluice-gz-link')).toBe('sluice-gz');
    expect((await read('zeros.bin')).length).toBe(65536);
  });

  it('content() taken during the iteration but read after it moved on still gives the bytes', async () => {
    const streams = new Map<string, ReadableStream<Uint8Array>>();
    for await (const e of payloadEntries(fixtureSource(gz))) {
      if (e.path.endsWith('data/file07.txt') || e.path.endsWith('zeros.bin')) streams.set(e.path, e.content());
    }
    expect(await new Response(streams.get('usr/share/sluice-gz/data/file07.txt')!).text()).toBe('data file 07\n');
    expect((await new Response(streams.get('usr/share/sluice-gz/zeros.bin')!).arrayBuffer()).byteLength).toBe(65536);
  });

  it('returns the package, with its digests, when done', async () => {
    const it = payloadEntries(fixtureSource(gz));
    let result = await it.next();
    let n = 0;
    while (!result.done) {
      n++;
      result = await it.next();
    }
    expect(n).toBe(52);
    expect(result.value.name).toBe('sluice-gz');
    expect(result.value.digests.sha256).toBe((await readPackage([fixtureBytes(gz)])).digests.sha256);
  });

  it('a compressor without a decompressor is a PermanentError that says what to do', async () => {
    // the xz package with PAYLOADCOMPRESSOR "xz" changed to "lz", which nothing decodes
    const bytes = Buffer.from(fixtureBytes('sluice-xz-0.9-1.noarch.rpm'));
    const { headerAt, payloadAt } = layout(bytes);
    const header = parseHeader(bytes.subarray(headerAt, payloadAt), { offset: headerAt });
    const at = header.dataOffset + header.entry(TAG.PAYLOADCOMPRESSOR)!.offset;
    expect(bytes.toString('latin1', at, at + 3)).toBe('xz\0');
    bytes.write('lz', at, 'latin1');
    const run = async () => {
      for await (const _ of payloadEntries({ absolutePath: '/x/lz.rpm', content: () => new Blob([bytes]).stream() })) void _;
    };
    await expect(run()).rejects.toThrow(PermanentError);
    await expect(run()).rejects.toThrow(/^\/x\/lz\.rpm: no decompressor for "lz" RPM payloads/);
  });

  it('a corrupt gzip payload is a PermanentError naming the package', async () => {
    const bytes = Buffer.from(fixtureBytes(gz));
    const { payloadAt } = layout(bytes);
    for (let i = payloadAt + 20; i < payloadAt + 60; i++) bytes[i] = 0x55;
    const source = { absolutePath: '/x/corrupt.rpm', content: () => new Blob([bytes]).stream() };
    const run = async () => {
      for await (const _ of payloadEntries(source)) void _;
    };
    await expect(run()).rejects.toThrow(PermanentError);
    await expect(run()).rejects.toThrow(/\/x\/corrupt\.rpm/);
  });
});

describe('cpioEntries on bad archives', () => {
  const gz = 'sluice-gz-1.2.3-alt1.x86_64.rpm';
  const member = (name: string, data: string, magic = '070701', nameSize?: number) => {
    const fields = [1, 0o100644, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameSize ?? name.length + 1, 0];
    const head = magic + fields.map((n) => n.toString(16).padStart(8, '0')).join('');
    const pad = (n: number) => '\0'.repeat((4 - (n % 4)) % 4);
    const withName = head + name + '\0';
    return Buffer.from(withName + pad(withName.length) + data + pad(data.length), 'latin1');
  };
  const read = async (bytes: Buffer) => {
    const out: string[] = [];
    for await (const { entry } of cpioEntries([bytes], { source: 'test.cpio' })) out.push(entry.name);
    return out;
  };

  it('reads a good one up to its trailer', async () => {
    expect(await read(Buffer.concat([member('./a', 'xyz'), member('./b', ''), member('TRAILER!!!', '')]))).toEqual(['./a', './b']);
  });

  it.each([
    ['bad magic', Buffer.concat([member('./a', 'x', '070707')]), /bad cpio magic "070707" .* at byte 0/],
    ['stripped cpio', member('./a', 'x', '07070X'), /stripped cpio/],
    ['no trailer', member('./a', 'xyz'), /ends without a TRAILER!!! member/],
    ['truncated data', member('./a', 'xyz').subarray(0, 117), /truncated data of "\.\/a"/],
    ['truncated header', member('./a', 'xyz').subarray(0, 50), /truncated member header at byte 50/],
    ['huge name size', member('./a', 'x', '070701', 0x7fffffff), /name size 2147483647 is out of range/],
    ['name without NUL', member('./a', 'x', '070701', 2), /not NUL-terminated/],
  ])('%s → PermanentError', async (_what, bytes, message) => {
    const err = await read(bytes).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toMatch(/^test\.cpio: /);
  });

  it('a body left half-read when the iteration moves on errors instead of giving wrong bytes', async () => {
    const archive = Buffer.concat([member('./a', 'abcdef'), member('./b', 'xyz'), member('TRAILER!!!', '')]);
    async function* bytewise() {
      for (const byte of archive) yield Buffer.from([byte]);
    }
    const members = cpioEntries(bytewise(), { source: 'test.cpio' });
    const first = (await members.next()).value!;
    const body = first.body[Symbol.asyncIterator]();
    expect((await body.next()).value).toEqual(Buffer.from('a'));
    const second = (await members.next()).value!;
    expect(second.entry.name).toBe('./b');
    await expect(body.next()).rejects.toThrow(/test\.cpio: cpio payload: the data of "\.\/a" was read after the archive moved on at byte 0/);
    await members.return();
  });

  it('a member named with .. is refused by payloadEntries', async () => {
    // rebuild the gz fixture's payload with one member renamed to ../../etc/passwd, same length
    const { gzipSync, gunzipSync } = await import('node:zlib');
    const rpm = fixtureBytes(gz);
    const { payloadAt } = layout(rpm);
    const cpio = gunzipSync(rpm.subarray(payloadAt));
    const from = Buffer.from('./etc/sluice-gz/main.conf');
    const to = Buffer.from('./etc/../../../../passwd.');
    expect(to.length).toBe(from.length);
    const at = cpio.indexOf(from);
    to.copy(cpio, at);
    const forged = Buffer.concat([rpm.subarray(0, payloadAt), gzipSync(cpio)]);
    const run = async () => {
      // the size check would fail at the end too; the path check fires first
      for await (const _ of payloadEntries({ absolutePath: '/x/forged.rpm', content: () => new Blob([forged]).stream() })) void _;
    };
    await expect(run()).rejects.toThrow(/unsafe member name "\.\/etc\/\.\.\/\.\.\/\.\.\/\.\.\/passwd\." at byte \d+ of the decompressed payload/);
  });
});

it('fixtures cover every compressor', () => {
  for (const name of Object.values(BY_COMPRESSOR)) expect(RPMS).toContain(name);
});
