/**
 * Schedules and their firings in the state store (ClickHouse, embedded or a server),
 * so they survive restarts and every daemon sees the same ones.
 *
 * - `sluice_schedules`: one row per save of a schedule (JSON spec, origin, who and
 *   when), the highest `version` of an id wins (ReplacingMergeTree, read with FINAL);
 *   a removed schedule is a row with `deleted = 1`.
 * - `sluice_schedule_fires`: what became of each due time of each schedule: `fired`
 *   (a trigger was published, `trigger_id` names it), `skipped` (the previous run was
 *   still going), `queued` (to run when it ends), `missed` (passed while no daemon ran,
 *   and the schedule skips those). One row per (schedule, due time); a queued one
 *   becomes `fired` later (a newer version of the row).
 *
 * @example
 * ```ts
 * const schedules = new ScheduleStore(store);
 * await schedules.ready();
 * await schedules.save(schedule);
 * await schedules.list(); // every schedule not removed
 * ```
 */
import { migrate } from '../clickhouse/migrate.ts';
import { quoteIdentifier, quoteString, type ClickHouseStore } from '../clickhouse/store.ts';
import { defineTable, runsTable } from '../clickhouse/table.ts';
import type { Schedule } from './schedule.ts';

export const schedulesTable = defineTable('sluice_schedules', {
  columns: {
    id: 'String',
    spec: 'String',
    origin: 'LowCardinality(String)',
    created_at: "DateTime64(3, 'UTC')",
    updated_at: "DateTime64(3, 'UTC')",
    updated_by: 'String',
    deleted: 'UInt8',
    version: 'UInt64',
  },
  engine: 'ReplacingMergeTree',
  versionColumn: 'version',
  orderBy: ['id'],
});

export const firesTable = defineTable('sluice_schedule_fires', {
  columns: {
    schedule_id: 'String',
    due_ms: 'UInt64',
    trigger_id: 'String',
    outcome: 'LowCardinality(String)',
    daemon: 'String',
    at: "DateTime64(3, 'UTC')",
    version: 'UInt64',
  },
  engine: 'ReplacingMergeTree',
  versionColumn: 'version',
  orderBy: ['schedule_id', 'due_ms'],
});

export type FireOutcome = 'fired' | 'skipped' | 'queued' | 'missed';

export interface Fire {
  scheduleId: string;
  dueMs: number;
  triggerId: string;
  outcome: FireOutcome;
  daemon: string;
  at: string;
}

export interface RunState {
  status: string;
  startedAt: string;
}

let lastVersion = 0;
function nextVersion(): number {
  lastVersion = Math.max(Date.now() * 1000, lastVersion + 1);
  return lastVersion;
}

function iso(text: string): string {
  return new Date(text.replace(' ', 'T') + (/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? '' : 'Z')).toISOString();
}

export class ScheduleStore {
  private readyPromise?: Promise<unknown>;

  constructor(readonly store: ClickHouseStore) {}

  /** Create the tables if missing (also the run records table, which overlap checks read). */
  ready(): Promise<unknown> {
    this.readyPromise ??= migrate(this.store, [schedulesTable, firesTable, runsTable]).catch((err: unknown) => {
      this.readyPromise = undefined;
      throw err;
    });
    return this.readyPromise;
  }

  private t(name: string): string {
    return `${quoteIdentifier(this.store.database)}.${quoteIdentifier(name)}`;
  }

  async save(schedule: Schedule): Promise<void> {
    await this.ready();
    const { origin, createdAt, updatedAt, updatedBy, ...spec } = schedule;
    await this.store.insert(schedulesTable.name, [{
      id: schedule.id,
      spec: JSON.stringify(spec),
      origin,
      created_at: new Date(createdAt),
      updated_at: new Date(updatedAt),
      updated_by: updatedBy,
      deleted: 0,
      version: nextVersion(),
    }]);
  }

  async remove(schedule: Schedule, by: string): Promise<void> {
    await this.ready();
    await this.store.insert(schedulesTable.name, [{
      id: schedule.id, spec: '{}', origin: schedule.origin, created_at: new Date(schedule.createdAt), updated_at: new Date(), updated_by: by, deleted: 1, version: nextVersion(),
    }]);
  }

  /** Every schedule not removed, by id. */
  async list(): Promise<Schedule[]> {
    await this.ready();
    const rows = await this.store.query<{ id: string; spec: string; origin: string; created_at: string; updated_at: string; updated_by: string }>(
      `SELECT id, spec, origin, created_at, updated_at, updated_by FROM ${this.t(schedulesTable.name)} FINAL WHERE deleted = 0 ORDER BY id`,
    );
    const out: Schedule[] = [];
    for (const r of rows) {
      try {
        out.push({ ...(JSON.parse(r.spec) as Schedule), id: r.id, origin: r.origin as Schedule['origin'], createdAt: iso(r.created_at), updatedAt: iso(r.updated_at), updatedBy: r.updated_by });
      } catch {
        // a row that does not parse is skipped (and cannot fire)
      }
    }
    return out;
  }

  async recordFire(fire: Omit<Fire, 'at'>): Promise<void> {
    await this.ready();
    await this.store.insert(firesTable.name, [{
      schedule_id: fire.scheduleId, due_ms: fire.dueMs, trigger_id: fire.triggerId, outcome: fire.outcome, daemon: fire.daemon, at: new Date(), version: nextVersion(),
    }]);
  }

  /** The last `perSchedule` fires of every schedule, newest first. */
  async recentFires(perSchedule = 3): Promise<Map<string, Fire[]>> {
    await this.ready();
    const rows = await this.store.query<{ schedule_id: string; due_ms: string; trigger_id: string; outcome: string; daemon: string; at: string }>(
      `SELECT schedule_id, due_ms, trigger_id, outcome, daemon, at FROM ${this.t(firesTable.name)} FINAL ORDER BY schedule_id, due_ms DESC LIMIT ${Math.max(1, perSchedule)} BY schedule_id`,
    );
    const out = new Map<string, Fire[]>();
    for (const r of rows) {
      const list = out.get(r.schedule_id) ?? [];
      list.push({ scheduleId: r.schedule_id, dueMs: Number(r.due_ms), triggerId: r.trigger_id, outcome: r.outcome as FireOutcome, daemon: r.daemon, at: iso(r.at) });
      out.set(r.schedule_id, list);
    }
    return out;
  }

  /** Whether a due time of a schedule has a row already. */
  async fireOf(scheduleId: string, dueMs: number): Promise<Fire | undefined> {
    await this.ready();
    const rows = await this.store.query<{ trigger_id: string; outcome: string; daemon: string; at: string }>(
      `SELECT trigger_id, outcome, daemon, at FROM ${this.t(firesTable.name)} FINAL WHERE schedule_id = ${quoteString(scheduleId)} AND due_ms = ${Math.round(dueMs)} LIMIT 1`,
    );
    const r = rows[0];
    return r && { scheduleId, dueMs, triggerId: r.trigger_id, outcome: r.outcome as FireOutcome, daemon: r.daemon, at: iso(r.at) };
  }

  /** The newest run record of a trigger id, if any. */
  async runOf(triggerId: string): Promise<RunState | undefined> {
    await this.ready();
    const rows = await this.store.query<{ status: string; started_at: string }>(
      `SELECT status, started_at FROM ${this.t(runsTable.name)} FINAL WHERE trigger_id = ${quoteString(triggerId)} ORDER BY started_at DESC LIMIT 1`,
    );
    return rows[0] && { status: rows[0].status, startedAt: iso(rows[0].started_at) };
  }
}

/** The newest `fired` row of a schedule (what an overlap check looks at). */
export async function lastFiredOf(s: ScheduleStore, scheduleId: string): Promise<Fire | undefined> {
  await s.ready();
  const rows = await s.store.query<{ due_ms: string; trigger_id: string; daemon: string; at: string }>(
    `SELECT due_ms, trigger_id, daemon, at FROM ${quoteIdentifier(s.store.database)}.${quoteIdentifier(firesTable.name)} FINAL WHERE schedule_id = ${quoteString(scheduleId)} AND outcome = 'fired' ORDER BY due_ms DESC LIMIT 1`,
  );
  const r = rows[0];
  return r && { scheduleId, dueMs: Number(r.due_ms), triggerId: r.trigger_id, outcome: 'fired', daemon: r.daemon, at: iso(r.at) };
}

/** The schedule's queued due time, if one waits for the running run to end. */
export async function queuedOf(s: ScheduleStore, scheduleId: string): Promise<Fire | undefined> {
  await s.ready();
  const rows = await s.store.query<{ due_ms: string; trigger_id: string; daemon: string; at: string }>(
    `SELECT due_ms, trigger_id, daemon, at FROM ${quoteIdentifier(s.store.database)}.${quoteIdentifier(firesTable.name)} FINAL WHERE schedule_id = ${quoteString(scheduleId)} AND outcome = 'queued' ORDER BY due_ms LIMIT 1`,
  );
  const r = rows[0];
  return r && { scheduleId, dueMs: Number(r.due_ms), triggerId: r.trigger_id, outcome: 'queued', daemon: r.daemon, at: iso(r.at) };
}
