/**
 * Limits against decompression bombs, and the running count that enforces them.
 *
 * What is counted ("produced" bytes): every byte that comes out of a decompressor (the
 * gzip/xz/zstd/bzip2 stream around a tar, at every nesting level), every byte read from
 * a zip member (stored or deflated, so overlapping-member bombs count each time), and the
 * zeros a sparse tar member expands to. Bytes skipped over still count: a consumer that
 * ignores a 10 GB member still makes the decoder work through it.
 *
 * What is compared:
 * - `maxTotalBytes`: produced bytes for the whole archive, all levels together;
 * - `maxRatio`: produced bytes per byte of the archive itself (bytes read from the
 *   archive file for tar, whose reading is sequential; the file's size for zip, read at
 *   random). Checked once `ratioFloorBytes` have been produced, so that small, very
 *   compressible members (a few MB of zeros) pass.
 *
 * Either one exceeded is an `ArchiveLimitError` (a `PermanentError`) naming the archive
 * and the member being read; the archive is not read further.
 *
 * The defaults: a ratio of 1000 is well above real data (text and logs 5–20, JSON and
 * SQL dumps up to ~100, disk images mostly zeros a few hundred) and at deflate's own
 * ceiling (1032), so a zip bomb trips it; xz and bzip2 bombs go far higher. 256 GiB in
 * all leaves room for the large mirrors sluice reads (streaming keeps memory constant
 * whatever the size) while stopping an endless one.
 *
 * @example
 * ```ts
 * archiveEntries(stream, { name: 'upload.tar.xz', limits: { maxTotalBytes: 10 * 2 ** 30, maxRatio: 200 } });
 * ```
 */
import { PermanentError } from '../../runtime/errors.ts';

export interface ArchiveLimits {
  /** most bytes produced (decompressed) for one archive, all nesting levels together; default 256 GiB */
  readonly maxTotalBytes: number;
  /** most bytes produced per byte of the archive; default 1000 */
  readonly maxRatio: number;
  /** the ratio is checked only once this many bytes have been produced; default 64 MiB */
  readonly ratioFloorBytes: number;
  /** deepest archive-in-archive opened with `nested: true` (1 = members of the top archive's direct members); default 8 */
  readonly maxDepth: number;
}

export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = Object.freeze({
  maxTotalBytes: 256 * 2 ** 30,
  maxRatio: 1000,
  ratioFloorBytes: 64 * 2 ** 20,
  maxDepth: 8,
});

export class ArchiveLimitError extends PermanentError {
  override name = 'ArchiveLimitError';
  readonly archive: string;
  readonly entry: string | undefined;
  readonly limit: 'maxTotalBytes' | 'maxRatio';
  constructor(archive: string, entry: string | undefined, limit: 'maxTotalBytes' | 'maxRatio', detail: string) {
    const where = entry === undefined ? archive : `${archive}, member ${entry}`;
    super(`archive bomb guard: ${where}: ${detail}`, {
      item: archive,
      hint: `if this archive is trusted, raise limits.${limit} for it`,
    });
    this.archive = archive;
    this.entry = entry;
    this.limit = limit;
  }
}

/** The counts for one top archive, shared by all its nesting levels. */
export class Budget {
  /** throw the limit error if one was hit (a consumer may have swallowed it) */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /** bytes of the archive itself read so far (or its size, for a zip read at random) */
  inputOf: () => number = () => 0;
  producedBytes = 0;

  constructor(readonly archive: string, readonly limits: ArchiveLimits) {}

  /** the limit error, once one was thrown: the archive is not read further */
  failure: ArchiveLimitError | undefined;

  /** count `n` produced bytes; throws ArchiveLimitError when a limit is passed */
  addProduced(n: number, archive: string, entry: string | undefined): void {
    if (this.failure) throw this.failure;
    this.producedBytes += n;
    const { maxTotalBytes, maxRatio, ratioFloorBytes } = this.limits;
    if (this.producedBytes > maxTotalBytes) {
      throw (this.failure = new ArchiveLimitError(archive, entry, 'maxTotalBytes', `more than ${bytes(maxTotalBytes)} decompressed (limits.maxTotalBytes)`));
    }
    if (this.producedBytes > ratioFloorBytes && this.producedBytes > maxRatio * Math.max(1, this.inputOf())) {
      throw (this.failure = new ArchiveLimitError(
        archive,
        entry,
        'maxRatio',
        `${bytes(this.producedBytes)} decompressed from ${bytes(this.inputOf())} of archive, more than ${maxRatio}x (limits.maxRatio)`,
      ));
    }
  }
}

function bytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} bytes`;
}
