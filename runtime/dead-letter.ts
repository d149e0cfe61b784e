/**
 * Dead letters: items (and records) that failed for good under the `dead-letter`
 * policy, one JSON line each, in `.sluice/dead-letter/<pipeline>/<run id>.jsonl`.
 * Writes are chained so lines never interleave; `close` waits for the last one.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { classifyError, describeError } from './errors.ts';
import { bigintReplacer } from './run-record.ts';

export interface DeadLetter {
  time: string;
  runId: string;
  pipeline: string;
  item: string;
  component: string;
  errorKind: string;
  error: string;
  record?: unknown;
}

export class DeadLetterFile {
  readonly file: string;
  private tail: Promise<void> = Promise.resolve();
  private created = false;

  constructor(stateDir: string, private readonly pipeline: string, private readonly runId: string) {
    this.file = path.join(stateDir, 'dead-letter', pipeline, `${runId}.jsonl`);
  }

  add(item: string, component: string, error: unknown, record?: unknown): Promise<void> {
    const letter: DeadLetter = {
      time: new Date().toISOString(),
      runId: this.runId,
      pipeline: this.pipeline,
      item,
      component,
      errorKind: classifyError(error),
      error: describeError(error),
      ...(record === undefined ? {} : { record }),
    };
    const line = JSON.stringify(letter, bigintReplacer) + '\n';
    this.tail = this.tail.then(async () => {
      if (!this.created) {
        await fs.mkdir(path.dirname(this.file), { recursive: true });
        this.created = true;
      }
      await fs.appendFile(this.file, line);
    });
    return this.tail;
  }

  close(): Promise<void> {
    return this.tail;
  }
}
