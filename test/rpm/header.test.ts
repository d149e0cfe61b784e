/**
 * The header structure on its own: every value type, the text-encoding rule, and the
 * bare-header stream reader on a pkglist-like stream (the main headers of the fixture
 * packages, concatenated as ALT's pkglist.*.xz holds them once decompressed).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { decodeRpmText, parseHeader, readHeaders, TAG, TYPE } from '../../sources/rpm/header.ts';
import { PackageHeader, pkgHash, readPackage } from '../../sources/rpm/package.ts';
import { fixtureBytes, layout, qfSections, rawHeader, RPMS, text } from './support.ts';

describe('value types', () => {
  // one entry of each type, laid out by hand
  const data = Buffer.alloc(64);
  let p = 0;
  const put = (b: Buffer) => {
    b.copy(data, p);
    const at = p;
    p += b.length;
    return at;
  };
  const at = {
    char: put(Buffer.from([0x41, 0x42])),
    int8: put(Buffer.from([0xff])),
    int16: (p = 4, put(Buffer.from([0xff, 0xfe, 0x00, 0x01]))),
    int32: put(Buffer.from([0xff, 0xff, 0xff, 0xff])),
    int64: put(Buffer.from([0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02])),
    string: put(Buffer.from('str\0')),
    bin: put(Buffer.from([1, 2, 3])),
    array: put(Buffer.from('a\0\0c\0')),
    i18n: put(Buffer.from('C text\0ru текст\0')),
  };
  const header = parseHeader(
    rawHeader(
      [
        { tag: 1, type: TYPE.NULL, offset: 0, count: 0 },
        { tag: 2, type: TYPE.CHAR, offset: at.char, count: 2 },
        { tag: 3, type: TYPE.INT8, offset: at.int8, count: 1 },
        { tag: 4, type: TYPE.INT16, offset: at.int16, count: 2 },
        { tag: 5, type: TYPE.INT32, offset: at.int32, count: 1 },
        { tag: 6, type: TYPE.INT64, offset: at.int64, count: 1 },
        { tag: 7, type: TYPE.STRING, offset: at.string, count: 1 },
        { tag: 8, type: TYPE.BIN, offset: at.bin, count: 3 },
        { tag: 9, type: TYPE.STRING_ARRAY, offset: at.array, count: 3 },
        { tag: 10, type: TYPE.I18NSTRING, offset: at.i18n, count: 2 },
      ],
      data.subarray(0, p),
    ),
  );

  it('decodes each of the ten types', () => {
    expect(header.get(1)).toBeNull();
    expect(header.get(2)).toEqual([0x41, 0x42]);
    expect(header.get(3)).toEqual([255]);
    expect(header.get(4)).toEqual([0xfffe, 1]);
    expect(header.get(5)).toEqual([0xffffffff]); // unsigned, as rpm treats int32
    expect(header.get(6)).toEqual([(1n << 32n) | 2n]);
    expect(header.get(7)).toBe('str');
    expect(header.get(8)).toEqual(Buffer.from([1, 2, 3]));
    expect(header.get(9)).toEqual(['a', '', 'c']);
    expect(header.get(10)).toEqual(['C text', 'ru текст']);
    expect(header.string(10)).toBe('C text');
    expect(header.get(99)).toBeUndefined();
    expect(header.tags()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(header.type(9)).toBe(TYPE.STRING_ARRAY);
  });

  it('typed accessors answer empty for a tag of another type', () => {
    expect(header.strings(5)).toEqual([]);
    expect(header.numbers(7)).toEqual([]);
    expect(header.bin(7)).toBeUndefined();
    expect(header.number(6)).toBe(2 ** 32 + 2);
    expect(header.bigints(5)).toEqual([0xffffffffn]);
  });
});

describe('decodeRpmText', () => {
  const b = (...bytes: number[]) => Buffer.from(bytes);
  it.each([
    ['ASCII', Buffer.from('plain'), 'plain'],
    ['UTF-8', Buffer.from('Größe — текст 🚀'), 'Größe — текст 🚀'],
    ['latin-1 (é alone is not UTF-8)', b(0x63, 0x61, 0x66, 0xe9), 'café'],
    ['latin-1 «»', b(0xab, 0x78, 0xbb), '«x»'],
    ['a truncated UTF-8 sequence', b(0x61, 0xd0), 'aÐ'],
    ['an overlong encoding (invalid UTF-8)', b(0xc0, 0xaf), 'À¯'],
    ['a UTF-16 surrogate in UTF-8 (invalid)', b(0xed, 0xa0, 0x80), 'í\u00a0\u0080'],
    ['KOI8-R bytes (not UTF-8) come out as latin-1, recoverable', b(0xf4, 0xc5, 0xd3, 0xd4), 'ôÅÓÔ'],
  ])('%s', (_what, bytes, expected) => {
    const decoded = decodeRpmText(bytes);
    expect(decoded).toBe(expected);
    // nothing is lost: the bytes come back with the encoding that was chosen
    const back = Buffer.from(decoded, bytes.equals(Buffer.from(decoded, 'utf8')) ? 'utf8' : 'latin1');
    expect(back.equals(bytes)).toBe(true);
  });
});

describe('readHeaders (bare headers, as in pkglist.*.xz)', () => {
  const headers = RPMS.map((name) => {
    const bytes = fixtureBytes(name);
    const { headerAt, payloadAt } = layout(bytes);
    return { name, bytes: bytes.subarray(headerAt, payloadAt) };
  });
  const stream = Buffer.concat(headers.map((h) => h.bytes));

  async function* chunks(size: number) {
    for (let i = 0; i < stream.length; i += size) yield stream.subarray(i, i + size);
  }

  it.each([1, 7, 4096, stream.length])('yields every header, in order, from %i-byte chunks', async (size) => {
    const seen: string[] = [];
    let offset = 0;
    for await (const header of readHeaders(chunks(size), { source: 'pkglist.test' })) {
      const expected = headers[seen.length]!;
      expect(header.bytes.equals(expected.bytes)).toBe(true);
      expect(header.offset).toBe(offset);
      offset += header.byteLength;
      seen.push(new PackageHeader(header).name);
    }
    expect(seen).toEqual(headers.map((h) => text(qfSections(h.name).get('NAME')!)));
  });

  it('each header hashes to its SHA1HEADER, and a bare header gives the same metadata as the package', async () => {
    let i = 0;
    for await (const header of readHeaders([stream])) {
      const name = headers[i++]!.name;
      const qf = qfSections(name);
      expect(createHash('sha1').update(header.bytes).digest('hex')).toBe(text(qf.get('SHA1HEADER')!));
      const bare = new PackageHeader(header);
      const full = await readPackage([fixtureBytes(name)]);
      expect(bare.files).toEqual(full.files);
      expect(bare.requires).toEqual(full.requires);
      expect(bare.changelog).toEqual(full.changelog);
      // rpm does not put the signature tags into the main header of a package file
      expect(bare.sha1header).toBeUndefined();
      expect(pkgHash(bare)).not.toBe(pkgHash(full));
    }
    expect(i).toBe(headers.length);
  });

  it('a header cut short → PermanentError with the offset where the input ended', async () => {
    const cut = headers[0]!.bytes.length + 100;
    const read = async () => {
      for await (const _ of readHeaders([stream.subarray(0, cut)], { source: 'pkglist.classic' })) void _;
    };
    const err = await read().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(new RegExp(`^pkglist\\.classic: truncated RPM header: \\d+ bytes declared, input ends after 100 at byte ${cut}$`));
  });

  it('garbage between headers → bad magic at its offset', async () => {
    const at = headers[0]!.bytes.length;
    const read = async () => {
      const out = [];
      for await (const h of readHeaders([stream.subarray(0, at), Buffer.from('not a header at all')], { source: 'pkglist.classic' })) out.push(h);
      return out;
    };
    await expect(read()).rejects.toThrow(`pkglist.classic: bad RPM header magic 6e6f7420 (expected 8eade801) at byte ${at}`);
  });

  it('an empty stream yields nothing', async () => {
    const out = [];
    for await (const h of readHeaders([])) out.push(h);
    expect(out).toEqual([]);
  });

  it('pkglist headers carry their APT tags through untouched', () => {
    const apt = rawHeader(
      [
        { tag: TAG.NAME, type: TYPE.STRING, offset: 0, count: 1 },
        { tag: TAG.APT_FILENAME, type: TYPE.STRING, offset: 2, count: 1 },
      ],
      Buffer.from('p\0p-1-1.noarch.rpm\0'),
    );
    expect(parseHeader(apt).string(TAG.APT_FILENAME)).toBe('p-1-1.noarch.rpm');
  });
});
