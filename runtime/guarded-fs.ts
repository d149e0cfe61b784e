/**
 * File access that checks the run's `read`/`write` permissions first. Every source
 * and sink opens files through this, so the check cannot be forgotten. What is opened
 * is the real path that was checked (no window for a symlink swap between check and use
 * beyond what the OS allows).
 */
import { createReadStream, createWriteStream, type ReadStream, type WriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Permissions } from './permissions.ts';

export class GuardedFs {
  constructor(private readonly permissions: Permissions) {}

  async stat(target: string) {
    return fs.stat(this.permissions.checkRead(target));
  }

  async lstat(target: string) {
    // lstat looks at the link itself, so check the parent directory's real path
    const real = this.permissions.checkRead(path.dirname(target));
    return fs.lstat(path.join(real, path.basename(target)));
  }

  async readlink(target: string): Promise<string> {
    // like lstat: the link itself must sit under an allowed root, not what it points to
    const real = this.permissions.checkRead(path.dirname(target));
    return fs.readlink(path.join(real, path.basename(target)));
  }

  async readdir(target: string) {
    return fs.readdir(this.permissions.checkRead(target), { withFileTypes: true });
  }

  async readFile(target: string): Promise<Buffer> {
    return fs.readFile(this.permissions.checkRead(target));
  }

  async open(target: string, flags: 'r' = 'r') {
    return fs.open(this.permissions.checkRead(target), flags);
  }

  createReadStream(target: string, options?: { start?: number; end?: number; highWaterMark?: number }): ReadStream {
    return createReadStream(this.permissions.checkRead(target), { highWaterMark: 256 * 1024, ...options });
  }

  createWriteStream(target: string, options?: { flags?: string }): WriteStream {
    return createWriteStream(this.permissions.checkWrite(target), options);
  }

  async mkdir(target: string): Promise<void> {
    await fs.mkdir(this.permissions.checkWrite(target), { recursive: true });
  }

  async appendFile(target: string, data: string | Uint8Array): Promise<void> {
    const real = this.permissions.checkWrite(target);
    await fs.mkdir(path.dirname(real), { recursive: true });
    await fs.appendFile(real, data);
  }

  /**
   * Write a whole file so that a reader sees the old content or the new, never a part:
   * write a temp file beside it, fsync, then rename over the target.
   */
  async writeFileAtomic(target: string, data: string | Uint8Array | AsyncIterable<string | Uint8Array>): Promise<void> {
    const real = this.permissions.checkWrite(target);
    await fs.mkdir(path.dirname(real), { recursive: true });
    const temp = path.join(path.dirname(real), `.${path.basename(real)}.${process.pid}.${Date.now()}.tmp`);
    const handle = await fs.open(temp, 'w');
    try {
      if (typeof data === 'string' || data instanceof Uint8Array) await handle.writeFile(data);
      else for await (const chunk of data) await (typeof chunk === "string" ? handle.write(chunk) : handle.write(chunk));
      await handle.sync();
    } catch (err) {
      await handle.close();
      await fs.rm(temp, { force: true });
      throw err;
    }
    await handle.close();
    await fs.rename(temp, real);
    // make the rename itself durable: fsync the directory that holds the new name
    const dir = await fs.open(path.dirname(real), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
