/**
 * altrepo-task — load a girar build task directory into ClickHouse: the task
 * (`tasks`), its subtasks with the build status of each arch (`task_subtasks`), and the
 * packages it built or its plan adds and removes (`task_packages`); the packages it
 * built are also loaded into the package tables (`packages`, `package_files`,
 * `package_depends`, `package_changelog`, once each, ever: the same rows and the same
 * `seen` + marker rule as `altrepo-repo`). docs/altrepo.md describes the directory.
 *
 * ```sh
 * npm run pipeline -- altrepo-task --param path=/tasks/300000
 * ```
 *
 * A built package that cannot be read fails its item with a message naming the file
 * (and the byte offset for a malformed one); `onError` is `skip`, the rest goes on.
 */
import path from 'node:path';
import { concat, from, mergeMap, of, type Observable } from 'rxjs';
import { z } from 'zod';
import { seen } from '../operators/seen.ts';
import { definePipeline } from '../runtime/pipeline.ts';
import { packageRecords, pkgHashText } from '../sources/altrepo/package-rows.ts';
import { readPackageFile, ReadSlots } from '../sources/altrepo/read-packages.ts';
import { tableRecords, type TableRecord } from '../sinks/clickhouse/index.ts';
import { PACKAGE_TABLES, packageHash, taskPackages, taskSubtasks, tasks } from '../sources/altrepo/tables.ts';
import { taskItems, type TaskItem, type TaskPackageFile } from '../sources/altrepo/task.ts';
import { pkgHash, type RpmPackage } from '../sources/rpm/index.ts';

export const TASK_TABLES = { ...PACKAGE_TABLES, tasks, task_subtasks: taskSubtasks, task_packages: taskPackages } as const;
export type TaskRecord = TableRecord<typeof TASK_TABLES>;

export default definePipeline({
  name: 'altrepo-task',
  description: 'Load a girar build task directory (task, subtasks, plan, built packages) into ClickHouse',
  params: z.object({
    path: z.string().describe('the task directory (the one holding task/, gears/, build/, plan/)'),
    packages: z.boolean().default(true).describe('also load the built packages into the package tables'),
    readers: z.number().int().min(1).max(64).default(4).describe('package files read at once'),
    verify: z.boolean().default(false).describe("also check each package's own digests (SHA1HEADER, SIGMD5, payload)"),
  }),
  permissions: ({ params }) => ({ read: [params.path] }),
  tables: Object.values(TASK_TABLES),
  onError: 'skip',
  maxInFlight: 64,
  source: (ctx) => taskItems(ctx, { path: ctx.params.path }),
  transform: (ctx) => {
    const slots = new ReadSlots(ctx.params.readers);
    const notStored = seen<RpmPackage>(ctx, { table: packageHash, keyColumn: 'md5', keyOf: (p) => p.digests.md5 });
    let unit = 0;

    const taskRecords = (it: Extract<TaskItem, { kind: 'task' }>): TaskRecord[] => [
      { table: 'tasks', row: it.info.task },
      ...it.info.subtasks.map((row): TaskRecord => ({ table: 'task_subtasks', row })),
      ...it.info.planned.map((row): TaskRecord => ({ table: 'task_packages', row })),
    ];

    const built = (f: TaskPackageFile): Observable<TaskRecord> =>
      from(slots.run(() => readPackageFile(ctx, f.path, path.join(ctx.params.path, f.rel), { verify: ctx.params.verify }))).pipe(
        mergeMap((pkg) => {
          const row: TaskRecord = {
            table: 'task_packages',
            row: {
              task_id: f.taskId,
              try: f.try,
              iter: f.iter,
              subtask_id: f.subtaskId,
              arch: pkg.isSource ? 'src' : pkg.arch,
              build_arch: f.arch,
              filename: f.filename,
              action: f.action,
              name: pkg.name,
              evr: `${pkg.epoch !== undefined ? `${pkg.epoch}:` : ''}${pkg.version}-${pkg.release}`,
              is_source: pkg.isSource ? 1 : 0,
              pkg_hash: pkgHashText(pkgHash(pkg)),
              md5: pkg.digests.md5,
              sha256: pkg.digests.sha256,
              component: f.component,
            },
          };
          if (!ctx.params.packages) return of(row);
          return concat(of(row), of(pkg).pipe(notStored, mergeMap((p): TaskRecord[] => packageRecords(p, { filename: f.filename, unit: ++unit }))));
        }),
      );

    return mergeMap((it: TaskItem) => (it.kind === 'task' ? from(taskRecords(it)) : built(it.file)));
  },
  sinks: () => [tableRecords(TASK_TABLES, { marker: 'package_hash', name: 'clickhouse:altrepo-task' })],
  nextSteps: () => [
    '',
    'What the task built and plans:',
    '  npm run query -- "SELECT task_id, subtask_id, action, arch, filename, evr FROM task_packages FINAL ORDER BY task_id, subtask_id, action, arch, filename"',
  ],
});
