/**
 * Run records in ClickHouse: the `sluice_runs` table (see `runsTable` in table.ts), one
 * row per save, the highest `version` of a run id wins (ReplacingMergeTree, read with
 * FINAL so an unmerged older save never shows). The table is created (or extended) on
 * first use.
 *
 * On servers before 20.1 `started_at`/`ended_at` are DateTime: a record read back has
 * its times to the second, and runs started in the same second list in id order.
 *
 * @example
 * ```ts
 * const runs = new ClickHouseRunStore(store);
 * await runs.save(record);
 * await runs.list({ pipeline: 'inventory', limit: 10 }); // newest first
 * ```
 */
import type { RunCounts, RunErrorEntry, RunRecord, RunStore, Trigger } from '../run-record.ts';
import { bigintReplacer } from '../run-record.ts';
import type { RunStatus } from '../pipeline.ts';
import { migrate } from './migrate.ts';
import { quoteIdentifier, quoteString, type ClickHouseStore } from './store.ts';
import { runsTable, type RunRow } from './table.ts';

interface StoredRun {
  id: string;
  pipeline: string;
  trigger: string;
  trigger_id: string;
  status: string;
  started_at: string;
  ended_at: string | null;
  duration_ms: string | null;
  params: string;
  counts: string;
  errors: string;
}

let lastVersion = 0;
/** increasing within the process, even for saves in the same millisecond */
function nextVersion(): number {
  lastVersion = Math.max(Date.now() * 1000, lastVersion + 1);
  return lastVersion;
}

export class ClickHouseRunStore implements RunStore {
  private ready?: Promise<unknown>;

  constructor(private readonly store: ClickHouseStore) {}

  async save(record: RunRecord): Promise<void> {
    await this.ensureTable();
    const row: RunRow = {
      id: record.id,
      pipeline: record.pipeline,
      trigger: record.trigger,
      trigger_id: record.triggerId ?? '',
      status: record.status,
      started_at: new Date(record.startedAt),
      ended_at: record.endedAt ? new Date(record.endedAt) : null,
      duration_ms: record.durationMs === undefined ? null : Math.max(0, Math.round(record.durationMs)),
      params: JSON.stringify(record.params ?? null, bigintReplacer),
      counts: JSON.stringify(record.counts, bigintReplacer),
      errors: JSON.stringify(record.errors, bigintReplacer),
      version: nextVersion(),
    };
    await this.store.insert(runsTable.name, [row]);
  }

  async list(options: { pipeline?: string; limit?: number } = {}): Promise<RunRecord[]> {
    await this.ensureTable();
    const where = options.pipeline ? `WHERE pipeline = ${quoteString(options.pipeline)}` : '';
    const limit = Math.max(0, Math.floor(options.limit ?? 20));
    const rows = await this.store.query<StoredRun>(
      `SELECT ${COLUMNS} FROM ${this.table()} FINAL ${where} ORDER BY started_at DESC, id DESC LIMIT ${limit}`,
    );
    return rows.map(toRecord);
  }

  async get(id: string): Promise<RunRecord | undefined> {
    await this.ensureTable();
    const rows = await this.store.query<StoredRun>(`SELECT ${COLUMNS} FROM ${this.table()} FINAL WHERE id = ${quoteString(id)} LIMIT 1`);
    return rows[0] && toRecord(rows[0]);
  }

  private table(): string {
    return `${quoteIdentifier(this.store.database)}.${quoteIdentifier(runsTable.name)}`;
  }

  private ensureTable(): Promise<unknown> {
    this.ready ??= migrate(this.store, [runsTable]).catch((err: unknown) => {
      this.ready = undefined; // try again next time (the server may be back)
      throw err;
    });
    return this.ready;
  }
}

const COLUMNS = ['id', 'pipeline', 'trigger', 'trigger_id', 'status', 'started_at', 'ended_at', 'duration_ms', 'params', 'counts', 'errors']
  .map(quoteIdentifier)
  .join(', ');

/** "2024-05-01 10:00:00.123" (UTC, as the column is declared) → ISO 8601 */
function isoFromClickHouse(text: string): string {
  return new Date(text.replace(' ', 'T') + 'Z').toISOString();
}

function toRecord(row: StoredRun): RunRecord {
  const record: RunRecord = {
    id: row.id,
    pipeline: row.pipeline,
    params: JSON.parse(row.params) as unknown,
    trigger: row.trigger as Trigger,
    status: row.status as RunStatus,
    startedAt: isoFromClickHouse(row.started_at),
    counts: JSON.parse(row.counts) as RunCounts,
    errors: JSON.parse(row.errors) as RunErrorEntry[],
  };
  if (row.trigger_id) record.triggerId = row.trigger_id;
  if (row.ended_at) record.endedAt = isoFromClickHouse(row.ended_at);
  if (row.duration_ms !== null) record.durationMs = Number(row.duration_ms);
  return record;
}
