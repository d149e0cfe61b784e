/**
 * Reading the package files the loaders decided to load: at most N at once for the
 * whole run (`ReadSlots`), each checked against what the snapshot said about it.
 *
 * Why a run-wide bound and not `mapConcurrent`: the runner runs the transform once per
 * item, so an operator's concurrency bound would hold per item, not per run; the
 * loaders keep many items in flight (so that `seen` lookups and inserts are batched)
 * but must not open that many files.
 *
 * Checks of a listed package (see `readListedPackage`): the file's MD5 equals the
 * list's, its SHA-256 equals `files/list/<arch>.hash.xz`'s when there is one, and the
 * `pkg_hash` of its headers equals the one computed from the list's header. A mismatch is
 * a `PermanentError` naming the file. A truncated or corrupt file fails in the RPM
 * reader with the file and the byte offset.
 *
 * @example
 * ```ts
 * const slots = new ReadSlots(4);
 * const pkg = await slots.run(() => readListedPackage(ctx, listed));
 * ```
 */
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { RunContext } from '../../runtime/context.ts';
import { FatalError, PermanentError } from '../../runtime/errors.ts';
import { pkgHash, readPackage, type ByteSource, type RpmPackage } from '../rpm/index.ts';
import type { ListedPackage } from './snapshot.ts';

/** A run-wide bound on work in progress: `run(fn)` waits for a free slot. */
export class ReadSlots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly size: number) {
    if (!(Number.isInteger(size) && size >= 1)) throw new FatalError(`the number of packages read at once must be a positive integer, got ${String(size)}`);
    this.free = size;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

export interface ReadOptions {
  /** check SHA1HEADER, SIGMD5 and the payload digest too (sources/rpm's `verify`); default false */
  readonly verify?: boolean;
  /** how `source` names the file in errors; default the path as found */
  readonly name?: (file: string) => string;
}

/** Open and read a listed package, checking it against its list (and the hash list). */
export async function readListedPackage(ctx: RunContext, listed: ListedPackage, options: ReadOptions = {}): Promise<RpmPackage> {
  const { file, handle } = await openFirst(ctx, listed.candidates);
  const name = options.name ? options.name(file) : file;
  const pkg = await readPackage(fileChunks(handle), { source: name, verify: options.verify ?? false });
  const got = pkg.digests;
  if (got.md5 !== listed.md5) {
    throw new PermanentError(`${name}: MD5 is ${got.md5}, but ${listed.list} says ${listed.md5}`, { item: name, hint: 'the file changed after the package list was made: take the snapshot again' });
  }
  if (listed.sha256 !== undefined && got.sha256 !== listed.sha256) {
    throw new PermanentError(`${name}: SHA-256 is ${got.sha256}, but files/list/${listed.arch}.hash.xz says ${listed.sha256}`, { item: name, hint: 'the file changed after the snapshot was made' });
  }
  const hash = pkgHash(pkg).toString();
  if (listed.pkgHash && hash !== listed.pkgHash) {
    throw new PermanentError(`${name}: its headers give pkg_hash ${hash}, but its entry in ${listed.list} gives ${listed.pkgHash}`, { item: name, hint: 'the package list does not match the package: regenerate it' });
  }
  return pkg;
}

/** Read a package from a stream (an archive member). */
export function readPackageFrom(stream: ByteSource, name: string, options: ReadOptions = {}): Promise<RpmPackage> {
  return readPackage(stream, { source: name, verify: options.verify ?? false });
}

/** Read a package file on disk (through the run's permission-checked file system). */
export async function readPackageFile(ctx: RunContext, file: string, name: string, options: ReadOptions = {}): Promise<RpmPackage> {
  return readPackage(fileChunks(await ctx.fs.open(file)), { source: name, verify: options.verify ?? false });
}

/** Files up to this size are read with one read call; bigger ones in chunks of this size. */
const WHOLE_READ = 4 * 1024 * 1024;

/**
 * A file's bytes through an open handle (closed at the end, or when the reader stops):
 * one read for a file of up to 4 MiB, 4 MiB chunks beyond. Fewer thread-pool round
 * trips than a read stream's 256 KiB reads, which on a busy machine cost more than the
 * reads themselves; memory stays one chunk per file being read.
 */
async function* fileChunks(handle: FileHandle): AsyncGenerator<Buffer, void, undefined> {
  try {
    const { size } = await handle.stat();
    let position = 0;
    for (;;) {
      // a file that grew since stat is read to its end all the same
      const want = Math.max(1, Math.min(WHOLE_READ, size - position || WHOLE_READ));
      const buffer = Buffer.allocUnsafe(want);
      let filled = 0;
      while (filled < want) {
        const { bytesRead } = await handle.read(buffer, filled, want - filled, position + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled === 0) return;
      position += filled;
      yield buffer.subarray(0, filled);
      if (filled < want) return;
    }
  } finally {
    await handle.close();
  }
}

async function openFirst(ctx: RunContext, candidates: readonly string[]): Promise<{ file: string; handle: FileHandle }> {
  for (const file of candidates) {
    try {
      return { file, handle: await ctx.fs.open(file) };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
  }
  const shown = candidates.map((c) => path.relative(process.cwd(), c) || c);
  throw new PermanentError(`package file not found: looked for ${shown.join(' and ')}`, {
    item: shown[0],
    hint: 'the snapshot lists a package it does not have; take the snapshot again',
  });
}
