/**
 * A package read by the RPM reader, as the rows of the loaders' package tables: one
 * `packages` row, its files, dependencies and changelog, and last the `package_hash`
 * marker that says "every row of this package is written" (see sinks/clickhouse/table-records.ts).
 *
 * Everything is built before anything is returned, so a header that turns out to be
 * malformed half-way (a file list whose arrays disagree) fails the package as a whole:
 * no partial package reaches the sink.
 *
 * @example
 * ```ts
 * const pkg = await readPackage(stream, { source: path });
 * for (const record of packageRecords(pkg, { filename: 'foo-1.0-alt1.x86_64.rpm', unit: 7 })) emit(record);
 * ```
 */
import { pkgHash, type DependencyKind, type RpmPackage } from '../rpm/index.ts';
import type { TableRecord } from '../../sinks/clickhouse/table-records.ts';
import type { DependKind, PACKAGE_TABLES, PackageRow, RepositoryStateRow } from './tables.ts';

/** A record for one of the package tables. */
export type PackageRecord = TableRecord<typeof PACKAGE_TABLES>;

const DEPEND_KINDS: ReadonlyArray<readonly [DependencyKind, DependKind]> = [
  ['requires', 'require'],
  ['provides', 'provide'],
  ['conflicts', 'conflict'],
  ['obsoletes', 'obsolete'],
  ['recommends', 'recommend'],
  ['suggests', 'suggest'],
  ['supplements', 'supplement'],
  ['enhances', 'enhance'],
];

/** `pkg_hash` as the tables take it: decimal text (exact for UInt64, cheap to fingerprint). */
export function pkgHashText(hash: bigint): string {
  return hash.toString();
}

/** The `packages` row of a package. */
export function packageRow(pkg: RpmPackage, filename: string, hash = pkgHashText(pkgHash(pkg))): PackageRow {
  return {
    pkg_hash: hash,
    name: pkg.name,
    epoch: pkg.epoch ?? 0,
    version: pkg.version,
    release: pkg.release,
    arch: pkg.arch,
    is_source: pkg.isSource ? 1 : 0,
    sourcerpm: pkg.sourcerpm ?? '',
    summary: pkg.summary,
    description: pkg.description,
    license: pkg.license,
    group: pkg.group,
    url: pkg.url,
    buildtime: pkg.buildtime,
    buildhost: pkg.buildhost,
    packager: pkg.packager,
    vendor: pkg.vendor,
    disttag: pkg.disttag,
    size: pkg.size,
    filename,
    file_size: pkg.byteLength,
    md5: pkg.digests.md5,
    sha1: pkg.digests.sha1,
    sha256: pkg.digests.sha256,
    blake2b: pkg.digests.blake2b,
    sha1header: pkg.sha1header ?? '',
    payload_compressor: pkg.payloadCompressor,
  };
}

/**
 * Every row of a package, the marker last. `unit` must be unique among the packages a
 * run has in flight (it ties the marker to the rows before it).
 */
export function packageRecords(pkg: RpmPackage, options: { filename: string; unit: number }): PackageRecord[] {
  const unit = options.unit;
  const hash = pkgHashText(pkgHash(pkg));
  const out: PackageRecord[] = [{ table: 'packages', row: packageRow(pkg, options.filename, hash), unit }];
  const algo = pkg.fileDigestAlgorithm;
  for (const f of pkg.files) {
    out.push({
      table: 'package_files',
      unit,
      row: {
        pkg_hash: hash,
        path: f.path,
        size: f.size,
        mode: f.mode,
        mtime: f.mtime,
        digest: f.digest,
        digest_algo: f.digest ? algo : '',
        link_target: f.linkTarget,
        flags: f.flags,
        user: f.user,
        group: f.group,
      },
    });
  }
  for (const [kind, name] of DEPEND_KINDS) {
    for (const d of pkg.dependencies(kind)) {
      out.push({ table: 'package_depends', unit, row: { pkg_hash: hash, kind: name, name: d.name, version: d.version, flags: d.flags } });
    }
  }
  pkg.changelog.forEach((c, idx) => {
    out.push({ table: 'package_changelog', unit, row: { pkg_hash: hash, idx, time: c.time, name: c.name, text: c.text } });
  });
  const d = pkg.digests;
  out.push({
    table: 'package_hash',
    unit,
    unitRows: out.length,
    row: { md5: d.md5, pkg_hash: hash, sha1: d.sha1, sha256: d.sha256, blake2b: d.blake2b, filename: options.filename, rows: out.length },
  });
  return out;
}

/** Where a package was found, for its `repository_state` row. */
export interface StatePlace {
  readonly branch: string;
  /** YYYY-MM-DD */
  readonly date: string;
  readonly tag: string;
  readonly arch: string;
  readonly component: string;
}

export function repositoryStateRow(place: StatePlace, hash: string, filename: string): RepositoryStateRow {
  return { branch: place.branch, date: place.date, tag: place.tag, arch: place.arch, component: place.component, pkg_hash: hash, filename };
}
