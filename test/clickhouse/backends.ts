/**
 * The two stores the test/clickhouse suites run against: embedded chDB in a directory
 * of the test file's own (chDB allows one directory per process, and vitest runs each
 * file in its own process), and the test ClickHouse server (18.16, started by
 * scripts/services.sh from vitest's globalSetup) with a database of the file's own.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { openEmbeddedStore } from '../../runtime/clickhouse/embedded-store.ts';
import { openServerStore } from '../../runtime/clickhouse/server-store.ts';
import { quoteIdentifier, type ClickHouseStore } from '../../runtime/clickhouse/store.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');

export type BackendKind = 'embedded' | 'server';
export const BACKENDS: readonly BackendKind[] = ['embedded', 'server'];

/** The test server's URL: from globalSetup, or from the services env file when a file runs alone. */
export function serverUrl(): string {
  const fromEnv = process.env.SLUICE_TEST_CLICKHOUSE_URL;
  if (fromEnv) return fromEnv;
  const file = path.join(process.env.SLUICE_SERVICES_DIR ?? path.join(ROOT, '.sluice', 'services'), 'env');
  const match = /^SLUICE_TEST_CLICKHOUSE_URL=(.*)$/m.exec(readFileSync(file, 'utf8'));
  if (!match) throw new Error(`no SLUICE_TEST_CLICKHOUSE_URL in ${file}: run scripts/services.sh`);
  return match[1]!.trim();
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${randomBytes(3).toString('hex')}`;
}

export interface Backend {
  readonly kind: BackendKind;
  readonly store: ClickHouseStore;
  /** the embedded store's directory */
  readonly dir?: string;
  cleanup(): Promise<void>;
}

export async function openBackend(kind: BackendKind, prefix: string): Promise<Backend> {
  if (kind === 'server') {
    const database = uniqueName(`sluice_test_${prefix}`);
    const store = await openServerStore({ url: serverUrl(), database });
    return {
      kind,
      store,
      cleanup: async () => {
        await store.command(`DROP DATABASE IF EXISTS ${quoteIdentifier(database)}`).catch(() => undefined);
        await store.close();
      },
    };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), `sluice-${prefix}-chdb-`));
  const store = await openEmbeddedStore({ dir });
  return {
    kind,
    store,
    dir,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A loopback port nothing listens on (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
