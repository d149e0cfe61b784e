/**
 * The ClickHouse tables of the ALT repository loaders (`altrepo-repo`, `altrepo-task`),
 * declared once: the pipelines write them, `pipeline migrate` creates and extends them,
 * and the tests and the benchmark read them.
 *
 * Identity: `pkg_hash` (UInt64) is ALT's package id (`pkgHash` in sources/rpm: build
 * time in the high half, MurmurHash3 of SHA1HEADER ‖ SIGMD5 ‖ SIGGPG in the low half), so
 * ids match what ALT's existing database holds. Every table is a ReplacingMergeTree on
 * its natural key, so a package loaded twice (a re-run after a crash, two runs at once)
 * leaves one row per key (read with `FINAL` for exact counts before merges).
 *
 * `package_hash` is the "package fully loaded" marker, like the old database's
 * PackageHash: one row per package file (md5, sha1, sha256, blake2b → pkg_hash), written
 * only after every other row of the package was acknowledged by the store (see
 * `tableRecords` in sinks/clickhouse/table-records.ts). The loaders' `seen` lookups go to it, keyed
 * by `md5`: a package whose marker exists is never loaded again, and one whose marker is
 * missing (a crash between its rows and its marker) is loaded again in full.
 *
 * Times are `DateTime('UTC')` written as Unix seconds; text is what the RPM reader
 * decodes (valid UTF-8 as UTF-8, anything else as latin-1: see sources/rpm/header.ts).
 *
 * @example
 * ```ts
 * import { packages } from '../sources/altrepo/tables.ts';
 * // npm run query -- "SELECT name, version, release FROM packages FINAL ORDER BY name"
 * ```
 */
import { defineTable, type RowOf } from '../../runtime/clickhouse/table.ts';

/** One row per package (binary or source). */
export const packages = defineTable('packages', {
  columns: {
    pkg_hash: 'UInt64',
    name: 'String',
    epoch: 'UInt32',
    version: 'String',
    release: 'String',
    arch: 'LowCardinality(String)',
    is_source: 'UInt8',
    sourcerpm: 'String',
    summary: 'String',
    description: 'String',
    license: 'String',
    group: 'LowCardinality(String)',
    url: 'String',
    buildtime: "DateTime('UTC')",
    buildhost: 'LowCardinality(String)',
    packager: 'String',
    vendor: 'String',
    disttag: 'String',
    /** installed size in bytes */
    size: 'UInt64',
    /** the package file's name and size */
    filename: 'String',
    file_size: 'UInt64',
    md5: 'String',
    sha1: 'String',
    sha256: 'String',
    blake2b: 'String',
    sha1header: 'String',
    payload_compressor: 'LowCardinality(String)',
  },
  orderBy: ['pkg_hash'],
});

/** One row per file of a package's file list (directories and links included). */
export const packageFiles = defineTable('package_files', {
  columns: {
    pkg_hash: 'UInt64',
    path: 'String',
    size: 'UInt64',
    /** the full st_mode: type and permission bits */
    mode: 'UInt32',
    mtime: "DateTime('UTC')",
    /** hex digest of the content, '' for directories, links and ghosts */
    digest: 'String',
    /** md5, sha256 … (FILEDIGESTALGO; md5 when the header does not say, as in ALT) */
    digest_algo: 'LowCardinality(String)',
    link_target: 'String',
    /** RPMFILE_* bits (config, doc, ghost …) */
    flags: 'UInt32',
    user: 'LowCardinality(String)',
    group: 'LowCardinality(String)',
  },
  orderBy: ['pkg_hash', 'path'],
});

/** Dependency kinds, as the old database's Depends table names them (plus rpm's weak ones). */
export type DependKind = 'require' | 'provide' | 'conflict' | 'obsolete' | 'recommend' | 'suggest' | 'supplement' | 'enhance';

/** One row per dependency: requires, provides, conflicts, obsoletes and the weak ones. */
export const packageDepends = defineTable('package_depends', {
  columns: {
    pkg_hash: 'UInt64',
    kind: 'LowCardinality(String)',
    name: 'String',
    /** `[epoch:]version[-release]`, '' when unversioned */
    version: 'String',
    /** RPMSENSE_* bits as stored */
    flags: 'UInt32',
  },
  orderBy: ['pkg_hash', 'kind', 'name', 'version', 'flags'],
});

/** One row per changelog entry, `idx` 0 the newest (as rpm stores them). */
export const packageChangelog = defineTable('package_changelog', {
  columns: {
    pkg_hash: 'UInt64',
    idx: 'UInt32',
    time: "DateTime('UTC')",
    name: 'String',
    text: 'String',
  },
  orderBy: ['pkg_hash', 'idx'],
});

/** The "package fully loaded" marker: written last, looked up by `seen` (by md5). */
export const packageHash = defineTable('package_hash', {
  columns: {
    md5: 'String',
    pkg_hash: 'UInt64',
    sha1: 'String',
    sha256: 'String',
    blake2b: 'String',
    filename: 'String',
    /** how many rows the package has in the other tables (packages, files, depends, changelog) */
    rows: 'UInt32',
  },
  orderBy: ['md5'],
});

/** Which packages a branch held on a date: one row per package, arch and component. */
export const repositoryState = defineTable('repository_state', {
  columns: {
    branch: 'LowCardinality(String)',
    date: 'Date',
    tag: 'String',
    arch: 'LowCardinality(String)',
    component: 'LowCardinality(String)',
    pkg_hash: 'UInt64',
    filename: 'String',
  },
  orderBy: ['branch', 'date', 'tag', 'arch', 'component', 'pkg_hash'],
});

/** One row per task try and iteration; of several loads, the latest `changed` stays. */
export const tasks = defineTable('tasks', {
  columns: {
    task_id: 'UInt32',
    try: 'UInt32',
    iter: 'UInt32',
    state: 'LowCardinality(String)',
    owner: 'LowCardinality(String)',
    repo: 'LowCardinality(String)',
    /** mtime of task/state: when the task last changed */
    changed: "DateTime('UTC')",
    message: 'String',
    testonly: 'UInt8',
    depends: 'Array(UInt32)',
  },
  orderBy: ['task_id', 'try', 'iter'],
  versionColumn: 'changed',
});

/** One row per subtask (`gears/<N>`), with the build status of each arch (`build/<N>/<arch>/status`). */
export const taskSubtasks = defineTable('task_subtasks', {
  columns: {
    task_id: 'UInt32',
    subtask_id: 'UInt32',
    try: 'UInt32',
    iter: 'UInt32',
    /** gear, srpm, copy, delete, rebuild or unknown (girar's rules) */
    type: 'LowCardinality(String)',
    deleted: 'UInt8',
    dir: 'String',
    package: 'String',
    srpm: 'String',
    tag_name: 'String',
    tag_id: 'String',
    tag_author: 'String',
    userid: 'LowCardinality(String)',
    sid: 'String',
    pkg_from: 'String',
    build_arches: 'Array(String)',
    build_statuses: 'Array(String)',
    changed: "DateTime('UTC')",
  },
  orderBy: ['task_id', 'subtask_id'],
  versionColumn: 'changed',
});

/** One row per package a task built or its plan adds or removes. */
export const taskPackages = defineTable('task_packages', {
  columns: {
    task_id: 'UInt32',
    try: 'UInt32',
    iter: 'UInt32',
    subtask_id: 'UInt32',
    /** the package's arch (`src` for a source package) */
    arch: 'LowCardinality(String)',
    /** the arch it was built on (`build/<N>/<arch>/`); '' for a plan entry without a built file */
    build_arch: 'LowCardinality(String)',
    filename: 'String',
    /** add (built, in plan/add-*), rm (plan/rm-*), built (built, not in the plan) */
    action: 'LowCardinality(String)',
    name: 'String',
    evr: 'String',
    is_source: 'UInt8',
    /** 0 when the file is not in the task (plan/rm-*, or a plan entry whose file is missing) */
    pkg_hash: 'UInt64',
    md5: 'String',
    sha256: 'String',
    component: 'LowCardinality(String)',
  },
  orderBy: ['task_id', 'try', 'iter', 'action', 'arch', 'filename'],
});

export type PackageRow = RowOf<typeof packages>;
export type PackageFileRow = RowOf<typeof packageFiles>;
export type PackageDependRow = RowOf<typeof packageDepends>;
export type PackageChangelogRow = RowOf<typeof packageChangelog>;
export type PackageHashRow = RowOf<typeof packageHash>;
export type RepositoryStateRow = RowOf<typeof repositoryState>;
export type TaskRow = RowOf<typeof tasks>;
export type TaskSubtaskRow = RowOf<typeof taskSubtasks>;
export type TaskPackageRow = RowOf<typeof taskPackages>;

/** The tables a package's own rows go to, marker included. */
export const PACKAGE_TABLES = {
  packages,
  package_files: packageFiles,
  package_depends: packageDepends,
  package_changelog: packageChangelog,
  package_hash: packageHash,
} as const;
