/**
 * Shared by the RPM tests: where the fixtures are (made by fixtures/rpm/make.sh with
 * rpmbuild), how to read their golden outputs, and a small builder of RPM headers and
 * packages for the bad-input tests.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Decompressor } from '../../sources/rpm/payload.ts';

export const FIXTURES = fileURLToPath(new URL('../../fixtures/rpm/', import.meta.url));
export const GOLDEN = path.join(FIXTURES, 'golden');

/** Every fixture package, sorted. */
export const RPMS = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.rpm')).sort();

export function fixturePath(name: string): string {
  return path.join(FIXTURES, name);
}

export function fixtureBytes(name: string): Buffer {
  return fs.readFileSync(fixturePath(name));
}

/** A fixture as a Node stream in small chunks, so chunk boundaries fall everywhere. */
export function fixtureStream(name: string, highWaterMark = 4096): fs.ReadStream {
  return fs.createReadStream(fixturePath(name), { highWaterMark });
}

/** A fixture as a `FileEntry`-like package source. */
export function fixtureSource(name: string): { absolutePath: string; content: () => ReadableStream<Uint8Array> } {
  const absolutePath = fixturePath(name);
  return { absolutePath, content: () => Readable.toWeb(fs.createReadStream(absolutePath, { highWaterMark: 4096 })) as ReadableStream<Uint8Array> };
}

export function golden(name: string, kind: string): Buffer {
  return fs.readFileSync(path.join(GOLDEN, `${name}.${kind}.txt`));
}

/**
 * Text as rpm printed it, decoded independently of the code under test: strict UTF-8
 * when it is valid, latin-1 otherwise.
 */
export function text(bytes: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}

/** The `@@TAG@@`-separated sections of a `.qf.txt` golden file, each as raw bytes without its final newline. */
export function qfSections(name: string): Map<string, Buffer> {
  const raw = golden(name, 'qf');
  const out = new Map<string, Buffer>();
  const marker = /@@([A-Z0-9]+)@@\n/g;
  const latin = raw.toString('latin1'); // byte offsets = string offsets
  const found: Array<{ tag: string; start: number; end: number }> = [];
  for (let m; (m = marker.exec(latin)); ) found.push({ tag: m[1]!, start: m.index, end: m.index + m[0].length });
  for (let i = 0; i < found.length - 1; i++) {
    let value = raw.subarray(found[i]!.end, found[i + 1]!.start);
    // scalar sections end with the newline the query format added; array sections end with their last row's newline
    if (value.length && value[value.length - 1] === 0x0a) value = value.subarray(0, value.length - 1);
    out.set(found[i]!.tag, value);
  }
  return out;
}

/** Rows of an array section: tab-separated fields, decoded. */
export function qfRows(sections: Map<string, Buffer>, tag: string): string[][] {
  const value = sections.get(tag);
  if (!value || value.length === 0) return [];
  return text(value)
    .split('\n')
    .map((line) => line.split('\t'));
}

/** `{file → hex}` from a `md5sum`-style file. */
export function sums(file: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of fs.readFileSync(path.join(GOLDEN, file), 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)\s+\*?(.+)$/.exec(line);
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}

/** `ls -l`-style permission string of a mode, as `rpm -qlv` prints it. */
export function modeString(mode: number): string {
  const type = { 0o040000: 'd', 0o120000: 'l', 0o100000: '-', 0o020000: 'c', 0o060000: 'b', 0o010000: 'p', 0o140000: 's' }[mode & 0o170000] ?? '?';
  const rwx = (bits: number, special: boolean, ch: string) =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-');
  return (
    type +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') +
    rwx(mode & 7, (mode & 0o1000) !== 0, 't')
  );
}

/** One line of `rpm -qplv`. */
export interface LsLine {
  perms: string;
  nlink: number;
  user: string;
  group: string;
  size: number;
  path: string;
  target?: string;
}

export function parseQplv(name: string): LsLine[] {
  return text(golden(name, 'qplv'))
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const m = /^(\S{10})\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+\w{3}\s+\d+\s+[\d:]+\s(\/.*?)(?: -> (.*))?$/.exec(line);
      if (!m) throw new Error(`unparsed -qplv line: ${line}`);
      return { perms: m[1]!, nlink: Number(m[2]), user: m[3]!, group: m[4]!, size: Number(m[5]), path: m[6]!, ...(m[7] !== undefined ? { target: m[7] } : {}) };
    });
}

/**
 * A decompressor that runs a system tool (`xz -dc`, `zstd -dc`, `bzip2 -dc`): a
 * stand-in passed through `options.decompressors` in the payload tests.
 */
export function toolDecompressor(command: string, args: string[]): Decompressor {
  return async function* (compressed) {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve(code ?? -1));
    });
    const feeding = (async () => {
      try {
        for await (const chunk of compressed) {
          if (!child.stdin.write(chunk)) await new Promise((r) => child.stdin.once('drain', r));
        }
      } finally {
        child.stdin.end();
      }
    })();
    feeding.catch(() => child.kill());
    for await (const chunk of child.stdout) yield chunk as Buffer;
    await feeding;
    const code = await exited;
    if (code !== 0) throw new Error(`${command} exited with ${code}: ${stderr.trim()}`);
  };
}

/** Tool decoders for the compressors other than gzip. */
export const TOOL_DECOMPRESSORS = {
  xz: toolDecompressor('xz', ['-dc']),
  zstd: toolDecompressor('zstd', ['-dcq']),
  bzip2: toolDecompressor('bzip2', ['-dc']),
};

// ---- building headers for the bad-input tests ----

export interface RawEntry {
  tag: number;
  type: number;
  offset: number;
  count: number;
}

/** A header from explicit index entries and data: anything goes, including nonsense. */
export function rawHeader(entries: RawEntry[], data: Buffer, over: { magic?: number; il?: number; dl?: number } = {}): Buffer {
  const head = Buffer.alloc(16 + 16 * entries.length);
  head.writeUInt32BE(over.magic ?? 0x8eade801, 0);
  head.writeUInt32BE(over.il ?? entries.length, 8);
  head.writeUInt32BE(over.dl ?? data.length, 12);
  entries.forEach((e, i) => {
    head.writeUInt32BE(e.tag, 16 + 16 * i);
    head.writeUInt32BE(e.type, 20 + 16 * i);
    head.writeUInt32BE(e.offset, 24 + 16 * i);
    head.writeUInt32BE(e.count, 28 + 16 * i);
  });
  return Buffer.concat([head, data]);
}

export type Value = { type: 6 | 8 | 9; value: string | string[] } | { type: 4; value: number[] } | { type: 3; value: number[] } | { type: 7; value: Buffer };

/** A well-formed header from typed values (strings UTF-8, unless given as latin-1 Buffers via `bin`). */
export function buildHeader(values: Array<[tag: number, value: Value]>): Buffer {
  const parts: Buffer[] = [];
  const entries: RawEntry[] = [];
  let size = 0;
  for (const [tag, v] of values) {
    let bytes: Buffer;
    let count: number;
    const align = v.type === 4 ? 4 : v.type === 3 ? 2 : 1;
    const pad = (align - (size % align)) % align;
    if (pad) {
      parts.push(Buffer.alloc(pad));
      size += pad;
    }
    if (v.type === 6 || v.type === 8 || v.type === 9) {
      const list = Array.isArray(v.value) ? v.value : [v.value];
      bytes = Buffer.concat(list.map((s) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)])));
      count = list.length;
    } else if (v.type === 4) {
      bytes = Buffer.alloc(4 * v.value.length);
      v.value.forEach((n, i) => bytes.writeUInt32BE(n, 4 * i));
      count = v.value.length;
    } else if (v.type === 3) {
      bytes = Buffer.alloc(2 * v.value.length);
      v.value.forEach((n, i) => bytes.writeUInt16BE(n, 2 * i));
      count = v.value.length;
    } else {
      bytes = v.value as Buffer;
      count = bytes.length;
    }
    entries.push({ tag, type: v.type, offset: size, count });
    parts.push(bytes);
    size += bytes.length;
  }
  return rawHeader(entries, Buffer.concat(parts));
}

/** Where the signature header and the main header of a package start. */
export function layout(rpm: Buffer): { sigAt: number; headerAt: number; payloadAt: number } {
  const sigAt = 96;
  const sigIl = rpm.readUInt32BE(sigAt + 8);
  const sigDl = rpm.readUInt32BE(sigAt + 12);
  const headerAt = sigAt + 16 + 16 * sigIl + sigDl + ((8 - (sigDl % 8)) % 8);
  const il = rpm.readUInt32BE(headerAt + 8);
  const dl = rpm.readUInt32BE(headerAt + 12);
  return { sigAt, headerAt, payloadAt: headerAt + 16 + 16 * il + dl };
}
