/**
 * Helpers for the schedule and admin tests: daemons with the admin API (child
 * processes of the real CLI, on the test broker and the test ClickHouse server, a
 * database per test), users made with `users add`, and a small API client.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { baseEnv, clickhouseUrl, ROOT, sleep, startDaemon, type DaemonProcess, type Names } from '../daemon/support.ts';

export const SCHEDULE_PIPELINES = path.join(ROOT, 'test/pipelines/schedule');

/** The environment of a daemon of these tests: fast scheduler clock, the schedule pipelines. */
export function scheduleEnv(n: Names, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return baseEnv(n, {
    SLUICE_PIPELINES_DIR: SCHEDULE_PIPELINES,
    SLUICE_DAEMON_PIPELINES: 'nap,mirror-sync',
    SLUICE_SCHEDULER_REFRESH: '1s',
    SLUICE_SCHEDULER_GRACE: '3s',
    ...extra,
  });
}

export interface AdminDaemon extends DaemonProcess {
  admin: string;
}

/** Start `sluice serve --admin-port 0` and find the admin URL in its log. */
export async function startAdminDaemon(env: NodeJS.ProcessEnv, options: { stateDir?: string } = {}): Promise<AdminDaemon> {
  const d = await startDaemon(env, ['--admin-port', '0'], options);
  const m = await d.waitFor(/admin (http:\/\/[^ ]+)\/ /);
  return Object.assign(d, { admin: m[1]! });
}

/** `users add` through the CLI, the password on stdin. */
export function addUser(env: NodeJS.ProcessEnv, name: string, role: string, password: string, extraArgs: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'runtime/cli/main.ts'), 'pipeline', 'users', 'add', name, '--role', role, ...extraArgs], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(`${password}\n`);
  });
}

export function basic(name: string, password: string): string {
  return `Basic ${Buffer.from(`${name}:${password}`).toString('base64')}`;
}

export interface Answer<T = unknown> { status: number; body: T; headers: Headers }

/** One API call; `auth` is a full Authorization header value. */
export async function api<T = any>(base: string, method: string, route: string, auth?: string, body?: unknown): Promise<Answer<T>> {
  const res = await fetch(new URL(route, base), {
    method,
    headers: { ...(auth ? { authorization: auth } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON (the page)
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

/** Poll `fn` until it returns something truthy. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(200);
  }
}

export { baseEnv, clickhouseUrl, sleep };
