/**
 * One entry of a tree of files, whatever holds the tree: a directory on disk
 * (`sources/files/`), an archive, an ISO or disk image. Every reader of such a tree
 * yields this shape, so a transform written for `files()` works unchanged on the
 * members of a tarball.
 *
 * @example
 * ```ts
 * import type { FileEntry } from '../sources/entry.ts';
 *
 * const describe = (entry: FileEntry) => ({ path: entry.path, size: entry.size, type: entry.type });
 * ```
 */

/** What an entry is. Devices, FIFOs and sockets are `other`. */
export type EntryType = 'file' | 'directory' | 'symlink' | 'other';

export interface FileEntry {
  /** path relative to the root of the tree, `/`-separated, no leading `./` or `/` */
  readonly path: string;
  /**
   * where the entry is: an absolute path on disk for `files()`; readers of containers
   * document their own form (e.g. the archive's path followed by the member's)
   */
  readonly absolutePath: string;
  readonly type: EntryType;
  /** bytes of content; for a symlink that is not followed, the length of the link itself */
  readonly size: number;
  /** the full `st_mode`: file type bits and permission bits (`mode & 0o7777` for the latter) */
  readonly mode: number;
  readonly mtime: Date;
  /** the link's target as stored in the link (not resolved), for symlinks */
  readonly linkTarget?: string;
  /**
   * The entry's bytes, opened when called (not before), as a web-standard stream.
   * Calling it again opens the content again. It may throw at once (e.g. a
   * `PermissionError` for a symlink whose target is outside the allowed roots), and the
   * stream errors if reading fails later (e.g. `EACCES`, the file vanished).
   */
  readonly content: () => ReadableStream<Uint8Array>;
}
