/**
 * Hostile and broken input: every case must end in a `PermanentError` that names the
 * input and the byte offset — never a crash (TypeError, RangeError), a hang, or an
 * allocation sized by a length field instead of by the input.
 */
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { MAX_DATA_SIZE, parseHeader, readHeaders, TAG, TYPE } from '../../sources/rpm/header.ts';
import { PackageHeader, readPackage, type RpmPackage } from '../../sources/rpm/package.ts';
import { buildHeader, fixtureBytes, layout, rawHeader } from './support.ts';

const NAME = 'sluice-latin1-1.0-alt0.1.noarch.rpm';
const original = fixtureBytes(NAME);
const { sigAt, headerAt, payloadAt } = layout(original);

/** Read a package from bytes and touch every accessor, so lazy decoding is exercised too. */
async function readAll(bytes: Buffer, source = 'bad.rpm'): Promise<RpmPackage> {
  const pkg = await readPackage([bytes], { source });
  void [pkg.files, pkg.requires, pkg.provides, pkg.conflicts, pkg.obsoletes, pkg.recommends, pkg.changelog, pkg.summary, pkg.sigmd5];
  return pkg;
}

async function failure(promise: Promise<unknown>): Promise<PermanentError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a PermanentError').toBeInstanceOf(PermanentError);
  return err as PermanentError;
}

function edit(fn: (b: Buffer) => void): Buffer {
  const copy = Buffer.from(original);
  fn(copy);
  return copy;
}

/** The offset the message names. */
function offsetIn(err: Error): number {
  const m = /at byte (\d+)/.exec(err.message);
  expect(m, err.message).not.toBeNull();
  return Number(m![1]);
}

describe('truncated packages', () => {
  it('cut anywhere (every byte near the boundaries, every 5th in the headers, every 37th in the payload) → PermanentError at or before the cut', async () => {
    const cuts = new Set<number>();
    for (const boundary of [0, sigAt, headerAt, payloadAt]) for (let n = Math.max(0, boundary - 24); n < boundary + 40; n++) cuts.add(n);
    for (let n = 0; n < payloadAt; n += 5) cuts.add(n);
    for (let n = payloadAt; n < original.length; n += 37) cuts.add(n);
    cuts.add(original.length - 1);
    for (const n of cuts) {
      const err = await failure(readAll(original.subarray(0, n)));
      expect(err.message.startsWith('bad.rpm: '), err.message).toBe(true);
      expect(offsetIn(err), err.message).toBeLessThanOrEqual(Math.max(n, 0));
      expect(err.item).toBe('bad.rpm');
    }
  });

  it('the message says what was cut', async () => {
    expect((await failure(readAll(original.subarray(0, 50)))).message).toBe(
      'bad.rpm: truncated RPM: the input ends inside the 96-byte lead at byte 50',
    );
    expect((await failure(readAll(original.subarray(0, headerAt + 100)))).message).toMatch(
      new RegExp(`^bad\\.rpm: truncated RPM: the main header declares \\d+ bytes, the input ends after 100 at byte ${headerAt + 100}$`),
    );
    expect((await failure(readAll(original.subarray(0, original.length - 10)))).message).toMatch(
      /truncated RPM: the signature says header \+ payload are \d+ bytes, the input ends after \d+/,
    );
  });

  it('trailing data after the payload is refused too', async () => {
    const err = await failure(readAll(Buffer.concat([original, Buffer.from('garbage')])));
    expect(err.message).toMatch(/7 bytes of trailing data/);
  });
});

describe('wrong magic', () => {
  it('lead', async () => {
    const err = await failure(readAll(edit((b) => b.writeUInt32BE(0x7f454c46, 0))));
    expect(err.message).toBe('bad.rpm: not an RPM package: lead magic is 7f454c46, expected edabeedb at byte 0');
  });
  it('empty input', async () => {
    expect((await failure(readAll(Buffer.alloc(0)))).message).toMatch(/lead magic is missing \(empty input\)/);
  });
  it('signature header', async () => {
    const err = await failure(readAll(edit((b) => (b[sigAt + 1] = 0))));
    expect(err.message).toBe(`bad.rpm: signature header: bad RPM header magic 8e00e801 (expected 8eade801) at byte ${sigAt}`);
  });
  it('main header', async () => {
    const err = await failure(readAll(edit((b) => (b[headerAt] = 0))));
    expect(err.message).toMatch(new RegExp(`^bad\\.rpm: main header: bad RPM header magic 00ade801 .* at byte ${headerAt}$`));
  });
  it('a signature type other than 5', async () => {
    expect((await failure(readAll(edit((b) => b.writeUInt16BE(1, 78))))).message).toMatch(/signature type 1 is not supported.* at byte 78/);
  });
});

describe('lengths and offsets', () => {
  it('an index count of 2^31 → PermanentError at the count, nothing allocated for it', async () => {
    const before = process.memoryUsage().rss;
    const err = await failure(readAll(edit((b) => b.writeUInt32BE(2 ** 31, headerAt + 8))));
    expect(err.message).toBe(`bad.rpm: main header: RPM header index count 2147483648 exceeds the limit of 65535 at byte ${headerAt + 8}`);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('a data size of 4 GiB − 1 → PermanentError at the size', async () => {
    const err = await failure(readAll(edit((b) => b.writeUInt32BE(0xffffffff, sigAt + 12))));
    expect(err.message).toBe(`bad.rpm: signature header: RPM header data size 4294967295 exceeds the limit of ${MAX_DATA_SIZE} bytes at byte ${sigAt + 12}`);
  });

  it('a data size just under the limit on a short input → truncated, memory stays bounded by the input', async () => {
    const before = process.memoryUsage().rss;
    const err = await failure(readAll(edit((b) => b.writeUInt32BE(MAX_DATA_SIZE, headerAt + 12))));
    expect(err.message).toMatch(/truncated RPM: the main header declares 268\d+ bytes, the input ends after/);
    expect(offsetIn(err)).toBe(original.length);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('the same through the bare-header stream reader and parseHeader', async () => {
    const bare = rawHeader([], Buffer.alloc(0), { dl: MAX_DATA_SIZE });
    const read = async () => {
      for await (const _ of readHeaders([bare, Buffer.alloc(1000)], { source: 'pkglist.classic' })) void _;
    };
    expect((await failure(read())).message).toMatch(/^pkglist\.classic: truncated RPM header: 268435471 bytes declared, input ends after 1016 at byte 1016$/);
    expect(() => parseHeader(bare, { source: 'h' })).toThrow(/h: truncated RPM header: it declares 0 entries and 268435455 data bytes .* at byte 16/);
  });

  it('an entry whose offset is past the data → PermanentError at that entry', async () => {
    const entry = headerAt + 16 + 16 * 3;
    const dl = original.readUInt32BE(headerAt + 12);
    const err = await failure(readAll(edit((b) => b.writeUInt32BE(dl + 1, entry + 8))));
    expect(err.message).toMatch(new RegExp(`points to data offset ${dl + 1}, past the end of the ${dl} data bytes at byte ${entry + 8}$`));
  });

  it('an int32 array whose count runs past the data → PermanentError at the count', () => {
    const h = rawHeader([{ tag: TAG.FILEMTIMES, type: TYPE.INT32, offset: 4, count: 0x40000000 }], Buffer.alloc(64));
    expect(() => parseHeader(h, { source: 'h', offset: 1000 })).toThrow(
      'h: entry 0 (tag 1034, int32) count 1073741824 needs 4294967296 bytes at data offset 4, past the end of the 64 data bytes at byte 1028',
    );
  });

  it('a string array with more strings than bytes → PermanentError without scanning', () => {
    const h = rawHeader([{ tag: TAG.BASENAMES, type: TYPE.STRING_ARRAY, offset: 0, count: 0xffffffff }], Buffer.alloc(16));
    expect(() => parseHeader(h, { source: 'h' })).toThrow(/claims 4294967295 strings but only 16 data bytes follow its offset 0 at byte 28/);
  });

  it('an unknown type and a string with count ≠ 1 → PermanentError at the entry', () => {
    expect(() => parseHeader(rawHeader([{ tag: 1000, type: 10, offset: 0, count: 1 }], Buffer.from('a\0')), { source: 'h' })).toThrow(
      /entry 0 \(tag 1000\) has unknown type 10 at byte 20/,
    );
    expect(() => parseHeader(rawHeader([{ tag: 1000, type: TYPE.STRING, offset: 0, count: 2 }], Buffer.from('a\0b\0')), { source: 'h' })).toThrow(
      /a string has count 1 at byte 28/,
    );
  });
});

describe('strings', () => {
  it('a string without its NUL → PermanentError at the string', () => {
    const good = buildHeader([
      [TAG.NAME, { type: 6, value: 'name' }],
      [TAG.SUMMARY, { type: 6, value: 'no terminator' }],
    ]);
    expect(parseHeader(good).string(TAG.SUMMARY)).toBe('no terminator');
    const bad = Buffer.from(good);
    bad[bad.length - 1] = 0x21; // the summary's NUL
    expect(() => parseHeader(bad, { source: 'h.hdr', offset: 500 })).toThrow(
      `h.hdr: entry 1 (tag 1004, string) string 0 has no NUL terminator before the end of the header data at byte ${500 + 16 + 32 + 5}`,
    );
  });

  it('overlapping string entries cannot make validation quadratic', () => {
    // 65535 entries all pointing at one 1 MiB string: 64 GiB to scan if nothing stopped it
    const data = Buffer.alloc(1 << 20, 0x61);
    data[data.length - 1] = 0;
    const entries = Array.from({ length: 0xffff }, () => ({ tag: TAG.DESCRIPTION, type: TYPE.STRING, offset: 0, count: 1 }));
    expect(() => parseHeader(rawHeader(entries, data), { source: 'h' })).toThrow(/overlapping string entries/);
  });
});

describe('inconsistent file lists', () => {
  const base: Array<[number, Parameters<typeof buildHeader>[0][number][1]]> = [
    [TAG.NAME, { type: 6, value: 'p' }],
    [TAG.VERSION, { type: 6, value: '1' }],
    [TAG.RELEASE, { type: 6, value: '1' }],
    [TAG.DIRINDEXES, { type: 4, value: [0, 1] }],
    [TAG.BASENAMES, { type: 8, value: ['a', 'b'] }],
    [TAG.DIRNAMES, { type: 8, value: ['/usr/'] }],
  ];

  it('a DIRINDEXES value past DIRNAMES → PermanentError at that value', () => {
    const header = parseHeader(buildHeader(base), { source: 'pkglist', offset: 0 });
    const pkg = new PackageHeader(header);
    expect(() => pkg.files).toThrow(PermanentError);
    expect(() => pkg.filePaths).toThrow(/pkglist: file 1: DIRINDEXES value 1 is past the 1 DIRNAMES at byte \d+/);
  });

  it('parallel arrays of different lengths → PermanentError at the tag', () => {
    const header = parseHeader(
      buildHeader([...base.slice(0, 3), [TAG.DIRINDEXES, { type: 4, value: [0, 0] }], base[4]!, base[5]!, [TAG.FILESIZES, { type: 4, value: [1] }]]),
      { source: 'pkglist' },
    );
    expect(() => new PackageHeader(header).files).toThrow(/tag 1028 has 1 values but tag 1117 has 2 \(the arrays must be parallel\) at byte 112$/);
  });

  it('no NAME → PermanentError', () => {
    expect(() => new PackageHeader(parseHeader(buildHeader(base.slice(1)), { source: 'x' }))).toThrow(/x: RPM header has no NAME tag/);
  });

  it('LONGFILESIZES (int64) wins over FILESIZES', () => {
    const sizes = Buffer.alloc(16);
    sizes.writeBigUInt64BE(5n * 1024n ** 3n, 0);
    sizes.writeBigUInt64BE(7n, 8);
    const data = buildHeader([...base.slice(0, 3), [TAG.DIRINDEXES, { type: 4, value: [0, 0] }], base[4]!, base[5]!]);
    // append an int64 entry by hand (the builder has no int64)
    const il = data.readUInt32BE(8);
    const dl = data.readUInt32BE(12);
    const pad = (8 - (dl % 8)) % 8;
    const index = Buffer.alloc(16);
    index.writeUInt32BE(TAG.LONGFILESIZES, 0);
    index.writeUInt32BE(TYPE.INT64, 4);
    index.writeUInt32BE(dl + pad, 8);
    index.writeUInt32BE(2, 12);
    const head = Buffer.from(data.subarray(0, 16));
    head.writeUInt32BE(il + 1, 8);
    head.writeUInt32BE(dl + pad + 16, 12);
    const bytes = Buffer.concat([head, data.subarray(16, 16 + 16 * il), index, data.subarray(16 + 16 * il), Buffer.alloc(pad), sizes]);
    const pkg = new PackageHeader(parseHeader(bytes));
    expect(pkg.files.map((f) => [f.path, f.size])).toEqual([
      ['/usr/a', 5 * 1024 ** 3],
      ['/usr/b', 7],
    ]);
  });
});

describe('fuzzing', () => {
  it('1,000 packages with random bytes changed in the lead and headers: each reads or fails with a PermanentError', async () => {
    let seed = 12345;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    let failed = 0;
    for (let i = 0; i < 1000; i++) {
      const bytes = Buffer.from(original);
      const changes = 1 + Math.floor(random() * 4);
      for (let k = 0; k < changes; k++) {
        const at = Math.floor(random() * payloadAt);
        bytes[at] = random() < 0.5 ? Math.floor(random() * 256) : [0, 0xff, 0x7f, 0x80][Math.floor(random() * 4)]!;
      }
      try {
        await readAll(bytes);
      } catch (err) {
        if (!(err instanceof PermanentError)) throw new Error(`iteration ${i}: ${String(err)}`, { cause: err });
        failed++;
      }
    }
    expect(failed).toBeGreaterThan(100);
  });
});
