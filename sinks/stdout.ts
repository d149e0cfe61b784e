/**
 * Write records to standard output as JSON Lines: one `JSON.stringify(record)` per line,
 * keys in the record's order, BigInt values as strings.
 *
 * A batch is written with one `write`; when the stream says its buffer is full (`write`
 * returns false), the batch settles only after `'drain'`, so a slow reader (`| less`, a
 * pipe to another program) slows the run down instead of filling memory. If the reader
 * goes away (EPIPE), the next write rejects with a fatal error instead of crashing.
 * `close` waits until every line has been handed to the OS.
 *
 * @example
 * ```ts
 * sinks: () => [stdout<Row>()],
 * ```
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { FatalError } from '../runtime/errors.ts';
import type { Sink } from '../runtime/pipeline.ts';

export interface StdoutOptions {
  /** where the lines go; default `process.stdout` (tests and `stderr` use may pass another) */
  readonly stream?: Writable;
}

export function stdout<R>(options: StdoutOptions = {}): Sink<R> {
  const stream = options.stream ?? process.stdout;
  const name = stream === process.stdout ? 'stdout' : stream === process.stderr ? 'stderr' : 'stream';
  let broken: unknown;
  const onError = (err: unknown) => {
    broken ??= err;
  };

  const fail = (err: unknown) =>
    new FatalError(`cannot write to ${name}: ${err instanceof Error ? err.message : String(err)}`, {
      item: name,
      hint: 'the reader of the output went away; keep it open until the run ends',
      cause: err,
    });

  return {
    name: 'stdout',
    kind: 'stdout',
    batch: { maxRecords: 1000, maxDelayMs: 200 },

    open: () => {
      broken = undefined;
      stream.on('error', onError);
    },

    write: async (records, ctx) => {
      if (broken !== undefined) throw fail(broken);
      if (records.length === 0) return;
      let text = '';
      for (const record of records) text += `${JSON.stringify(record, replaceBigInt) ?? 'null'}\n`;
      if (stream.write(text)) return;
      try {
        // once() also rejects on 'error' and when the run is aborted
        await once(stream, 'drain', { signal: ctx.signal });
      } catch (err) {
        if (ctx.signal.aborted && broken === undefined) throw err;
        throw fail(broken ?? err);
      }
    },

    close: async () => {
      try {
        // write callbacks run in order: when this one runs, every earlier line reached the OS,
        // so a process.exit() after the run cannot cut the output short
        if (broken === undefined && !stream.destroyed && stream.writableLength > 0) {
          await new Promise<void>((resolve) => stream.write('', () => resolve()));
        }
      } finally {
        stream.off('error', onError);
      }
    },
  };
}

function replaceBigInt(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
