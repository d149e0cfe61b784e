/**
 * Random access to the bytes of an image: a file on disk, a partition of a disk, a file
 * inside an ISO whose extent is contiguous, a qcow2's virtual disk, a spooled temp file.
 * Every image reader takes a `BlockDevice`, so readers nest without copying: a squashfs
 * inside an ISO is read through a `sliceDevice` of the ISO's device, in place.
 *
 * `read(position, length)` gives exactly `length` bytes or throws an `ImageError`
 * naming the device and the offset (never a short read that a parser could mistake for
 * data). One read is at most `MAX_READ` bytes, so a corrupt length field cannot make a
 * reader allocate gigabytes.
 *
 * @example
 * ```ts
 * const disk = await fileDevice(ctx, 'images/disk.img');
 * try {
 *   const sector = await disk.read(512, 512);
 * } finally {
 *   await disk.close();
 * }
 * ```
 */
import type { FileHandle } from 'node:fs/promises';
import type { RunContext } from '../../runtime/context.ts';
import { ImageError } from './image-error.ts';

/** the largest single read a reader may ask for: 64 MiB */
export const MAX_READ = 64 * 2 ** 20;

export interface BlockDevice {
  /** the image in messages: a path, `outer.iso!live`, `disk.qcow2#p1` */
  readonly name: string;
  /** bytes */
  readonly size: number;
  /** exactly `length` bytes at `position`; an `ImageError` past the end */
  read(position: number, length: number): Promise<Buffer>;
  /** release what the device holds (a file handle); a no-op for views of another device */
  close(): Promise<void>;
}

/** Check a read against a device's size; throws the `ImageError` readers rely on. */
export function checkRange(device: { name: string; size: number }, format: string, position: number, length: number): void {
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0) {
    throw new ImageError(device.name, format, `invalid read of ${length} bytes at ${position}`, position);
  }
  if (length > MAX_READ) {
    throw new ImageError(device.name, format, `a single read of ${length} bytes is larger than the ${MAX_READ}-byte limit (a corrupt size field?)`, position);
  }
  if (position + length > device.size) {
    throw new ImageError(device.name, format, `read of ${length} bytes at ${position} goes past the end of the ${device.size}-byte image (truncated?)`, position);
  }
}

/** A file on disk, opened through the run's permission-checked `ctx.fs`. Counts the bytes read (`bytesRead`). */
export class FileDevice implements BlockDevice {
  bytesRead = 0;
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly handle: FileHandle,
  ) {}

  static async open(ctx: Pick<RunContext, 'fs'>, file: string, name = file): Promise<FileDevice> {
    const handle = await ctx.fs.open(file);
    try {
      const stat = await handle.stat();
      if (!stat.isFile() && !stat.isBlockDevice()) throw new ImageError(name, 'image', 'not a regular file');
      return new FileDevice(name, stat.size, handle);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** a file opened without permission checks: for temp files sluice made itself */
  static async openOwn(name: string, handle: FileHandle): Promise<FileDevice> {
    const stat = await handle.stat();
    return new FileDevice(name, stat.size, handle);
  }

  async read(position: number, length: number): Promise<Buffer> {
    checkRange(this, 'image', position, length);
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(buf, done, length - done, position + done);
      if (bytesRead === 0) throw new ImageError(this.name, 'image', `the file ended at ${position + done} while reading (it shrank?)`, position + done);
      done += bytesRead;
    }
    this.bytesRead += length;
    return buf;
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/** Bytes in memory as a device (tests, small spooled members). */
export class BufferDevice implements BlockDevice {
  constructor(
    readonly name: string,
    private readonly bytes: Uint8Array,
  ) {}
  get size(): number {
    return this.bytes.length;
  }
  async read(position: number, length: number): Promise<Buffer> {
    checkRange(this, 'image', position, length);
    return Buffer.from(this.bytes.subarray(position, position + length));
  }
  async close(): Promise<void> {}
}

/** `size` bytes of `parent` from `offset`: a partition, a contiguous file in an ISO. */
export function sliceDevice(parent: BlockDevice, offset: number, size: number, name: string): BlockDevice {
  if (offset < 0 || size < 0 || offset + size > parent.size) {
    throw new ImageError(parent.name, 'image', `${name} (${size} bytes at ${offset}) reaches past the end of the ${parent.size}-byte image`, offset);
  }
  return {
    name,
    size,
    read: (position, length) => {
      checkRange({ name, size }, 'image', position, length);
      return parent.read(offset + position, length);
    },
    close: async () => {},
  };
}

/** What `deviceStream` reads from: a device, or any ranges of one (a multi-extent file). */
export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

/**
 * A web stream of `ranges` of `device`, read lazily in chunks of `chunkSize` (256 KiB):
 * the content of a file stored contiguously (or in a few extents).
 */
export function deviceStream(device: BlockDevice, ranges: readonly ByteRange[], chunkSize = 256 * 1024): ReadableStream<Uint8Array> {
  let index = 0;
  let done = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        while (index < ranges.length && done >= ranges[index]!.length) {
          index++;
          done = 0;
        }
        if (index >= ranges.length) {
          controller.close();
          return;
        }
        const range = ranges[index]!;
        const n = Math.min(chunkSize, range.length - done);
        const chunk = await device.read(range.offset + done, n);
        done += n;
        controller.enqueue(chunk);
      },
    },
    { highWaterMark: 1 },
  );
}
