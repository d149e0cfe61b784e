/**
 * Spooling: an inner image that needs random access but arrives as a stream (a squashfs
 * inside a squashfs, an `.img.xz`, an rpmdb inside a tar) is copied to a private temp
 * file (mode 0600, in its own `mkdtemp` directory) and read from there.
 *
 * Every spool of one top image counts against one `DiskBudget` (default 8 GiB): a spool
 * that would pass it stops with an `ImageError` naming the image, before or while
 * copying. A spool's file is removed when it is closed (the reader is done with it, on
 * success or failure), and any left when the process exits (SIGTERM included: the
 * runner stops the run, the readers' `finally` blocks close them; an `exit` hook
 * removes the rest synchronously).
 *
 * @example
 * ```ts
 * const budget = new DiskBudget(2 * 2 ** 30);
 * const device = await spool(entry.content(), { name: 'live!inner.img', budget, signal });
 * try { … } finally { await device.close(); }
 * ```
 */
import { rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SluiceError } from '../../runtime/errors.ts';
import { FileDevice, type BlockDevice } from './block-device.ts';
import { ImageError } from './image-error.ts';

export const DEFAULT_SPOOL_BUDGET = 8 * 2 ** 30;

export class DiskBudget {
  used = 0;
  constructor(readonly limit: number = DEFAULT_SPOOL_BUDGET) {}
  take(n: number, name: string): void {
    if (this.used + n > this.limit) {
      throw new ImageError(name, 'spool', `spooling needs more than the ${this.limit}-byte disk budget (${this.used} bytes in use)`, undefined, {
        hint: 'raise the spool budget (spoolBudget) or point tempDir at a larger disk',
      });
    }
    this.used += n;
  }
  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

const live = new Set<string>();
let hooked = false;
function track(dir: string): void {
  live.add(dir);
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const d of live) rmSync(d, { recursive: true, force: true });
    });
  }
}

/** How many spool directories exist right now (for tests). */
export function liveSpools(): number {
  return live.size;
}

export interface SpoolOptions {
  readonly name: string;
  readonly budget: DiskBudget;
  readonly tempDir?: string;
  readonly signal?: AbortSignal;
  /** the size the content should have, when known: checked against the budget before copying */
  readonly expectedSize?: number;
}

/** Copy `stream` to a private temp file; the device removes it when closed. */
export async function spool(stream: ReadableStream<Uint8Array>, options: SpoolOptions): Promise<BlockDevice> {
  const { name, budget } = options;
  const dir = await fs.mkdtemp(path.join(options.tempDir ?? os.tmpdir(), 'sluice-image-'));
  track(dir);
  const file = path.join(dir, 'spool');
  let taken = 0;
  const cleanup = async () => {
    budget.give(taken);
    taken = 0;
    await fs.rm(dir, { recursive: true, force: true });
    live.delete(dir);
  };
  let handle: fs.FileHandle | undefined;
  try {
    if (options.expectedSize !== undefined) {
      budget.take(options.expectedSize, name);
      taken = options.expectedSize;
    }
    handle = await fs.open(file, 'w+', 0o600);
    let written = 0;
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      options.signal?.throwIfAborted();
      written += chunk.length;
      if (written > taken) {
        budget.take(written - taken, name);
        taken = written;
      }
      await handle.write(chunk);
    }
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await cleanup();
    if (err instanceof SluiceError || options.signal?.aborted) throw err;
    throw new ImageError(name, 'spool', `cannot copy the image to a temp file to read it: ${err instanceof Error ? err.message : String(err)}`, undefined, { cause: err });
  }
  const device = await FileDevice.openOwn(name, handle);
  return {
    name,
    size: device.size,
    read: (position, length) => device.read(position, length),
    close: async () => {
      await device.close();
      await cleanup();
    },
  };
}
