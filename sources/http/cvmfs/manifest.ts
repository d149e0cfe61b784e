/**
 * `parseManifest`: read a CVMFS repository manifest (`.cvmfspublished`) from its bytes.
 *
 * The file is `<KEY><value>` lines up to a line `--`, then one line with the hash of the
 * field lines, then the raw signature bytes. Parsing is lenient where the old Python
 * scraper was strict: only C, R, D and S are required; L, Z (which may repeat), unknown
 * keys and suffixed hashes (`-rmd160`, `-shake128`) are accepted and kept; empty lines
 * are skipped; the hash line and the signature are kept (the signature as base64).
 *
 * @example
 * ```ts
 * const manifest = parseManifest(res.body, url);
 * manifest.revision;      // 4711
 * manifest.fields.Z;      // ['…', '…'] when the key repeats
 * ```
 */
import { PermanentError } from '../../../runtime/errors.ts';

export interface CvmfsManifest {
  /** C: root catalog hash */
  rootCatalogHash: string;
  /** B: root catalog size in bytes */
  rootCatalogSize?: number;
  /** A: the catalog was fetched under its alternative name */
  alternativeName?: boolean;
  /** R: MD5 of the root path */
  rootPathHash: string;
  /** D: root catalog TTL in seconds */
  ttlSeconds: number;
  /** S: revision number */
  revision: number;
  /** G: garbage-collectable */
  garbageCollectable?: boolean;
  /** H: tag history hash */
  tagHistoryHash?: string;
  /** T: Unix time of this revision */
  timestamp?: number;
  /** N: full repository name */
  repositoryName?: string;
  /** X: signing certificate hash */
  certificateHash?: string;
  /** M: hash of the repository's JSON metadata */
  metadataHash?: string;
  /** Y: reflog checksum hash */
  reflogHash?: string;
  /** L: reserved (micro catalogs) */
  microCatalogs?: string;
  /** Z: channel tips (the key may repeat) */
  channelTips: string[];
  /** every field line as published, unknown keys included; a repeated key gives a list */
  fields: Record<string, string | string[]>;
  /** the line after `--`: the hash of the field lines */
  hash?: string;
  /** the signature bytes after the hash line, base64 */
  signature: string;
}

const REQUIRED = ['C', 'R', 'D', 'S'] as const;
const NEWLINE = 0x0a;

function integer(value: string | undefined): number | undefined {
  if (value === undefined || !/^-?\d+$/.test(value.trim())) return undefined;
  const n = Number(value.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

function yesNo(value: string | undefined): boolean | undefined {
  const v = value?.trim().toLowerCase();
  return v === 'yes' ? true : v === 'no' ? false : undefined;
}

/** Parse manifest bytes; throws a PermanentError naming `url` when a required field is missing or malformed. */
export function parseManifest(bytes: Uint8Array, url: string): CvmfsManifest {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Record<string, string | string[]> = {};
  let offset = 0;
  let hash: string | undefined;
  let signature: Buffer = Buffer.alloc(0);
  let sawSeparator = false;
  while (offset < buffer.length) {
    let end = buffer.indexOf(NEWLINE, offset);
    if (end === -1) end = buffer.length;
    let line = buffer.toString('utf8', offset, end);
    offset = end + 1;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') continue;
    if (line.startsWith('--')) {
      sawSeparator = true;
      // the hash line, then the raw signature: binary, may hold any byte (newlines too)
      let hashEnd = buffer.indexOf(NEWLINE, offset);
      if (hashEnd === -1) hashEnd = buffer.length;
      const hashText = buffer.toString('latin1', offset, hashEnd).trim();
      if (hashText) hash = hashText;
      signature = buffer.subarray(Math.min(hashEnd + 1, buffer.length));
      break;
    }
    const key = line[0]!;
    const value = line.slice(1);
    const previous = fields[key];
    if (previous === undefined) fields[key] = value;
    else fields[key] = Array.isArray(previous) ? [...previous, value] : [previous, value];
  }
  const one = (key: string): string | undefined => {
    const v = fields[key];
    return Array.isArray(v) ? v[0] : v;
  };

  const missing = REQUIRED.filter((k) => one(k) === undefined || one(k)!.trim() === '');
  if (missing.length) {
    const seen = Object.keys(fields).join('') || 'none';
    throw new PermanentError(
      `${url}: manifest lacks the required field${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (fields present: ${seen}${sawSeparator ? '' : '; no "--" signature separator either'})`,
      { item: url, hint: 'the file is not a CVMFS manifest, or it was cut short' },
    );
  }
  const revision = integer(one('S'));
  const ttlSeconds = integer(one('D'));
  if (revision === undefined) throw new PermanentError(`${url}: manifest revision S is not an integer: ${JSON.stringify(one('S'))}`, { item: url });
  if (ttlSeconds === undefined) throw new PermanentError(`${url}: manifest TTL D is not an integer: ${JSON.stringify(one('D'))}`, { item: url });

  const z = fields.Z;
  const manifest: CvmfsManifest = {
    rootCatalogHash: one('C')!.trim(),
    rootPathHash: one('R')!.trim(),
    ttlSeconds,
    revision,
    channelTips: z === undefined ? [] : Array.isArray(z) ? z : [z],
    fields,
    signature: signature.toString('base64'),
  };
  const size = integer(one('B'));
  if (size !== undefined) manifest.rootCatalogSize = size;
  const alt = yesNo(one('A'));
  if (alt !== undefined) manifest.alternativeName = alt;
  const gc = yesNo(one('G'));
  if (gc !== undefined) manifest.garbageCollectable = gc;
  const timestamp = integer(one('T'));
  if (timestamp !== undefined) manifest.timestamp = timestamp;
  const text: Array<[keyof CvmfsManifest, string]> = [
    ['tagHistoryHash', 'H'], ['repositoryName', 'N'], ['certificateHash', 'X'], ['metadataHash', 'M'], ['reflogHash', 'Y'], ['microCatalogs', 'L'],
  ];
  for (const [prop, key] of text) {
    const v = one(key);
    if (v !== undefined) (manifest as unknown as Record<string, unknown>)[prop] = v.trim();
  }
  if (hash !== undefined) manifest.hash = hash;
  return manifest;
}
