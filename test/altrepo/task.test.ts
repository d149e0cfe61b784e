/**
 * altrepo-task on embedded ClickHouse: the task fixture (fixtures/altrepo/task, a
 * girar task directory made by fixtures/altrepo/make.ts around the real RPMs) into
 * tasks, task_subtasks and task_packages, its built packages into the package tables
 * once; a task directory without task/id; a truncated built package.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import repoPipeline from '../../pipelines/altrepo-repo.ts';
import taskPipeline, { TASK_TABLES } from '../../pipelines/altrepo-task.ts';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import { quoteIdentifier, type ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { sums } from '../rpm/support.ts';
import { copyTree, rowCount, run, scalar, SNAPSHOT, TASK, tempDir } from './support.ts';

let dir: string;
let store: ClickHouseStore;
const t = (name: string) => `${quoteIdentifier(store.database)}.${quoteIdentifier(name)}`;

beforeAll(async () => {
  dir = await tempDir('task');
  store = await openEmbeddedStore({ dir: path.join(dir, 'clickhouse'), database: 'sluice' });
});
afterAll(async () => {
  await store?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  for (const def of [...Object.values(TASK_TABLES), { name: 'repository_state' }]) await store.command(`DROP TABLE IF EXISTS ${t(def.name)}`);
});

describe('altrepo-task', () => {
  it('the task, its subtasks with build statuses, its plan and its built packages', async () => {
    const record = await run(taskPipeline, store, { path: TASK }, { stateDir: path.join(dir, 'state') });
    expect(record.status).toBe('succeeded');
    expect(record.errors).toEqual([]);
    expect(record.counts.items).toBe(6); // the task, and its five built files

    const [task] = await store.query<Record<string, unknown>>(`SELECT task_id, try, iter, state, owner, repo, message, testonly, depends FROM ${t('tasks')} FINAL`);
    expect(task).toEqual({ task_id: 300000, try: 2, iter: 1, state: 'DONE', owner: 'sluice', repo: 'sisyphus', message: 'sluice fixtures: one gear, one noarch set, one removal', testonly: 0, depends: [299999] });

    const subtasks = await store.query<Record<string, unknown>>(`SELECT subtask_id, type, deleted, dir, package, tag_name, sid, build_arches, build_statuses FROM ${t('task_subtasks')} FINAL ORDER BY subtask_id`);
    expect(subtasks).toEqual([
      { subtask_id: 100, type: 'gear', deleted: 0, dir: '/people/sluice/packages/sluice-gz.git', package: 'sluice-gz', tag_name: '1.2.3-alt1', sid: '1', build_arches: ['x86_64', 'i586'], build_statuses: ['built', 'failed'] },
      { subtask_id: 200, type: 'gear', deleted: 0, dir: '/people/sluice/packages/sluice-compressed.git', package: 'sluice-compressed', tag_name: '0.9-1', sid: '', build_arches: ['x86_64'], build_statuses: ['built'] },
      { subtask_id: 300, type: 'delete', deleted: 0, dir: '', package: 'sluice-old', tag_name: '', sid: '', build_arches: [], build_statuses: [] },
    ]);

    const md5 = sums('MD5SUMS');
    const packages = await store.query<Record<string, unknown>>(
      `SELECT subtask_id, action, arch, build_arch, filename, name, evr, is_source, pkg_hash > 0 AS known, md5, component FROM ${t('task_packages')} FINAL ORDER BY action, filename`,
    );
    expect(packages).toEqual([
      { subtask_id: 200, action: 'add', arch: 'noarch', build_arch: 'x86_64', filename: 'sluice-bz2-0.9-1.noarch.rpm', name: 'sluice-bz2', evr: '0.9-1', is_source: 0, known: 1, md5: md5.get('sluice-bz2-0.9-1.noarch.rpm'), component: 'classic' },
      { subtask_id: 100, action: 'add', arch: 'src', build_arch: 'x86_64', filename: 'sluice-gz-1.2.3-alt1.src.rpm', name: 'sluice-gz', evr: '2:1.2.3-alt1', is_source: 1, known: 1, md5: md5.get('sluice-gz-1.2.3-alt1.src.rpm'), component: '' },
      { subtask_id: 100, action: 'add', arch: 'x86_64', build_arch: 'x86_64', filename: 'sluice-gz-1.2.3-alt1.x86_64.rpm', name: 'sluice-gz', evr: '2:1.2.3-alt1', is_source: 0, known: 1, md5: md5.get('sluice-gz-1.2.3-alt1.x86_64.rpm'), component: 'classic' },
      { subtask_id: 200, action: 'add', arch: 'noarch', build_arch: 'x86_64', filename: 'sluice-xz-0.9-1.noarch.rpm', name: 'sluice-xz', evr: '0.9-1', is_source: 0, known: 1, md5: md5.get('sluice-xz-0.9-1.noarch.rpm'), component: 'classic' },
      { subtask_id: 200, action: 'built', arch: 'noarch', build_arch: 'x86_64', filename: 'sluice-zstd-0.9-1.noarch.rpm', name: 'sluice-zstd', evr: '0.9-1', is_source: 0, known: 1, md5: md5.get('sluice-zstd-0.9-1.noarch.rpm'), component: '' },
      { subtask_id: 0, action: 'rm', arch: 'noarch', build_arch: '', filename: 'sluice-old-0.1-alt1.noarch.rpm', name: 'sluice-old', evr: '0.1-alt1', is_source: 0, known: 0, md5: '', component: 'classic' },
      { subtask_id: 0, action: 'rm', arch: 'src', build_arch: '', filename: 'sluice-old-0.1-alt1.src.rpm', name: 'sluice-old', evr: '0.1-alt1', is_source: 1, known: 0, md5: '', component: '' },
    ]);
    // the built packages are in the package tables, with the ids task_packages gives them
    expect(await scalar(store, `SELECT count() AS n FROM ${t('packages')} FINAL WHERE pkg_hash IN (SELECT pkg_hash FROM ${t('task_packages')} WHERE pkg_hash > 0)`)).toBe(5);
    expect(await scalar(store, `SELECT count() AS n FROM ${t('package_hash')} FINAL`)).toBe(5);
  }, 120_000);

  it('packages a repository load already stored are not loaded again by a task', async () => {
    await run(repoPipeline, store, { path: SNAPSHOT, branch: 'sisyphus', date: '2024-01-02' }, { stateDir: path.join(dir, 'state') });
    const before = await rowCount(store, 'package_files');
    const record = await run(taskPipeline, store, { path: TASK }, { stateDir: path.join(dir, 'state') });
    expect(record.errors).toEqual([]);
    expect(await rowCount(store, 'package_files')).toBe(before);
    expect(record.counts.records).toBe(1 + 3 + 2 + 5); // task, subtasks, plan removals, one task_packages row per built file
  }, 120_000);

  it('a truncated built package fails its item, named with its offset; the task and the rest are loaded', async () => {
    const task = path.join(dir, 'task-bad');
    fs.rmSync(task, { recursive: true, force: true });
    copyTree(TASK, task);
    const victim = path.join(task, 'build/200/x86_64/rpms/sluice-bz2-0.9-1.noarch.rpm');
    fs.writeFileSync(victim, fs.readFileSync(victim).subarray(0, 3000));
    const record = await run(taskPipeline, store, { path: task }, { stateDir: path.join(dir, 'state') });
    expect(record.counts.skipped).toBe(1);
    expect(record.errors[0]).toMatchObject({ kind: 'permanent', item: 'build/200/x86_64/rpms/sluice-bz2-0.9-1.noarch.rpm' });
    expect(record.errors[0]!.message).toMatch(/build\/200\/x86_64\/rpms\/sluice-bz2-0\.9-1\.noarch\.rpm: truncated RPM: .* at byte \d+/);
    expect(await scalar(store, `SELECT count() AS n FROM ${t('task_packages')} FINAL`)).toBe(6);
    expect(await scalar(store, `SELECT count() AS n FROM ${t('tasks')} FINAL`)).toBe(1);
  }, 120_000);

  it('a directory without task/id is not a task: the run fails saying so', async () => {
    const record = await run(taskPipeline, store, { path: path.join(TASK, 'gears') }, { stateDir: path.join(dir, 'state') });
    expect(record.status).toBe('failed');
    expect(record.errors[0]!.message).toMatch(/gears\/task\/id: missing; .*gears is not a girar task directory/);
  }, 60_000);
});
