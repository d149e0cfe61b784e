/**
 * The error every image reader throws for bad image bytes: truncated, corrupt, a loop,
 * a size or count past what the reader accepts, an unsupported variant. It names the
 * image (its path, or `outer.iso!live` for a nested one), what is wrong and the byte
 * offset in that image where it was found. A `PermanentError`: the same bytes fail the
 * same way, so the run's error policy decides.
 *
 * @example
 * ```ts
 * throw new ImageError('live.iso!live', 'squashfs', 'inode table block is truncated', 1234);
 * // squashfs: live.iso!live: inode table block is truncated (at byte 1234)
 * ```
 */
import { PermanentError } from '../../runtime/errors.ts';

export class ImageError extends PermanentError {
  override name = 'ImageError';
  readonly image: string;
  readonly format: string;
  readonly offset: number | undefined;
  constructor(image: string, format: string, problem: string, offset?: number, options: { hint?: string; cause?: unknown } = {}) {
    const at = offset === undefined ? '' : ` (at byte ${offset})`;
    super(`${format}: ${image}: ${problem}${at}`, {
      item: image,
      hint: options.hint ?? 'the image is damaged, truncated or not what it claims to be; check it with the format\'s own tool',
      cause: options.cause,
    });
    this.image = image;
    this.format = format;
    this.offset = offset;
  }
}
