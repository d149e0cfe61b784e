/**
 * A file of an image, in the `FileEntry` shape every tree reader yields, plus what
 * images have. How the `FileEntry` fields are filled:
 *
 * - `path`: the path inside its layer, prefixed by the layer and `!` when the entry is
 *   in a nested image: `live!usr/bin/bash` is `usr/bin/bash` of the squashfs `live` at
 *   the root of the ISO; `p1!etc/os-release` is in the disk's first partition. The top
 *   image's own entries have no prefix. (As for archives, `!` is not escaped.)
 * - `absolutePath`: the image file's absolute path, `!`, the `path`.
 * - `type`, `size`, `mode`, `mtime`, `linkTarget`: as the format stores them. An ISO
 *   without Rock Ridge has no modes: directories get 0o555, files 0o444 (as Linux
 *   mounts it). A symlink's size is the length of its target.
 * - `content()`: opens the file's bytes; it can be called again. Valid while the layer
 *   is open: until the generator moves past the layer, or, for entries held with
 *   `holdEntry` (the `image()` source holds each item until it is acknowledged), until
 *   they are released.
 */
import type { PermanentError } from '../../runtime/errors.ts';
import type { FileEntry } from '../entry.ts';
import type { BlockDevice } from './block-device.ts';

export interface ImageEntry extends FileEntry {
  /** the top image (its path, or the name it was given) */
  readonly image: string;
  /** '' for the top image's own files; else the nested image's path (`live`, `live!boot.img`, `p1`) */
  readonly layer: string;
  /** the path inside the layer */
  readonly innerPath: string;
  /** the format of the layer the entry is in: `iso9660`, `squashfs`, `ext4` … */
  readonly format: string;
  readonly uid?: number;
  readonly gid?: number;
  readonly nlink?: number;
  readonly inode?: number;
  readonly xattrs?: Readonly<Record<string, Buffer>>;
  /** random access to the content, when it is stored contiguously (an ISO file) */
  readonly device?: () => BlockDevice;
  /** this entry could not be read; `content()` throws it */
  readonly error?: PermanentError;
}

/** What is known about one layer (the top image, a nested image, a partition). */
export interface LayerInfo {
  /** '' for the top image */
  readonly layer: string;
  /** the format: iso9660, squashfs, ext2/ext3/ext4, gpt, mbr, qcow2, xz … */
  readonly format: string;
  /** bytes of the layer's device */
  readonly size: number;
  /** the format's own metadata (volume id, dates, compression, partitions …) */
  readonly info: Readonly<Record<string, unknown>>;
}
