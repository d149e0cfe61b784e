/**
 * Shared by the altrepo tests: the fixtures (made by fixtures/altrepo/make.ts from the
 * real RPMs of fixtures/rpm), running the loaders in-process on a store, making many
 * distinct packages from one real one, and writing a snapshot tree around packages.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { quoteIdentifier } from '../../runtime/clickhouse/store.ts';
import { createLogger } from '../../runtime/log.ts';
import type { AnyPipeline, ErrorPolicy } from '../../runtime/pipeline.ts';
import type { RunRecord } from '../../runtime/run-record.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { pkglistHeader } from '../../sources/altrepo/pkglist.ts';
import { parseHeader, readPackage } from '../../sources/rpm/index.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SNAPSHOT = path.join(ROOT, 'fixtures/altrepo/snapshot');
export const TASK = path.join(ROOT, 'fixtures/altrepo/task');
export const RPM_FIXTURES = path.join(ROOT, 'fixtures/rpm');

export const quiet = createLogger({ level: 'silent' });

export async function tempDir(prefix: string): Promise<string> {
  return fs.promises.mkdtemp(path.join(os.tmpdir(), `sluice-altrepo-${prefix}-`));
}

/** Run a pipeline in this process on `store`, params as the CLI would give them. */
export async function run(
  pipeline: AnyPipeline,
  store: ClickHouseStore,
  params: Record<string, unknown>,
  options: { stateDir: string; onError?: ErrorPolicy; maxInFlight?: number } ,
): Promise<RunRecord> {
  return runPipeline({
    pipeline,
    params,
    openStore: () => Promise.resolve(store),
    keepStoreOpen: true,
    stateDir: options.stateDir,
    log: quiet,
    ...(options.onError ? { onError: options.onError } : {}),
    ...(options.maxInFlight ? { maxInFlight: options.maxInFlight } : {}),
  });
}

/** One number from `SELECT … AS n`. */
export async function scalar(store: ClickHouseStore, sql: string): Promise<number> {
  const rows = await store.query<{ n: string | number }>(sql);
  return Number(rows[0]!.n);
}

/** `count()` of a table, as stored (no FINAL: rows written twice count twice). */
export function rowCount(store: ClickHouseStore, table: string, where = ''): Promise<number> {
  return scalar(store, `SELECT count() AS n FROM ${quoteIdentifier(store.database)}.${quoteIdentifier(table)}${where ? ` WHERE ${where}` : ''}`);
}

/**
 * A distinct package made from a real one: the signature's SHA1HEADER value gets `n`
 * in its first 8 hex digits, so the file's digests and its pkg_hash differ, and
 * everything else (headers, payload) stays the real rpmbuild output. The RPM reader does
 * not verify SHA1HEADER unless asked, so the variant reads like the original.
 */
export function variantRpm(original: Buffer, n: number): Buffer {
  const out = Buffer.from(original);
  const sig = parseHeader(out.subarray(96), { source: 'variant' });
  const entry = sig.entry(269);
  if (!entry) throw new Error('the package has no SHA1HEADER in its signature');
  const at = 96 + 16 + sig.entries.length * 16 + entry.offset;
  out.write((n >>> 0).toString(16).padStart(8, '0'), at, 'latin1');
  return out;
}

/** `count` variants of a fixture RPM in `dir` (flat), named `<stem>.v<n>.<arch>.rpm`; returns their file names. */
export function writeVariants(dir: string, fixture: string, count: number, first = 0): string[] {
  const original = fs.readFileSync(path.join(RPM_FIXTURES, fixture));
  fs.mkdirSync(dir, { recursive: true });
  const names: string[] = [];
  const stem = fixture.replace(/\.([^.]+)\.rpm$/, '');
  const arch = /\.([^.]+)\.rpm$/.exec(fixture)![1];
  for (let i = first; i < first + count; i++) {
    const name = `${stem}.v${String(i).padStart(5, '0')}.${arch}.rpm`;
    fs.writeFileSync(path.join(dir, name), variantRpm(original, i + 1));
    names.push(name);
  }
  return names;
}

const hex = (algo: string, data: Buffer) => createHash(algo).update(data).digest('hex');

/**
 * A one-arch, one-component snapshot around package files already in
 * `<root>/<arch>/RPMS.<component>/`: `base/pkglist.<component>.xz` (genpkglist's
 * headers, see sources/altrepo/pkglist.ts) and `base/release` with its sums.
 */
export async function writeSnapshotLists(root: string, arch: string, component: string): Promise<void> {
  const dir = path.join(root, arch, `RPMS.${component}`);
  const headers: Buffer[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.rpm')).sort()) {
    const bytes = fs.readFileSync(path.join(dir, f));
    const pkg = await readPackage([bytes], { source: f });
    headers.push(pkglistHeader(pkg, { filename: f, size: bytes.length, md5: pkg.digests.md5, blake2b: pkg.digests.blake2b }));
  }
  const r = spawnSync('xz', ['-c', '-1', '-T1'], { input: Buffer.concat(headers), maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`xz: ${r.stderr}`);
  const list = r.stdout;
  fs.mkdirSync(path.join(root, arch, 'base'), { recursive: true });
  fs.writeFileSync(path.join(root, arch, 'base', `pkglist.${component}.xz`), list);
  fs.writeFileSync(
    path.join(root, arch, 'base', 'release'),
    [`Architectures: ${arch}`, `Components: ${component}`, 'BLAKE2b:', ` ${hex('blake2b512', list)} ${list.length} base/pkglist.${component}.xz`, ''].join('\n'),
  );
}

/** Copy a directory tree (symlinks kept as links). */
export function copyTree(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true, verbatimSymlinks: true });
}
