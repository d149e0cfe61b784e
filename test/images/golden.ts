/**
 * The image fixtures (fixtures/images, made by make.sh) and the golden outputs the
 * reference tools wrote when they were made: `unsquashfs -lln`, `7zz l -slt`,
 * `isoinfo -d/-l/-R/-J`, `debugfs ls -p`, `sfdisk -d`, `qemu-img` raw sha256, `rpm -qa`,
 * and the sha256 of every file the real tools extracted.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BufferDevice, FileDevice, type BlockDevice } from '../../sources/images/block-device.ts';
import { imageEntries, type ImageEntriesOptions } from '../../sources/images/image-entries.ts';
import type { ImageEntry, LayerInfo } from '../../sources/images/image-entry.ts';
import { testRunContext } from '../support/run-context.ts';

export const FIXTURES = fileURLToPath(new URL('../../fixtures/images/', import.meta.url));
export const GOLDEN = path.join(FIXTURES, 'golden');

export function fixture(name: string): string {
  return path.join(FIXTURES, name);
}

export function golden(name: string): string {
  return readFileSync(path.join(GOLDEN, name), 'utf8');
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function readStream(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream as unknown as AsyncIterable<Uint8Array>) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** "sha256  ./path" lines → path → sha256 */
export function goldenSums(name: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of golden(name).split('\n')) {
    const m = /^([0-9a-f]{64})  \.\/(.*)$/.exec(line);
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}

export interface Listed {
  readonly entries: ImageEntry[];
  readonly byPath: Map<string, ImageEntry>;
  /** sha256 of every readable file, by path */
  readonly sums: Map<string, string>;
  readonly layers: LayerInfo[];
}

export const fixtureContext = () => testRunContext({ dir: FIXTURES });

/** Every entry of a fixture (or of `device`), with the sha256 of every file read while its layer is open. */
export async function listImage(file: string, options: ImageEntriesOptions & { device?: BlockDevice } = {}): Promise<Listed> {
  const ctx = fixtureContext();
  const device = options.device ?? (await FileDevice.open(ctx, fixture(file), file));
  const layers: LayerInfo[] = [];
  const entries: ImageEntry[] = [];
  const sums = new Map<string, string>();
  for await (const e of imageEntries(ctx, device, { name: file, path: options.device ? undefined : fixture(file), ...options, onLayer: (l) => layers.push(l) })) {
    entries.push(e);
    if (e.type === 'file' && !e.error) sums.set(e.path, sha256(await readStream(e.content())));
  }
  return { entries, byPath: new Map(entries.map((e) => [e.path, e])), sums, layers };
}

/** The bytes of one file of an image (read while its layer is open). */
export async function fileOf(file: string, entryPath: string): Promise<Buffer> {
  const ctx = fixtureContext();
  for await (const e of imageEntries(ctx, await FileDevice.open(ctx, fixture(file), file), { name: file, path: fixture(file) })) {
    if (e.path === entryPath) return await readStream(e.content());
  }
  throw new Error(`${file} has no ${entryPath}`);
}

/** The bytes of a fixture as a device in memory (for mutations). */
export function memoryDevice(file: string, bytes = readFileSync(fixture(file))): BufferDevice {
  return new BufferDevice(file, bytes);
}

/** One line of `unsquashfs -lln`. */
export interface SquashLine {
  readonly type: string;
  readonly perms: string;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: string;
  readonly path: string;
  readonly target?: string;
}

export function unsquashfsListing(name: string): SquashLine[] {
  const out: SquashLine[] = [];
  for (const line of golden(name).split('\n')) {
    const m = /^(\S)(\S{9}) (\d+)\/(\d+)\s+(\S+) (\d{4}-\d\d-\d\d \d\d:\d\d) squashfs-root\/?(.*)$/.exec(line);
    if (!m || m[7] === '') continue;
    let p = m[7]!;
    let target: string | undefined;
    if (m[1] === 'l') [p, target] = p.split(' -> ') as [string, string];
    out.push({ type: m[1]!, perms: m[2]!, uid: +m[3]!, gid: +m[4]!, size: m[5]!.includes(',') ? 0 : +m[5]!, mtime: m[6]!, path: p, ...(target !== undefined ? { target } : {}) });
  }
  return out;
}

/** `ls -l`-style permission string of a mode. */
export function permString(mode: number): string {
  const chars = 'rwxrwxrwx';
  let s = '';
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? chars[i] : '-';
  const a = s.split('');
  if (mode & 0o4000) a[2] = a[2] === 'x' ? 's' : 'S';
  if (mode & 0o2000) a[5] = a[5] === 'x' ? 's' : 'S';
  if (mode & 0o1000) a[8] = a[8] === 'x' ? 't' : 'T';
  return a.join('');
}

export function typeChar(e: ImageEntry): string {
  if (e.type === 'directory') return 'd';
  if (e.type === 'symlink') return 'l';
  if (e.type === 'file') return '-';
  const t = e.mode & 0o170000;
  return t === 0o010000 ? 'p' : t === 0o140000 ? 's' : t === 0o060000 ? 'b' : 'c';
}

/** `7zz l -slt` blocks → files (Folder = -) path → size. */
export function sevenZipFiles(name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const block of golden(name).split('\n\n')) {
    const p = /^Path = (.*)$/m.exec(block)?.[1];
    const folder = /^Folder = (.)$/m.exec(block)?.[1];
    const size = /^Size = (\d+)$/m.exec(block)?.[1];
    if (p && folder === '-' && size !== undefined && !p.startsWith('[BOOT]')) out.set(p, +size);
  }
  return out;
}

/** `debugfs ls -p` for every directory → path → {inode, mode, uid, gid, size} (lost+found left out). */
export function debugfsListing(name: string): Map<string, { inode: number; mode: number; uid: number; gid: number; size: number }> {
  const out = new Map<string, { inode: number; mode: number; uid: number; gid: number; size: number }>();
  let dir = '/';
  for (const line of golden(name).split('\n')) {
    if (line.startsWith('@@ ')) {
      dir = line.slice(3);
      continue;
    }
    const m = /^\/(\d+)\/(\d+)\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line);
    if (!m) continue;
    const entryName = m[5]!;
    if (entryName === '.' || entryName === '..' || (dir === '/' && entryName === 'lost+found')) continue;
    const p = (dir === '/' ? '' : dir.slice(1) + '/') + entryName;
    out.set(p, { inode: +m[1]!, mode: parseInt(m[2]!, 8), uid: +m[3]!, gid: +m[4]!, size: m[6] ? +m[6] : 0 });
  }
  return out;
}

export { memoryDevice as bufferDevice };
