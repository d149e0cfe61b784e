/** A real RunContext for component tests, with permissions rooted at `dir`. */
import path from 'node:path';
import { Registry } from 'prom-client';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import type { RunContext } from '../../runtime/context.ts';
import { FatalError } from '../../runtime/errors.ts';
import { GuardedFs } from '../../runtime/guarded-fs.ts';
import { HttpClient } from '../../runtime/http-client.ts';
import { createLogger } from '../../runtime/log.ts';
import { Permissions, type PermissionSpec } from '../../runtime/permissions.ts';

export function testRunContext(options: {
  dir: string;
  permissions?: PermissionSpec;
  registry?: Registry;
  store?: ClickHouseStore;
  signal?: AbortSignal;
  pipeline?: string;
}): RunContext {
  const permissions = new Permissions(options.permissions ?? { read: [options.dir], write: [options.dir] });
  return {
    runId: 'test-run',
    pipeline: options.pipeline ?? 'test',
    signal: options.signal ?? new AbortController().signal,
    permissions,
    fs: new GuardedFs(permissions),
    http: new HttpClient(permissions),
    log: createLogger({ level: 'silent' }),
    stateDir: path.join(options.dir, '.sluice'),
    metrics: options.registry ?? new Registry(),
    store: () => (options.store ? Promise.resolve(options.store) : Promise.reject(new FatalError('no store in this test context'))),
  };
}
