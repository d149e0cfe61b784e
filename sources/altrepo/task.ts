/**
 * Source: a girar build task directory (ALT's build system), as the ALTRepo uploader's
 * task loader reads it; docs/altrepo.md describes the layout:
 *
 * ```
 * task/{id,state,try,iter,owner,repo,message,depends,test-only}
 * gears/<N>/{dir,package,srpm,tag_name,tag_id,tag_author,userid,sid,copy_repo,rebuild_from}
 * build/<N>/<arch>/{status,srpm/*.src.rpm,rpms/*.rpm}
 * plan/{add-src,add-bin,rm-src,rm-bin}       tab-separated lines
 * ```
 *
 * Items: first one `task` item (id `task <id>`) with the task's row, a row per subtask
 * (with the build status of each arch) and a `task_packages` row per plan entry that has
 * no built file (removals, and additions whose file is not in `build/`); then one
 * `package` item per built file (id its path in the task, bytes its size), for the
 * loader to read. A task without `task/id` or `task/state` is not loaded (the old
 * loader's rule): a `FatalError` naming the file.
 *
 * Plan lines (girar): `add-src` name, evr, file, path, subtask; `add-bin` name, evr,
 * arch, file, path, subtask[, component]; `rm-src` name, evr, file; `rm-bin` name, evr,
 * arch, file[, component].
 *
 * Subtask types, as girar decides them: from `sid` (`<type>:<id>`) when there is one;
 * a subtask with none of `dir`, `srpm`, `package` is deleted; `package` without `dir`
 * is a `copy` (with `copy_repo`) or a `delete`; `rebuild_from` (or `rebuild`) makes a
 * `rebuild`; otherwise `gear` (a `dir`), `srpm` (an `srpm`) or `unknown`.
 *
 * @example
 * ```ts
 * source: (ctx) => taskItems(ctx, { path: ctx.params.path }),
 * ```
 */
import path from 'node:path';
import type { RunContext } from '../../runtime/context.ts';
import { FatalError } from '../../runtime/errors.ts';
import { item, type TaggedItem } from '../../runtime/pipeline.ts';
import type { TaskPackageRow, TaskRow, TaskSubtaskRow } from './tables.ts';

/** The task's own rows. */
export interface TaskInfo {
  readonly task: TaskRow;
  readonly subtasks: readonly TaskSubtaskRow[];
  /** plan entries without a built file */
  readonly planned: readonly TaskPackageRow[];
}

/** A package file the task built. */
export interface TaskPackageFile {
  readonly taskId: number;
  readonly try: number;
  readonly iter: number;
  readonly subtaskId: number;
  readonly arch: string;
  /** absolute path */
  readonly path: string;
  /** path in the task directory, for messages */
  readonly rel: string;
  readonly filename: string;
  /** `add` when the plan adds it, else `built` */
  readonly action: 'add' | 'built';
  readonly component: string;
}

export type TaskItem = { readonly kind: 'task'; readonly info: TaskInfo } | { readonly kind: 'package'; readonly file: TaskPackageFile };

interface PlanEntry {
  name: string;
  evr: string;
  arch: string;
  file: string;
  subtask: number;
  component: string;
}

export async function* taskItems(ctx: RunContext, options: { path: string }): AsyncGenerator<TaggedItem<TaskItem>, void, undefined> {
  const root = path.resolve(options.path);
  const dir = new TaskDir(ctx, root);
  const idText = await dir.text('task/id');
  const state = await dir.text('task/state');
  if (idText === undefined || !/^\d+$/.test(idText)) {
    throw new FatalError(`${path.join(options.path, 'task/id')}: ${idText === undefined ? 'missing' : `"${idText}" is not a task number`}; ${options.path} is not a girar task directory`, { item: options.path });
  }
  if (state === undefined) throw new FatalError(`${path.join(options.path, 'task/state')}: missing; a task of unknown state is not loaded`, { item: options.path });
  const taskId = Number(idText);
  const tryN = Number(await dir.text('task/try')) || 0;
  const iter = Number(await dir.text('task/iter')) || 0;
  const changed = (await dir.mtime('task/state')) ?? 0;
  const task: TaskRow = {
    task_id: taskId,
    try: tryN,
    iter,
    state,
    owner: (await dir.text('task/owner')) ?? '',
    repo: (await dir.text('task/repo')) ?? '',
    changed,
    message: (await dir.text('task/message')) ?? '',
    testonly: (await dir.exists('task/test-only')) ? 1 : 0,
    depends: ((await dir.text('task/depends')) ?? '').split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number),
  };

  // plan
  const plan = {
    addSrc: parsePlan(await dir.text('plan/add-src'), 'add-src'),
    addBin: parsePlan(await dir.text('plan/add-bin'), 'add-bin'),
    rmSrc: parsePlan(await dir.text('plan/rm-src'), 'rm-src'),
    rmBin: parsePlan(await dir.text('plan/rm-bin'), 'rm-bin'),
  };
  const adds = new Map<string, PlanEntry>();
  for (const e of [...plan.addSrc, ...plan.addBin]) adds.set(e.file, e);

  // builds
  const files: TaskPackageFile[] = [];
  const builds = new Map<number, { arch: string; status: string }[]>();
  for (const n of await dir.numbered('build')) {
    for (const arch of (await dir.subdirs(`build/${n}`)).sort(archOrder)) {
      const base = `build/${n}/${arch}`;
      const found: TaskPackageFile[] = [];
      for (const sub of ['srpm', 'rpms']) {
        for (const f of (await dir.files(`${base}/${sub}`)).filter((f) => f.endsWith('.rpm')).sort()) {
          const planned = adds.get(f);
          found.push({
            taskId, try: tryN, iter, subtaskId: n, arch,
            path: path.join(root, base, sub, f),
            rel: `${base}/${sub}/${f}`,
            filename: f,
            action: planned && planned.subtask === n ? 'add' : 'built',
            component: planned?.component ?? '',
          });
        }
      }
      const status = (await dir.text(`${base}/status`)) ?? (found.length ? 'built' : 'failed');
      builds.set(n, [...(builds.get(n) ?? []), { arch, status }]);
      files.push(...found);
    }
  }
  const builtNames = new Set(files.map((f) => f.filename));

  // subtasks
  const subtasks: TaskSubtaskRow[] = [];
  for (const n of await dir.numbered('gears')) {
    const g = (name: string) => dir.text(`gears/${n}/${name}`);
    const [gearDir, pkg, srpm, sid, copyRepo, rebuildFrom, rebuild] = await Promise.all(
      ['dir', 'package', 'srpm', 'sid', 'copy_repo', 'rebuild_from', 'rebuild'].map(g),
    );
    const sidType = sid?.includes(':') ? sid.slice(0, sid.indexOf(':')).trim() : '';
    let type = sidType;
    let deleted = 0;
    let from = '';
    if (!gearDir && !srpm && !pkg) {
      deleted = 1;
      type = 'unknown';
    } else {
      if (pkg && !gearDir) {
        type = copyRepo ? 'copy' : 'delete';
        from = copyRepo ?? '';
      }
      if (rebuildFrom !== undefined || rebuild !== undefined) {
        type = 'rebuild';
        from = rebuildFrom ?? rebuild ?? '';
      }
      if (!type) type = gearDir ? 'gear' : srpm ? 'srpm' : 'unknown';
    }
    const changedAt = Math.max((await dir.mtime(`gears/${n}`)) ?? 0, (await dir.mtime(`gears/${n}/userid`)) ?? 0);
    const arches = builds.get(n) ?? [];
    subtasks.push({
      task_id: taskId,
      subtask_id: n,
      try: tryN,
      iter,
      type,
      deleted,
      dir: gearDir ?? '',
      package: pkg ?? '',
      srpm: srpm ?? '',
      tag_name: (await g('tag_name')) ?? '',
      tag_id: (await g('tag_id')) ?? '',
      tag_author: (await g('tag_author')) ?? '',
      userid: (await g('userid')) ?? '',
      sid: sid?.includes(':') ? sid.slice(sid.indexOf(':') + 1).trim() : sid ?? '',
      pkg_from: from,
      build_arches: arches.map((a) => a.arch),
      build_statuses: arches.map((a) => a.status),
      changed: changedAt,
    });
  }

  const planned: TaskPackageRow[] = [];
  const planRow = (e: PlanEntry, action: 'add' | 'rm'): TaskPackageRow => ({
    task_id: taskId, try: tryN, iter, subtask_id: e.subtask, arch: e.arch, build_arch: '', filename: e.file, action,
    name: e.name, evr: e.evr, is_source: e.arch === 'src' ? 1 : 0, pkg_hash: 0, md5: '', sha256: '', component: e.component,
  });
  for (const e of [...plan.addSrc, ...plan.addBin]) if (!builtNames.has(e.file)) planned.push(planRow(e, 'add'));
  for (const e of [...plan.rmSrc, ...plan.rmBin]) planned.push(planRow(e, 'rm'));

  yield item(`task ${taskId}`, { kind: 'task', info: { task, subtasks, planned } });
  for (const f of files) {
    if (ctx.signal.aborted) return;
    let size = 0;
    try {
      size = (await ctx.fs.stat(f.path)).size;
    } catch {
      // the loader's read says what is wrong
    }
    yield item(f.rel, { kind: 'package', file: f }, { bytes: size });
  }
}

/** x86_64 and i586 first (girar takes a subtask's source package from them), then by name. */
function archOrder(a: string, b: string): number {
  const rank = (x: string) => (x === 'x86_64' ? 0 : x === 'i586' ? 1 : 2);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

function parsePlan(text: string | undefined, kind: 'add-src' | 'add-bin' | 'rm-src' | 'rm-bin'): PlanEntry[] {
  if (!text) return [];
  const out: PlanEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const s = line.split('\t').map((x) => x.trim());
    switch (kind) {
      case 'add-src':
        if (s.length >= 5) out.push({ name: s[0]!, evr: s[1]!, arch: 'src', file: s[2]!, subtask: Number(s[4]) || 0, component: '' });
        break;
      case 'add-bin':
        if (s.length >= 6) out.push({ name: s[0]!, evr: s[1]!, arch: s[2]!, file: s[3]!, subtask: Number(s[5]) || 0, component: s[6] ?? '' });
        break;
      case 'rm-src':
        if (s.length >= 3) out.push({ name: s[0]!, evr: s[1]!, arch: 'src', file: s[2]!, subtask: 0, component: '' });
        break;
      case 'rm-bin':
        if (s.length >= 4) out.push({ name: s[0]!, evr: s[1]!, arch: s[2]!, file: s[3]!, subtask: 0, component: s[4] ?? '' });
        break;
    }
  }
  return out;
}

/** The task directory through the run's permission-checked file system. */
class TaskDir {
  constructor(private readonly ctx: RunContext, private readonly root: string) {}

  private abs(rel: string): string {
    return path.join(this.root, rel);
  }

  /** A small text file, trimmed; undefined when missing. */
  async text(rel: string): Promise<string | undefined> {
    try {
      return (await this.ctx.fs.readFile(this.abs(rel))).toString('utf8').trim();
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async exists(rel: string): Promise<boolean> {
    try {
      await this.ctx.fs.stat(this.abs(rel));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  /** mtime in Unix seconds; undefined when missing. */
  async mtime(rel: string): Promise<number | undefined> {
    try {
      return Math.floor((await this.ctx.fs.stat(this.abs(rel))).mtimeMs / 1000);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  private async list(rel: string) {
    try {
      return await this.ctx.fs.readdir(this.abs(rel));
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
  }

  async subdirs(rel: string): Promise<string[]> {
    return (await this.list(rel)).filter((d) => d.isDirectory()).map((d) => d.name);
  }

  async files(rel: string): Promise<string[]> {
    return (await this.list(rel)).filter((d) => d.isFile()).map((d) => d.name);
  }

  /** Subdirectories named by a number, in numeric order. */
  async numbered(rel: string): Promise<number[]> {
    return (await this.subdirs(rel)).filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
