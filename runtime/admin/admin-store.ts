/**
 * What the admin API keeps in the state store (ClickHouse, embedded or a server):
 *
 * - `sluice_users`: name, role (`admin`, `operator`, `viewer`), scrypt hash; the
 *   highest `version` of a name wins (a removed user is a row with `deleted = 1`);
 * - `sluice_tokens`: bearer tokens by the SHA-256 of the token (the token itself is
 *   shown once and never stored), their user and expiry;
 * - `sluice_audit`: every change made through the API or `users add`: when, who, what,
 *   on what, the outcome, and secret-free details.
 *
 * @example
 * ```ts
 * const admin = new AdminStore(store);
 * await admin.putUser({ name: 'alice', role: 'admin', passwordHash: await hashPassword(pw) });
 * ```
 */
import { createHash } from 'node:crypto';
import { migrate } from '../clickhouse/migrate.ts';
import { quoteIdentifier, quoteString, type ClickHouseStore } from '../clickhouse/store.ts';
import { defineTable } from '../clickhouse/table.ts';

export const ROLES = ['admin', 'operator', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export const usersTable = defineTable('sluice_users', {
  columns: { name: 'String', role: 'LowCardinality(String)', password_hash: 'String', created_at: "DateTime64(3, 'UTC')", deleted: 'UInt8', version: 'UInt64' },
  engine: 'ReplacingMergeTree',
  versionColumn: 'version',
  orderBy: ['name'],
});

export const tokensTable = defineTable('sluice_tokens', {
  columns: { token_sha256: 'String', user: 'String', created_at: "DateTime64(3, 'UTC')", expires_at: "DateTime64(3, 'UTC')", revoked: 'UInt8', version: 'UInt64' },
  engine: 'ReplacingMergeTree',
  versionColumn: 'version',
  orderBy: ['token_sha256'],
});

export const auditTable = defineTable('sluice_audit', {
  columns: { at: "DateTime64(3, 'UTC')", user: 'String', action: 'LowCardinality(String)', target: 'String', outcome: 'LowCardinality(String)', details: 'String', id: 'String' },
  engine: 'MergeTree',
  orderBy: ['at', 'id'],
  partitionBy: 'toYYYYMM(at)',
});

export interface User {
  name: string;
  role: Role;
  passwordHash: string;
  createdAt: string;
}

export interface AuditEntry {
  at: string;
  user: string;
  action: string;
  target: string;
  outcome: string;
  details: Record<string, unknown>;
}

let lastVersion = 0;
function nextVersion(): number {
  lastVersion = Math.max(Date.now() * 1000, lastVersion + 1);
  return lastVersion;
}

function iso(text: string): string {
  return new Date(text.replace(' ', 'T') + 'Z').toISOString();
}

export function tokenDigest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class AdminStore {
  private readyPromise?: Promise<unknown>;
  private auditSeq = 0;

  constructor(readonly store: ClickHouseStore) {}

  ready(): Promise<unknown> {
    this.readyPromise ??= migrate(this.store, [usersTable, tokensTable, auditTable]).catch((err: unknown) => {
      this.readyPromise = undefined;
      throw err;
    });
    return this.readyPromise;
  }

  private t(name: string): string {
    return `${quoteIdentifier(this.store.database)}.${quoteIdentifier(name)}`;
  }

  async users(): Promise<User[]> {
    await this.ready();
    const rows = await this.store.query<{ name: string; role: string; password_hash: string; created_at: string }>(
      `SELECT name, role, password_hash, created_at FROM ${this.t(usersTable.name)} FINAL WHERE deleted = 0 ORDER BY name`,
    );
    return rows.map((r) => ({ name: r.name, role: r.role as Role, passwordHash: r.password_hash, createdAt: iso(r.created_at) }));
  }

  async user(name: string): Promise<User | undefined> {
    await this.ready();
    const rows = await this.store.query<{ name: string; role: string; password_hash: string; created_at: string }>(
      `SELECT name, role, password_hash, created_at FROM ${this.t(usersTable.name)} FINAL WHERE name = ${quoteString(name)} AND deleted = 0 LIMIT 1`,
    );
    const r = rows[0];
    return r && { name: r.name, role: r.role as Role, passwordHash: r.password_hash, createdAt: iso(r.created_at) };
  }

  async putUser(user: { name: string; role: Role; passwordHash: string; createdAt?: string }): Promise<void> {
    await this.ready();
    await this.store.insert(usersTable.name, [{ name: user.name, role: user.role, password_hash: user.passwordHash, created_at: new Date(user.createdAt ?? Date.now()), deleted: 0, version: nextVersion() }]);
  }

  async removeUser(name: string): Promise<void> {
    await this.ready();
    await this.store.insert(usersTable.name, [{ name, role: 'viewer', password_hash: '', created_at: new Date(), deleted: 1, version: nextVersion() }]);
  }

  async putToken(token: string, user: string, expiresAt: Date): Promise<void> {
    await this.ready();
    await this.store.insert(tokensTable.name, [{ token_sha256: tokenDigest(token), user, created_at: new Date(), expires_at: expiresAt, revoked: 0, version: nextVersion() }]);
  }

  async revokeToken(token: string, user: string): Promise<void> {
    await this.ready();
    await this.store.insert(tokensTable.name, [{ token_sha256: tokenDigest(token), user, created_at: new Date(), expires_at: new Date(), revoked: 1, version: nextVersion() }]);
  }

  /** The user of a live token (not expired, not revoked). */
  async tokenUser(token: string): Promise<{ user: string; expiresAt: string } | undefined> {
    await this.ready();
    const rows = await this.store.query<{ user: string; expires_at: string; revoked: number }>(
      `SELECT user, expires_at, revoked FROM ${this.t(tokensTable.name)} FINAL WHERE token_sha256 = ${quoteString(tokenDigest(token))} LIMIT 1`,
    );
    const r = rows[0];
    if (!r || Number(r.revoked)) return undefined;
    const expiresAt = iso(r.expires_at);
    if (Date.parse(expiresAt) <= Date.now()) return undefined;
    return { user: r.user, expiresAt };
  }

  async audit(entry: Omit<AuditEntry, 'at'>): Promise<void> {
    await this.ready();
    await this.store.insert(auditTable.name, [{
      at: new Date(), user: entry.user, action: entry.action, target: entry.target, outcome: entry.outcome, details: JSON.stringify(entry.details),
      id: `${process.pid}-${Date.now()}-${++this.auditSeq}`,
    }]);
  }

  async auditLog(limit = 100): Promise<AuditEntry[]> {
    await this.ready();
    const rows = await this.store.query<{ at: string; user: string; action: string; target: string; outcome: string; details: string }>(
      `SELECT at, user, action, target, outcome, details FROM ${this.t(auditTable.name)} ORDER BY at DESC, id DESC LIMIT ${Math.max(1, Math.min(10_000, Math.floor(limit)))}`,
    );
    return rows.map((r) => ({ at: iso(r.at), user: r.user, action: r.action, target: r.target, outcome: r.outcome, details: JSON.parse(r.details || '{}') as Record<string, unknown> }));
  }
}
