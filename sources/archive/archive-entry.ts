/**
 * A member of an archive, in the `FileEntry` shape every tree reader yields, plus what
 * only archives have. See `archive-entries.ts` for how long `content()` is valid.
 *
 * How the `FileEntry` fields are filled:
 *
 * - `path`: the member name, normalised (`entry-path.ts`); a member of a nested archive
 *   (with `nested: true`) is `<nested archive's path>!<path inside it>`, e.g.
 *   `inner.zip!deep.tar!deep/deep.txt`. `!` is the separator (as in `jar:` URLs); it is
 *   not escaped, so a member whose own name has a `!` is ambiguous in a listing.
 * - `absolutePath`: the archive's absolute path (or the `name` it was given), `!`, the
 *   `path`: `/srv/mirror/nested.tar!inner.zip!note.txt`.
 * - `type`: tar `file`/`contiguous`/hard link → `file`; `directory`; `symlink`;
 *   devices and FIFOs → `other`. zip: from the Unix mode when the zip has one, else a
 *   name ending in `/` is a directory.
 * - `size`: bytes of content. A symlink's size is the length of its target (as `lstat`
 *   gives for a link on disk; `tar -tv` shows 0). A hard link's is 0: its bytes are those
 *   of the member it links to (`hardLinkTarget`), stored earlier in the archive.
 * - `mode`: the full `st_mode`: the file type bits (`S_IFREG` …) added to the permission
 *   bits the archive stores. A zip made on a system without Unix modes gets 0o644 files
 *   and 0o755 directories (0o444 for a DOS read-only file).
 * - `mtime`: the tar header's (with the PAX `mtime` when there is one, to the
 *   sub-second); a zip's Info-ZIP `UT` or NTFS timestamp when present, else its DOS
 *   date-time, which has no time zone and is read as UTC.
 */
import type { PermanentError } from '../../runtime/errors.ts';
import type { FileEntry } from '../entry.ts';

export type ArchiveFormat = 'tar' | 'zip';

export interface ArchiveEntry extends FileEntry {
  /** the archive that holds this member: the top archive's name, then `!` and the path of each nested archive */
  readonly archive: string;
  readonly format: ArchiveFormat;
  /** the member name exactly as stored, before normalisation */
  readonly rawPath: string;
  /** for a tar hard link: the normalised path of the member whose content it shares; `content()` throws */
  readonly hardLinkTarget?: string;
  /** owner, as stored (tar; zip has none) */
  readonly uid?: number;
  readonly gid?: number;
  /**
   * set when this member could not be read: a nested archive that is corrupt, a tar
   * entry type this reader cannot decode (old-GNU sparse), an encrypted zip member.
   * `content()` throws it. The archive's other members are not affected.
   */
  readonly error?: PermanentError;
}

/** `st_mode` file type bits */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
