/**
 * What each image format reader yields for one file of its tree, before
 * `image-entries.ts` names it within the nesting (layer, `!` paths) and makes it an
 * `ImageEntry`. Format readers fill what their format has; the rest stays unset.
 */
import type { PermanentError } from '../../runtime/errors.ts';
import type { EntryType } from '../entry.ts';
import type { BlockDevice } from './block-device.ts';

export interface TreeNode {
  /** inside the image: relative, `/`-separated */
  readonly path: string;
  readonly type: EntryType;
  readonly size: number;
  /** full st_mode (type bits + permission bits) */
  readonly mode: number;
  readonly mtime: Date;
  readonly linkTarget?: string;
  readonly uid?: number;
  readonly gid?: number;
  readonly nlink?: number;
  /** the inode number, where the format has one (hard links share it) */
  readonly inode?: number;
  readonly xattrs?: Readonly<Record<string, Buffer>>;
  /** the content; may be called any number of times while the image is open */
  readonly open?: () => ReadableStream<Uint8Array>;
  /** random access to the content, when the format stores it contiguously (read in place) */
  readonly device?: () => BlockDevice;
  /** this entry cannot be read (a corrupt directory, an unsupported compression); the others go on */
  readonly error?: PermanentError;
}

/** `st_mode` type bits */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export function typeOfMode(mode: number): EntryType {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'directory';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}

/** Limits every reader applies against absurd input. */
export interface ImageLimits {
  /** most entries one image may list; default 20 million */
  readonly maxEntries: number;
  /** deepest directory nesting; default 512 */
  readonly maxDepth: number;
  /** largest directory (bytes of directory records) read at once; default 64 MiB */
  readonly maxDirectoryBytes: number;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = Object.freeze({
  maxEntries: 20_000_000,
  maxDepth: 512,
  maxDirectoryBytes: 64 * 2 ** 20,
});
