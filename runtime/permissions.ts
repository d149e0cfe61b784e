/**
 * Deno-style permissions. A pipeline declares what it may touch; the runtime checks at
 * the points where sluice opens a connection (runtime/http-client.ts), a file
 * (runtime/guarded-fs.ts) or a process (`checkRun`). Paths are compared after resolving
 * symlinks and `..`, so a link inside an allowed root cannot reach outside it.
 * CLI `--allow-*` flags widen one run; nothing a message or an API call says can.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { PermissionError } from './permission-error.ts';

export interface PermissionSpec {
  /** hosts, `host:port`, or `*` for any */
  net?: readonly string[];
  /** path roots that may be read (relative to the working directory) */
  read?: readonly string[];
  /** path roots that may be written */
  write?: readonly string[];
  /** program names or absolute paths that may be run */
  run?: readonly string[];
}

export type PermissionName = keyof PermissionSpec;

/** Resolve a path as the kernel would: follow links in every existing ancestor. */
export function resolveRealPath(target: string): string {
  const absolute = path.resolve(target);
  let existing = absolute;
  const rest: string[] = [];
  for (;;) {
    try {
      const real = realpathSync(existing);
      return rest.length ? path.join(real, ...rest.reverse()) : real;
    } catch {
      const parent = path.dirname(existing);
      if (parent === existing) return absolute;
      rest.push(path.basename(existing));
      existing = parent;
    }
  }
}

function isWithin(child: string, root: string): boolean {
  if (child === root) return true;
  const relative = path.relative(root, child);
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
}

export class Permissions {
  readonly spec: Required<{ [K in PermissionName]: string[] }>;

  constructor(...specs: PermissionSpec[]) {
    const merged = { net: [] as string[], read: [] as string[], write: [] as string[], run: [] as string[] };
    for (const spec of specs) {
      for (const key of Object.keys(merged) as PermissionName[]) merged[key].push(...(spec[key] ?? []));
    }
    this.spec = merged;
  }

  /** A new set that allows what this one does plus `more` (used for CLI flags). */
  widen(more: PermissionSpec): Permissions {
    return new Permissions(this.spec, more);
  }

  checkRead(target: string, item?: string): string {
    return this.checkPath('read', target, item);
  }

  checkWrite(target: string, item?: string): string {
    return this.checkPath('write', target, item);
  }

  /** Returns the real path that was allowed, so callers open what was checked. */
  private checkPath(kind: 'read' | 'write', target: string, item?: string): string {
    const real = resolveRealPath(target);
    for (const root of this.spec[kind]) {
      if (root === '*' || isWithin(real, resolveRealPath(root))) return real;
    }
    const shown = real === path.resolve(target) ? real : `${target} (really ${real})`;
    throw new PermissionError(`${kind} access to ${shown} is not allowed`, {
      item: item ?? target,
      flag: `--allow-${kind}=${path.dirname(real)}`,
    });
  }

  checkNet(url: string | URL, item?: string): void {
    const parsed = typeof url === 'string' ? new URL(url) : url;
    const host = parsed.hostname.replace(/^\[|\]$/g, '');
    const port = parsed.port || (parsed.protocol === 'https:' ? '443' : parsed.protocol === 'http:' ? '80' : '');
    for (const allowed of this.spec.net) {
      if (allowed === '*') return;
      const [allowedHost, allowedPort] = splitHostPort(allowed);
      if (allowedHost === host && (allowedPort === undefined || allowedPort === port)) return;
    }
    throw new PermissionError(`network access to ${host}:${port} is not allowed`, {
      item: item ?? parsed.toString(),
      flag: `--allow-net=${host}:${port}`,
    });
  }

  checkRun(program: string, item?: string): void {
    const base = path.basename(program);
    for (const allowed of this.spec.run) {
      if (allowed === '*' || allowed === program || allowed === base) return;
    }
    throw new PermissionError(`running ${program} is not allowed`, { item: item ?? program, flag: `--allow-run=${base}` });
  }
}

function splitHostPort(entry: string): [string, string | undefined] {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return [bracketed[1]!, bracketed[2]];
  const parts = entry.split(':');
  if (parts.length === 2) return [parts[0]!, parts[1]];
  return [entry, undefined];
}

/** Parse `--allow-net=a,b` style values (an empty value means "anything"). */
export function parseAllowFlag(value: string | true): string[] {
  if (value === true || value === '') return ['*'];
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}
