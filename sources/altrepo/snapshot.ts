/**
 * Source: the packages of an ALT repository snapshot on disk, one item per package as
 * its package list describes it, without opening any package file.
 *
 * Layout (../../docs/altrepo.md has the whole of it):
 *
 * ```
 * <root>/<arch>/base/release                  Components: and checksum sections
 * <root>/<arch>/base/pkglist.<comp>.xz        bare headers of <arch>'s binary packages
 * <root>/<arch>/base/srclist.<comp>.xz        bare headers of the source packages
 * <root>/<arch>/RPMS.<comp>/<file>.rpm        the binary packages (often links into files/)
 * <root>/<arch>/SRPMS.<comp>/<file>.src.rpm   the source packages (idem)
 * <root>/files/<arch>/RPMS/, files/SRPMS/     the package files themselves
 * <root>/files/list/<arch>.hash.xz, src.hash.xz   sha256 of every package file
 * ```
 *
 * Arches are the directories of `<root>` that have a `base/` (sorted by name; `files`
 * is not an arch). An arch's components come from `Components:` in its release file (or,
 * without one, from the `pkglist.*` files in `base/`). Each list is checked against its
 * sum in the release file (BLAKE2b, else MD5) before it is read. Source lists are the
 * same in every arch of a snapshot: each component's `srclist` is read once, from the
 * first arch (by name) that has it, and its packages are listed under arch `src`.
 *
 * Items: id the package's path under `<root>` (`x86_64/RPMS.classic/bash-5.2-alt1.x86_64.rpm`),
 * data a `ListedPackage`, bytes the package file's size from the list. A list that
 * cannot be read (missing, sum mismatch, corrupt from some header on) is one error item
 * named after the list (what came before it is yielded); a list entry without file name
 * or MD5 is an error item of its own. The run's `onError` policy decides; other lists go on.
 *
 * @example
 * ```ts
 * source: (ctx) => snapshotPackages(ctx, { root: ctx.params.path }),
 * ```
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { RunContext } from '../../runtime/context.ts';
import { PermanentError, SluiceError } from '../../runtime/errors.ts';
import { item, type TaggedItem } from '../../runtime/pipeline.ts';
import { readHashList } from './hash-list.ts';
import { pkglistEntries, type PkglistEntry } from './pkglist.ts';
import { parseRelease, type Release } from './release.ts';

/** A package of a snapshot, as its list describes it. */
export interface ListedPackage {
  /** the arch directory it is listed in; `src` for source packages */
  readonly arch: string;
  readonly component: string;
  readonly filename: string;
  /** where the file may be, in order (absolute paths): `<arch>/RPMS.<comp>/`, then `files/…` */
  readonly candidates: readonly string[];
  /** from the list: hex */
  readonly md5: string;
  readonly blake2b: string;
  /** from `files/list/<arch>.hash.xz`, when the snapshot has it */
  readonly sha256: string | undefined;
  readonly size: number;
  /** ALT's package id computed from the list's header, decimal; '' when the header cannot give it (genpkglist's entries) */
  readonly pkgHash: string;
  /** the list it came from, relative to the root */
  readonly list: string;
}

export interface SnapshotOptions {
  readonly root: string;
}

const LIST_SUFFIXES = ['.xz', '', '.bz2', '.gz', '.zst'];

/** True when `root` looks like a snapshot: some `<arch>/base/` holds a package list or a release file. */
export async function isSnapshot(ctx: RunContext, root: string): Promise<boolean> {
  return (await snapshotArches(ctx, root)).length > 0;
}

async function snapshotArches(ctx: RunContext, root: string): Promise<{ arch: string; base: string[] }[]> {
  const out: { arch: string; base: string[] }[] = [];
  const entries = await ctx.fs.readdir(root);
  for (const e of entries.map((d) => d.name).sort()) {
    if (e === 'files') continue;
    let names: string[];
    try {
      names = (await ctx.fs.readdir(path.join(root, e, 'base'))).map((d) => d.name);
    } catch {
      continue;
    }
    if (names.some((n) => n === 'release' || /^(pkg|src)list\./.test(n))) out.push({ arch: e, base: names });
  }
  return out;
}

export async function* snapshotPackages(ctx: RunContext, options: SnapshotOptions): AsyncGenerator<TaggedItem<ListedPackage>, void, undefined> {
  const root = path.resolve(options.root);
  const arches = await snapshotArches(ctx, root);
  const sourcesDone = new Set<string>();
  const hashLists = new HashLists(ctx, root);
  for (const { arch, base } of arches) {
    if (ctx.signal.aborted) return;
    let release: Release | undefined;
    if (base.includes('release')) {
      release = parseRelease((await ctx.fs.readFile(path.join(root, arch, 'base', 'release'))).toString('utf8'));
    }
    const detected = (kind: string) => [...new Set(base.flatMap((n) => {
      const m = new RegExp(`^${kind}\\.(.+?)(\\.xz|\\.bz2|\\.gz|\\.zst)?$`).exec(n);
      return m ? [m[1]!] : [];
    }))].sort();
    const components = release?.components.length ? release.components : detected('pkglist');
    for (const component of components) {
      yield* listItems(ctx, { root, arch, listArch: arch, component, kind: 'pkglist', base, release, hashLists });
    }
    const sourceComponents = release?.components.length ? release.components.filter((c) => findList(base, 'srclist', c)) : detected('srclist');
    for (const component of sourceComponents) {
      if (sourcesDone.has(component)) continue;
      sourcesDone.add(component);
      yield* listItems(ctx, { root, arch: 'src', listArch: arch, component, kind: 'srclist', base, release, hashLists });
    }
  }
}

function findList(base: readonly string[], kind: string, component: string): string | undefined {
  for (const suffix of LIST_SUFFIXES) {
    const name = `${kind}.${component}${suffix}`;
    if (base.includes(name)) return name;
  }
  return undefined;
}

interface ListPlace {
  root: string;
  /** the packages' arch: the arch directory, or `src` */
  arch: string;
  /** the arch directory the list is in */
  listArch: string;
  component: string;
  kind: 'pkglist' | 'srclist';
  base: readonly string[];
  release: Release | undefined;
  hashLists: HashLists;
}

async function* listItems(ctx: RunContext, place: ListPlace): AsyncGenerator<TaggedItem<ListedPackage>, void, undefined> {
  const { root, arch, listArch, component, kind } = place;
  const name = findList(place.base, kind, component);
  const rel = `${listArch}/base/${name ?? `${kind}.${component}.xz`}`;
  if (!name) {
    if (kind === 'pkglist') yield listError(rel, new PermanentError(`${rel}: the release file lists component ${component}, but there is no ${kind}.${component}[.xz] in ${listArch}/base`, { item: rel, hint: 'the snapshot is incomplete' }));
    return;
  }
  const file = path.join(root, rel);
  try {
    await checkListSum(ctx, file, rel, place.release?.sums.get(`base/${name}`));
  } catch (err) {
    if (ctx.signal.aborted || (err instanceof SluiceError && err.kind === 'fatal')) throw err;
    yield listError(rel, err);
    return;
  }
  const sums = await place.hashLists.get(arch);
  const candidates = (filename: string) =>
    kind === 'srclist'
      ? [path.join(root, listArch, `SRPMS.${component}`, filename), path.join(root, 'files', 'SRPMS', filename)]
      : [path.join(root, arch, `RPMS.${component}`, filename), path.join(root, 'files', arch, 'RPMS', filename)];
  try {
    for await (const entry of pkglistEntries(ctx.fs.createReadStream(file), { source: rel })) {
      if (ctx.signal.aborted) return;
      const places = candidates(entry.filename || '(no file name)');
      const id = path.relative(root, places[0]!);
      const listed = listedOf(entry, { arch, component, candidates: places, sha256: sums?.get(entry.filename), list: rel });
      yield entry.error ? item(id, listed, { bytes: 0, error: entry.error }) : item(id, listed, { bytes: entry.size });
    }
  } catch (err) {
    if (ctx.signal.aborted || (err instanceof SluiceError && err.kind === 'fatal')) throw err;
    yield listError(rel, err);
  }
}

function listedOf(entry: PkglistEntry, where: { arch: string; component: string; candidates: string[]; sha256: string | undefined; list: string }): ListedPackage {
  return {
    arch: where.arch,
    component: where.component,
    filename: entry.filename,
    candidates: where.candidates,
    md5: entry.md5,
    blake2b: entry.blake2b,
    sha256: where.sha256,
    size: entry.size,
    pkgHash: entry.pkgHash,
    list: where.list,
  };
}

function listError(rel: string, err: unknown): TaggedItem<ListedPackage> {
  const error = err instanceof SluiceError ? err : new PermanentError(`${rel}: ${err instanceof Error ? err.message : String(err)}`, { item: rel, cause: err });
  const data: ListedPackage = { arch: '', component: '', filename: '', candidates: [], md5: '', blake2b: '', sha256: undefined, size: 0, pkgHash: '', list: rel };
  return item(rel, data, { bytes: 0, error });
}

/** Check a list file against the release's sum for it (BLAKE2b, else MD5); no sum, no check. */
async function checkListSum(ctx: RunContext, file: string, rel: string, sums: { md5?: string; blake2b?: string; size?: number } | undefined): Promise<void> {
  if (!sums || (!sums.blake2b && !sums.md5)) return;
  const algorithm = sums.blake2b ? 'blake2b512' : 'md5';
  const want = sums.blake2b ?? sums.md5!;
  const hash = createHash(algorithm);
  let size = 0;
  for await (const chunk of ctx.fs.createReadStream(file)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  const got = hash.digest('hex');
  if (got !== want) {
    throw new PermanentError(`${rel}: ${sums.blake2b ? 'BLAKE2b' : 'MD5'} is ${got}, the release file says ${want} (${size} bytes; the release says ${sums.size ?? '?'})`, {
      item: rel,
      hint: 'the list changed after the release file was written, or is corrupt: take the snapshot again',
    });
  }
}

/** `files/list/<arch>.hash.xz`, read when first asked for; one arch's map at a time. */
class HashLists {
  private current: { arch: string; sums: Promise<Map<string, string> | undefined> } | undefined;
  constructor(private readonly ctx: RunContext, private readonly root: string) {}

  get(arch: string): Promise<Map<string, string> | undefined> {
    if (this.current?.arch !== arch) this.current = { arch, sums: this.read(arch) };
    return this.current.sums;
  }

  private async read(arch: string): Promise<Map<string, string> | undefined> {
    const rel = `files/list/${arch}.hash.xz`;
    const file = path.join(this.root, rel);
    try {
      await this.ctx.fs.stat(file);
    } catch {
      return undefined;
    }
    try {
      return await readHashList(this.ctx.fs.createReadStream(file), { source: rel });
    } catch (err) {
      this.ctx.log.warn(`${rel} cannot be read, packages of ${arch} are not checked against it: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  }
}
