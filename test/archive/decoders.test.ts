/**
 * The decoders against files made by the real tools: tree.tar compressed by gzip, xz
 * (SHA-256 check, x86 BCJ filter, multi-block), zstd and bzip2 must decode to the bytes
 * of tree.tar; concatenated streams decode to both; damaged input is a DecodeError that
 * names what was decoded, never a crash; the output streams in bounded chunks and pulls
 * its input lazily.
 */
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import zstd from 'zstd-napi/binding.js';
import { bunzip2 } from '../../sources/decoders/bzip2.ts';
import { DecodeError } from '../../sources/decoders/decode-error.ts';
import type { Decoder } from '../../sources/decoders/decoder.ts';
import { decompress } from '../../sources/decoders/decompress.ts';
import { detectCompression } from '../../sources/decoders/detect.ts';
import { gunzip } from '../../sources/decoders/gzip.ts';
import { unxz } from '../../sources/decoders/xz.ts';
import { unzstd } from '../../sources/decoders/zstd.ts';
import { fixtureBytes, sha256 } from './golden.ts';

const TREE = fixtureBytes('tree.tar');

/** `bytes` as an async iterable of `size`-byte chunks that counts how many were pulled. */
function chunked(bytes: Uint8Array, size: number): AsyncIterable<Uint8Array> & { pulled: number } {
  const source = {
    pulled: 0,
    async *[Symbol.asyncIterator]() {
      for (let at = 0; at < bytes.length; at += size) {
        source.pulled++;
        yield bytes.subarray(at, at + size);
      }
    },
  };
  return source;
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<{ bytes: Buffer; chunks: number[] }> {
  const parts: Uint8Array[] = [];
  for await (const chunk of stream) parts.push(chunk);
  return { bytes: Buffer.concat(parts), chunks: parts.map((p) => p.length) };
}

async function failure(stream: ReadableStream<Uint8Array>): Promise<{ error: unknown; before: Buffer }> {
  const parts: Uint8Array[] = [];
  try {
    for await (const chunk of stream) parts.push(chunk);
  } catch (error) {
    return { error, before: Buffer.concat(parts) };
  }
  throw new Error('the stream ended without an error');
}

const CASES: Array<{ file: string; format: 'gzip' | 'xz' | 'zstd' | 'bzip2'; decode: Decoder }> = [
  { file: 'tree.tar.gz', format: 'gzip', decode: gunzip },
  { file: 'tree.tar.xz', format: 'xz', decode: unxz },
  { file: 'tree-x86.tar.xz', format: 'xz', decode: unxz },
  { file: 'tree-blocks.tar.xz', format: 'xz', decode: unxz },
  { file: 'tree.tar.zst', format: 'zstd', decode: unzstd },
  { file: 'tree.tar.bz2', format: 'bzip2', decode: bunzip2 },
];

describe('decoders on files made by the real tools', () => {
  for (const { file, format, decode } of CASES) {
    it(`${file} decodes to the bytes of tree.tar`, async () => {
      const input = fixtureBytes(file);
      expect(detectCompression(input.subarray(0, 6))).toBe(format);
      const { bytes } = await collect(decode(chunked(input, 1000), { name: file }));
      expect(bytes.length).toBe(TREE.length);
      expect(sha256(bytes)).toBe(sha256(TREE));
    });

    it(`${file}: two concatenated streams decode to both`, async () => {
      const input = fixtureBytes(file);
      const { bytes } = await collect(decode(chunked(Buffer.concat([input, input]), 777)));
      expect(sha256(bytes)).toBe(sha256(Buffer.concat([TREE, TREE])));
    });

    it(`${file} cut short is a DecodeError saying "truncated", with the offset`, async () => {
      const input = fixtureBytes(file);
      const cut = input.subarray(0, Math.floor(input.length * 0.6));
      const { error } = await failure(decode(chunked(cut, 512), { name: `cut-${file}` }));
      expect(error).toBeInstanceOf(DecodeError);
      const e = error as DecodeError;
      expect(e.kind).toBe('permanent');
      expect(e.format).toBe(format);
      expect(e.message).toContain(`cut-${file}`);
      expect(e.message).toMatch(format === 'gzip' ? /truncated|unexpected end/ : /truncated/);
      expect(e.offset).toBeTypeOf('number');
    });

    it(`${file}: garbage instead of ${format} is a DecodeError, not a crash`, async () => {
      const garbage = Buffer.alloc(4096, 0x41);
      const { error } = await failure(decode(chunked(garbage, 1024), { name: 'garbage.bin' }));
      expect(error).toBeInstanceOf(DecodeError);
      expect((error as DecodeError).message).toContain('garbage.bin');
    });
  }

  it('detectCompression knows uncompressed archives from compressed ones', () => {
    expect(detectCompression(TREE.subarray(0, 6))).toBeUndefined();
    expect(detectCompression(fixtureBytes('tree.zip').subarray(0, 6))).toBeUndefined();
    // a zstd stream that starts with a skippable frame (as pzstd writes) is zstd too
    expect(detectCompression(Buffer.from([0x50, 0x2a, 0x4d, 0x18, 4, 0]))).toBe('zstd');
    expect(detectCompression(Buffer.from('BZh9'))).toBe('bzip2');
    expect(detectCompression(Buffer.from('BZhx'))).toBeUndefined();
    expect(detectCompression(Buffer.from([0x1f]))).toBeUndefined();
  });

  it('decompress() picks the decoder from the bytes and passes other bytes through', async () => {
    const xz = await decompress(chunked(fixtureBytes('tree.tar.xz'), 100), { name: 'x' });
    expect(xz.compression).toBe('xz');
    expect(sha256((await collect(xz.stream)).bytes)).toBe(sha256(TREE));
    const plain = await decompress(chunked(TREE, 300));
    expect(plain.compression).toBeUndefined();
    expect(sha256((await collect(plain.stream)).bytes)).toBe(sha256(TREE));
  });
});

describe('damaged input', () => {
  it('a flipped byte in a block of an xz file: DecodeError naming the file and the offset; what came before is the start of the tar', async () => {
    const { error, before } = await failure(unxz(chunked(fixtureBytes('corrupt.tar.xz'), 4096), { name: 'corrupt.tar.xz' }));
    expect(error).toBeInstanceOf(DecodeError);
    const e = error as DecodeError;
    expect(e.message).toMatch(/^xz: cannot decode corrupt\.tar\.xz: compressed data is corrupt \(at compressed byte \d+\)$/);
    expect(e.offset).toBeGreaterThan(0);
    expect(e.offset).toBeLessThanOrEqual(fixtureBytes('corrupt.tar.xz').length);
    // like xz -dc, what was decoded before the damage was found is passed on: the blocks
    // (8 KiB each, see make.sh) before the damaged one are the tar's; the damaged block's
    // part may be anything (a block's check is verified at its end)
    const goodBlocks = Math.floor((before.length - 1) / 8192) * 8192;
    expect(goodBlocks).toBeGreaterThan(0);
    expect(before.subarray(0, goodBlocks).equals(TREE.subarray(0, goodBlocks))).toBe(true);
  });

  it('a truncated gzip: DecodeError naming the file', async () => {
    const { error, before } = await failure(gunzip(chunked(fixtureBytes('truncated.tar.gz'), 4096), { name: 'truncated.tar.gz' }));
    expect(error).toBeInstanceOf(DecodeError);
    expect((error as DecodeError).message).toMatch(/^gzip: cannot decode truncated\.tar\.gz: the stream ends too early \(truncated\)/);
    expect(TREE.subarray(0, before.length).equals(before)).toBe(true);
  });

  for (const { file, decode, problem } of [
    { file: 'tree.tar.zst', decode: unzstd, problem: /^zstd: cannot decode damaged: (corrupt data|checksum mismatch)/ },
    { file: 'tree.tar.bz2', decode: bunzip2, problem: /^bzip2: cannot decode damaged: corrupt data in the block at this offset: .*\(at compressed byte \d+\)$/ },
    { file: 'tree.tar.gz', decode: gunzip, problem: /^gzip: cannot decode damaged: corrupt data/ },
  ]) {
    it(`${file} with a flipped byte in the middle: a DecodeError with the offset`, async () => {
      const damaged = Buffer.from(fixtureBytes(file));
      damaged[damaged.length >> 1]! ^= 0x55;
      const { error } = await failure(decode(chunked(damaged, 1000), { name: 'damaged' }));
      expect(error).toBeInstanceOf(DecodeError);
      expect((error as DecodeError).message).toMatch(problem);
      expect((error as DecodeError).offset).toBeTypeOf('number');
    });
  }

  it('an input that fails is passed on as it is', async () => {
    const failing: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        yield fixtureBytes('tree.tar.xz').subarray(0, 100);
        throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
      },
    };
    const { error } = await failure(unxz(failing));
    expect((error as { code?: string }).code).toBe('EACCES');
  });
});

describe('streaming: bounded output chunks, input pulled only as needed', () => {
  // 100 MiB of zeros in a tar, xz -9: 15 KB that expand 7000 times
  it('xz bomb: every chunk ≤ 256 KiB, and the first chunk needs only the first input chunks', async () => {
    const input = chunked(fixtureBytes('bomb.tar.xz'), 512);
    const reader = unxz(input).getReader();
    const first = await reader.read();
    expect(first.value!.length).toBeLessThanOrEqual(256 * 1024);
    expect(input.pulled).toBeLessThan(5);
    let total = first.value!.length;
    let largest = 0;
    for (let i = 0; i < 40; i++) {
      const { value } = await reader.read();
      largest = Math.max(largest, value!.length);
      total += value!.length;
    }
    expect(largest).toBeLessThanOrEqual(256 * 1024);
    expect(input.pulled).toBeLessThan(10); // 10 MB out of 5 KB in
    expect(total).toBeGreaterThan(5 * 2 ** 20);
    await reader.cancel();
  });

  it('gzip bomb (8 MiB of zeros): chunks ≤ 128 KiB, input pulled lazily', async () => {
    const input = chunked(zlib.gzipSync(Buffer.alloc(8 * 2 ** 20), { level: 9 }), 256);
    const reader = gunzip(input).getReader();
    const { value } = await reader.read();
    expect(value!.length).toBeLessThanOrEqual(128 * 1024);
    const totalChunks = Math.ceil(zlib.gzipSync(Buffer.alloc(8 * 2 ** 20), { level: 9 }).length / 256);
    expect(input.pulled).toBeLessThan(totalChunks);
    await reader.cancel();
  });

  it('zstd bomb (64 MiB of zeros): chunks ≤ 256 KiB, input pulled lazily', async () => {
    const zeros = Buffer.alloc(64 * 2 ** 20);
    const packed = Buffer.alloc(zstd.compressBound(zeros.length));
    const n = zstd.compress(packed, zeros, 19);
    const input = chunked(packed.subarray(0, n), 16);
    const reader = unzstd(input).getReader();
    let largest = 0;
    for (let i = 0; i < 8; i++) largest = Math.max(largest, (await reader.read()).value!.length);
    expect(largest).toBeLessThanOrEqual(256 * 1024);
    expect(input.pulled).toBeLessThan(Math.ceil(n / 16));
    await reader.cancel();
  });

  it('cancelling the output cancels the input', async () => {
    let returned = false;
    const input: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]() {
        const it = chunked(fixtureBytes('bomb.tar.xz'), 512)[Symbol.asyncIterator]();
        return {
          next: () => it.next(),
          return: async () => {
            returned = true;
            return { done: true, value: undefined };
          },
        };
      },
    };
    const reader = unxz(input).getReader();
    await reader.read();
    await reader.cancel();
    expect(returned).toBe(true);
  });
});
