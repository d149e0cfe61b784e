/**
 * altrepo-repo — load an ALT Linux repository state into ClickHouse: the packages of a
 * branch on a date (a snapshot directory, a flat directory of RPMs, or an archive of
 * RPMs) into `packages`, `package_files`, `package_depends`, `package_changelog` (each
 * package once, ever) and `repository_state` (which packages the branch held that day,
 * every load). The ALTRepo uploader's `repo_load`, streaming and with bounded memory.
 *
 * ```sh
 * npm run pipeline -- altrepo-repo --param path=/archive/repo/sisyphus/date/2021/08/18 \
 *   --param branch=sisyphus --param date=2021-08-18
 * ```
 *
 * Per package (one item each):
 *  1. its `repository_state` row, always. In a snapshot its `pkg_hash` comes from the
 *     list when the list's header has the signature merged in; ALT's genpkglist lists do
 *     not, and then it comes from `package_hash` (by MD5, batched) for a stored package,
 *     from the file for one that is read: no file access for a stored package either way;
 *  2. `seen` on `package_hash.md5`: a package already stored is skipped. In a snapshot
 *     the key is the list's MD5 and the file is never opened (the old loader's rule); in
 *     a flat directory or an archive it is the MD5 of the file, read once;
 *  3. otherwise the file is read (at most `readers` at once, run-wide) in one pass —
 *     headers parsed, md5/sha1/sha256/blake2b computed — checked against the list
 *     (MD5, `files/list` SHA-256, pkg_hash), and its rows emitted, the `package_hash`
 *     marker last. The sink writes the marker only after every other row of the package
 *     was acknowledged (sinks/clickhouse/table-records.ts), so a package counts as
 *     stored only when all its rows are written: a crash in between leaves it unmarked,
 *     and the next run loads it again in full (its rows collapse by key).
 *
 * So the second load of an unchanged branch reads the package lists and writes only
 * `repository_state` rows. A package that cannot be read (truncated, corrupt, differs
 * from its list) fails its item with a message naming the file (and the byte offset for
 * a malformed one); `onError` is `skip` (`--on-error dead-letter` to keep them), and the
 * other packages go on.
 */
import path from 'node:path';
import { concat, defer, EMPTY, from, map, mergeMap, of, type Observable } from 'rxjs';
import { z } from 'zod';
import { seen } from '../operators/seen.ts';
import { TransientError } from '../runtime/errors.ts';
import { definePipeline } from '../runtime/pipeline.ts';
import { packageRecords, repositoryStateRow, pkgHashText } from '../sources/altrepo/package-rows.ts';
import { readListedPackage, readPackageFile, readPackageFrom, ReadSlots } from '../sources/altrepo/read-packages.ts';
import { repoItems, type RepoItem } from '../sources/altrepo/repo-source.ts';
import { StoredIds } from '../sources/altrepo/stored-ids.ts';
import type { ListedPackage } from '../sources/altrepo/snapshot.ts';
import { tableRecords, type TableRecord } from '../sinks/clickhouse/index.ts';
import { PACKAGE_TABLES, packageHash, repositoryState } from '../sources/altrepo/tables.ts';
import { pkgHash, type RpmPackage } from '../sources/rpm/index.ts';

/** The tables this pipeline writes, by the name records use. */
export const REPO_TABLES = { ...PACKAGE_TABLES, repository_state: repositoryState } as const;
export type RepoRecord = TableRecord<typeof REPO_TABLES>;

const isoDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'expected YYYY-MM-DD')
  .refine((d) => !Number.isNaN(Date.parse(`${d}T00:00:00Z`)) && new Date(`${d}T00:00:00Z`).toISOString().startsWith(d), 'not a calendar date');

export default definePipeline({
  name: 'altrepo-repo',
  description: 'Load an ALT repository state (snapshot, directory or archive of RPMs) into ClickHouse',
  params: z.object({
    path: z.string().describe('an ALT snapshot directory, a directory of RPMs, or an archive (tar, zip) of RPMs'),
    branch: z.string().min(1).describe('the branch, e.g. sisyphus, p10'),
    date: isoDate.describe('the date of the repository state, YYYY-MM-DD'),
    tag: z.string().default('').describe('a label for this state (e.g. a release name)'),
    layout: z.enum(['auto', 'snapshot', 'flat']).default('auto').describe('how to read a directory: auto finds <arch>/base/ package lists'),
    readers: z.number().int().min(1).max(64).default(4).describe('package files read at once'),
    verify: z.boolean().default(false).describe("also check each package's own digests (SHA1HEADER, SIGMD5, payload)"),
    batchRows: z.number().int().min(1).default(50_000).describe('rows per write to ClickHouse at most'),
  }),
  permissions: ({ params }) => ({ read: [params.path] }),
  tables: Object.values(REPO_TABLES),
  onError: 'skip',
  // as many packages in flight as a `seen` query takes keys (1000), so lookups and
  // inserts go in full batches; files are opened `readers` at a time whatever this is
  maxInFlight: 1000,
  source: (ctx) => repoItems(ctx, { path: ctx.params.path, layout: ctx.params.layout }),
  transform: (ctx) => {
    const { branch, date, tag, verify } = ctx.params;
    const slots = new ReadSlots(ctx.params.readers);
    let unit = 0;
    // the list is read far faster than keys could gather in 50 ms: a short wait is enough to fill a query
    const listedNotStored = seen<ListedPackage>(ctx, { table: packageHash, keyColumn: 'md5', keyOf: (l) => l.md5, maxWaitMs: 10 });
    const readNotStored = seen<RpmPackage>(ctx, { table: packageHash, keyColumn: 'md5', keyOf: (p) => p.digests.md5 });
    const ids = new StoredIds(ctx, { maxWaitMs: 10 });
    const name = (file: string) => path.join(ctx.params.path, path.relative(path.resolve(ctx.params.path), file));

    const stateOf = (l: ListedPackage, hash: string): RepoRecord => ({
      table: 'repository_state',
      row: repositoryStateRow({ branch, date, tag, arch: l.arch, component: l.component }, hash, l.filename),
    });
    const read = (l: ListedPackage) => slots.run(() => readListedPackage(ctx, l, { verify, name }));

    const listed = (l: ListedPackage): Observable<RepoRecord> => {
      if (l.pkgHash) {
        // the list's header gives the id: the state row needs nothing else
        return concat(
          of(stateOf(l, l.pkgHash)),
          of(l).pipe(listedNotStored, mergeMap(read), mergeMap((pkg): RepoRecord[] => packageRecords(pkg, { filename: l.filename, unit: ++unit }))),
        );
      }
      // genpkglist's entries carry no id: a package read gives its own, a stored one has it in package_hash
      return defer(() => {
        let loaded = false;
        return concat(
          of(l).pipe(
            listedNotStored,
            mergeMap(read),
            mergeMap((pkg): RepoRecord[] => {
              loaded = true;
              return [stateOf(l, pkgHashText(pkgHash(pkg))), ...packageRecords(pkg, { filename: l.filename, unit: ++unit })];
            }),
          ),
          defer(() => (loaded ? EMPTY : from(ids.get(l.md5)).pipe(map((hash) => {
            // stored a moment ago, gone now (someone deleted it): try the item again, it will be loaded
            if (hash === undefined) throw new TransientError(`${l.list}: ${l.filename}: package_hash has no row for MD5 ${l.md5} any more`);
            return stateOf(l, hash);
          })))),
        );
      });
    };

    const file = (it: Extract<RepoItem, { kind: 'file' }>): Observable<RepoRecord> =>
      defer(() => {
        // an archive member must be opened before the next item is pulled; a file on
        // disk only when its slot comes, so waiting items hold no descriptors
        if (it.inArchive) {
          const stream = it.entry.content();
          return from(slots.run(() => readPackageFrom(stream, it.name, { verify })));
        }
        return from(slots.run(() => readPackageFile(ctx, it.entry.absolutePath, it.name, { verify })));
      }).pipe(
        mergeMap((pkg) => {
          const state: RepoRecord = {
            table: 'repository_state',
            row: repositoryStateRow({ branch, date, tag, arch: pkg.isSource ? 'src' : pkg.arch, component: '' }, pkgHashText(pkgHash(pkg)), path.basename(it.entry.path)),
          };
          return concat(
            of(state),
            of(pkg).pipe(
              readNotStored,
              mergeMap((p): RepoRecord[] => packageRecords(p, { filename: path.basename(it.entry.path), unit: ++unit })),
            ),
          );
        }),
      );

    return mergeMap((it: RepoItem) => (it.kind === 'listed' ? listed(it.listed) : file(it)));
  },
  sinks: ({ params }) => [tableRecords(REPO_TABLES, { marker: 'package_hash', maxRecords: params.batchRows, name: 'clickhouse:altrepo' })],
  nextSteps: ({ params }) => {
    const q = (s: string) => s.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
    return [
      '',
      'What the branch held that day, by arch and component:',
      `  npm run query -- "SELECT arch, component, count() AS packages FROM repository_state FINAL WHERE branch = '${q(params.branch)}' AND date = '${q(params.date)}' AND tag = '${q(params.tag)}' GROUP BY arch, component ORDER BY arch, component"`,
      'Its packages:',
      `  npm run query -- "SELECT p.name, p.version, p.release, p.arch FROM packages AS p FINAL WHERE p.pkg_hash IN (SELECT pkg_hash FROM repository_state WHERE branch = '${q(params.branch)}' AND date = '${q(params.date)}') ORDER BY p.name LIMIT 20"`,
    ];
  },
});
