/**
 * What the engine remembers about a run, and where it keeps it. The store is an
 * interface so the ClickHouse state store can replace the JSON-lines file.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ErrorKind } from './errors.ts';
import type { RunStatus } from './pipeline.ts';

export type Trigger = 'cli' | 'amqp' | 'schedule' | 'api';

export interface RunCounts {
  items: number;
  itemsDone: number;
  records: number;
  bytes: number;
  recordsBySink: Record<string, number>;
  errors: Record<ErrorKind, number>;
  skipped: number;
  deadLettered: number;
  retries: number;
}

export interface RunErrorEntry {
  item?: string;
  kind: ErrorKind;
  message: string;
  component: string;
}

export interface RunRecord {
  id: string;
  pipeline: string;
  params: unknown;
  trigger: Trigger;
  /** message id, schedule id, API user … */
  triggerId?: string;
  status: RunStatus;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
  counts: RunCounts;
  /** the first errors of the run (at most 20) */
  errors: RunErrorEntry[];
}

export interface RunStore {
  save(record: RunRecord): Promise<void>;
  list(options?: { pipeline?: string; limit?: number }): Promise<RunRecord[]>;
  get(id: string): Promise<RunRecord | undefined>;
}

/** Run records as JSON lines under the state directory; the last line of an id wins. */
export class JsonlRunStore implements RunStore {
  readonly file: string;
  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'runs.jsonl');
  }

  async save(record: RunRecord): Promise<void> {
    await fs.mkdir(path.dirname(this.file), { recursive: true });
    await fs.appendFile(this.file, JSON.stringify(record, bigintReplacer) + '\n');
  }

  private async readAll(): Promise<Map<string, RunRecord>> {
    let text = '';
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw err;
    }
    const byId = new Map<string, RunRecord>();
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const record = JSON.parse(line) as RunRecord;
        byId.delete(record.id); // re-insert so the map's order is last-update order
        byId.set(record.id, record);
      } catch {
        // a torn last line after a crash: skip it, the rest is intact
      }
    }
    return byId;
  }

  async list(options: { pipeline?: string; limit?: number } = {}): Promise<RunRecord[]> {
    const all = [...(await this.readAll()).values()]
      .filter((r) => !options.pipeline || r.pipeline === options.pipeline)
      .sort((a, b) => b.startedAt.localeCompare(a.startedAt));
    return all.slice(0, options.limit ?? 20);
  }

  async get(id: string): Promise<RunRecord | undefined> {
    return (await this.readAll()).get(id);
  }
}

export function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
