/**
 * A real rsync daemon for the tests (Debian's rsync): bound to 127.0.0.1 on a free
 * port, one module `mirror` over a directory of the test's own, users and passwords in
 * a secrets file, started with `rsync --daemon --no-detach` and stopped by its pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, writeFile, chmod } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface RsyncDaemon {
  port: number;
  /** the module's files: change them between syncs */
  root: string;
  module: string;
  stop(): Promise<void>;
}

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

async function listening(port: number, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`rsync --daemon exited (${child.exitCode}): ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`rsync --daemon does not listen on ${port}: ${log()}`);
}

/** Start a daemon with module `mirror`; `users` maps user → password. */
export async function startRsyncDaemon(users: Record<string, string>): Promise<RsyncDaemon> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-rsyncd-'));
  const root = path.join(dir, 'module');
  await mkdir(root);
  const secrets = path.join(dir, 'secrets');
  await writeFile(secrets, Object.entries(users).map(([u, p]) => `${u}:${p}`).join('\n') + '\n');
  await chmod(secrets, 0o600);
  const config = path.join(dir, 'rsyncd.conf');
  await writeFile(config, [
    `pid file = ${path.join(dir, 'rsyncd.pid')}`,
    'use chroot = no',
    'numeric ids = yes',
    '[mirror]',
    `  path = ${root}`,
    '  read only = yes',
    `  auth users = ${Object.keys(users).join(', ')}`,
    `  secrets file = ${secrets}`,
    '',
  ].join('\n'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn('rsync', ['--daemon', '--no-detach', `--config=${config}`, `--port=${port}`, '--address=127.0.0.1', `--log-file=${path.join(dir, 'rsyncd.log')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d) => { output += d; });
    child.stderr!.on('data', (d) => { output += d; });
    try {
      await listening(port, child, () => output);
    } catch (err) {
      child.kill('SIGKILL');
      if (attempt < 3) continue; // the port was taken in between
      throw err;
    }
    return {
      port,
      root,
      module: 'mirror',
      stop: async () => {
        if (child.exitCode !== null) return;
        const gone = new Promise((r) => child.once('close', r));
        child.kill('SIGTERM');
        await gone;
      },
    };
  }
}
