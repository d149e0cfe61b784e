/**
 * The archive fixtures (fixtures/archives, made by make.sh) and the golden outputs the
 * reference tools wrote when they were made: `tar -tvv --full-time` and `zipinfo -l -T`
 * listings, and the sha256 of every file the real tools extracted.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EntryType } from '../../sources/entry.ts';

export const FIXTURES = fileURLToPath(new URL('../../fixtures/archives/', import.meta.url));
export const GOLDEN = path.join(FIXTURES, 'golden');

export function fixture(name: string): string {
  return path.join(FIXTURES, name);
}

export function fixtureBytes(name: string): Buffer {
  return readFileSync(fixture(name));
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** One line of a reference listing, in the terms of ArchiveEntry. */
export interface GoldenEntry {
  /** the name as the tool printed it (not normalised) */
  readonly name: string;
  readonly type: EntryType;
  readonly hardLink: boolean;
  /** the permission string's bits (rwx, setuid …) */
  readonly permissions: number;
  readonly size: number;
  /** seconds since the epoch (the listings were made with TZ=UTC) */
  readonly mtime: number;
  readonly linkTarget?: string;
  readonly uid?: number;
  readonly gid?: number;
}

const TAR_LINE = /^(\S)(\S{9}) (\d+)\/(\d+)\s+(\d+) (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) (.*)$/;
const ZIP_LINE = /^(\S)(\S{9})\s+\S+\s+\S+\s+(\d+)\s+\S+\s+(\d+)\s+\S+\s+(\d{4})(\d\d)(\d\d)\.(\d\d)(\d\d)(\d\d) (.*)$/;

/** The golden listing of `archive` (`golden/<archive>.list`), parsed. */
export function goldenListing(archive: string): GoldenEntry[] {
  const text = readFileSync(path.join(GOLDEN, `${archive}.list`), 'utf8');
  const entries: GoldenEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const tar = TAR_LINE.exec(line);
    if (tar) {
      const [, kind, perms, uid, gid, size, y, mo, d, h, mi, s, rest] = tar;
      const mtime = Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!) / 1000;
      let name = rest!;
      let linkTarget: string | undefined;
      if (kind === 'l') [name, linkTarget] = splitOnce(rest!, ' -> ');
      if (kind === 'h') [name, linkTarget] = splitOnce(rest!, ' link to ');
      entries.push({
        name,
        type: typeOf(kind!),
        hardLink: kind === 'h',
        permissions: permissionBits(perms!),
        size: +size!,
        mtime,
        ...(linkTarget === undefined ? {} : { linkTarget }),
        uid: +uid!,
        gid: +gid!,
      });
      continue;
    }
    const zip = ZIP_LINE.exec(line);
    if (zip) {
      const [, kind, perms, size, , y, mo, d, h, mi, s, name] = zip;
      entries.push({
        name: name!,
        type: typeOf(kind!),
        hardLink: false,
        permissions: permissionBits(perms!),
        size: +size!,
        mtime: Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!) / 1000,
      });
      continue;
    }
    throw new Error(`unparsed line in golden/${archive}.list: ${line}`);
  }
  return entries;
}

/** `golden/sha256sums.txt`: "<archive>!<path>…" → sha256 of the file the real tool extracted. */
export function goldenSums(): Map<string, string> {
  const sums = new Map<string, string>();
  for (const line of readFileSync(path.join(GOLDEN, 'sha256sums.txt'), 'utf8').split('\n')) {
    if (!line) continue;
    const at = line.indexOf('  ');
    sums.set(line.slice(at + 2), line.slice(0, at));
  }
  return sums;
}

function splitOnce(text: string, separator: string): [string, string] {
  const at = text.indexOf(separator);
  return [text.slice(0, at), text.slice(at + separator.length)];
}

function typeOf(kind: string): EntryType {
  switch (kind) {
    case '-':
    case 'h':
      return 'file';
    case 'd':
      return 'directory';
    case 'l':
      return 'symlink';
    default:
      return 'other';
  }
}

/** `rwxr-sr-t` → 0o3755 */
function permissionBits(perms: string): number {
  let bits = 0;
  const flags = [0o400, 0o200, 0o100, 0o040, 0o020, 0o010, 0o004, 0o002, 0o001];
  for (let i = 0; i < 9; i++) {
    const c = perms[i]!;
    if (c !== '-' && c !== 'S' && c !== 'T') bits |= flags[i]!;
  }
  if (/[sS]/.test(perms[2]!)) bits |= 0o4000;
  if (/[sS]/.test(perms[5]!)) bits |= 0o2000;
  if (/[tT]/.test(perms[8]!)) bits |= 0o1000;
  return bits;
}
