/**
 * The error every decoder throws (as the error of its output stream) when its input is
 * not valid: corrupt, truncated, of an unsupported variant, or over a limit. It is a
 * `PermanentError`: the same bytes will fail the same way, so the run's error policy
 * (`fail`, `skip`, `dead-letter`) decides what happens to the item.
 *
 * The message names the format, what was being decoded (`name`, e.g. the archive's path)
 * and, where known, the offset in the *compressed* input at which the decoder noticed the
 * problem. Decoders read their input in chunks, so the offset is where the chunk being
 * decoded starts or where the decoder stopped, i.e. at or shortly after the bad byte.
 *
 * @example
 * ```ts
 * import { DecodeError } from './decode-error.ts';
 *
 * throw new DecodeError('xz', 'mirror/Packages.xz', 'compressed data is corrupt', { offset: 4096 });
 * // PermanentError: xz: cannot decode mirror/Packages.xz: compressed data is corrupt (at compressed byte 4096)
 * ```
 */
import { PermanentError } from '../../runtime/errors.ts';

export type CompressionFormat = 'gzip' | 'xz' | 'zstd' | 'bzip2';

export class DecodeError extends PermanentError {
  override name = 'DecodeError';
  readonly format: CompressionFormat;
  /** offset in the compressed input at which the problem was noticed, when known */
  readonly offset?: number;

  constructor(format: CompressionFormat, what: string, problem: string, options: { offset?: number; hint?: string; cause?: unknown } = {}) {
    const at = options.offset === undefined ? '' : ` (at compressed byte ${options.offset})`;
    super(`${format}: cannot decode ${what}: ${problem}${at}`, {
      item: what,
      hint: options.hint ?? 'the file is damaged or incomplete: fetch it again, or check it with the format\'s own tool',
      cause: options.cause,
    });
    this.format = format;
    if (options.offset !== undefined) this.offset = options.offset;
  }
}
