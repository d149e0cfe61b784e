/**
 * `<stateDir>/daemon.json`: how other sluice commands on the machine find a daemon
 * that holds the embedded store (chDB allows one process per directory), so `npm run
 * query` and `pipeline runs` go through the daemon's query endpoint instead of
 * failing on the lock. It holds the daemon's pid, the endpoint's address and a random
 * token the endpoint requires; the file is readable by its owner only.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface DaemonFile {
  pid: number;
  startedAt: string;
  /** http://127.0.0.1:PORT */
  url: string;
  /** sent as `Authorization: Bearer <token>` to /query */
  token: string;
  /** the store the daemon holds (its description) */
  store: string;
  /** the embedded store's directory, when it is one */
  storeDir?: string;
}

export function daemonFilePath(stateDir: string): string {
  return path.join(path.resolve(stateDir), 'daemon.json');
}

export function newToken(): string {
  return randomBytes(24).toString('hex');
}

export function writeDaemonFile(stateDir: string, content: DaemonFile): string {
  const file = daemonFilePath(stateDir);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(content, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}

/** Remove the file if it is this process's. */
export function removeDaemonFile(stateDir: string, pid = process.pid): void {
  const found = readDaemonFile(stateDir, { checkAlive: false });
  if (found?.pid === pid) fs.rmSync(daemonFilePath(stateDir), { force: true });
}

/** The daemon of this state directory, if its file exists and (with checkAlive) its process lives. */
export function readDaemonFile(stateDir: string, options: { checkAlive?: boolean } = {}): DaemonFile | undefined {
  let text: string;
  try {
    text = fs.readFileSync(daemonFilePath(stateDir), 'utf8');
  } catch {
    return undefined;
  }
  let content: DaemonFile;
  try {
    content = JSON.parse(text) as DaemonFile;
  } catch {
    return undefined;
  }
  if (typeof content.pid !== 'number' || typeof content.url !== 'string') return undefined;
  if (options.checkAlive !== false && !processAlive(content.pid)) return undefined;
  return content;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
