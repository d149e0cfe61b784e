/**
 * `where`: a sink that passes on only the records a type guard selects (optionally
 * reshaped), so one stream of mixed records can feed sinks of different record types.
 *
 * @example
 * ```ts
 * type Row = ServerRow | RepoRow;
 * const isRepo = (r: Row): r is RepoRow => r.kind === 'repo';
 * sinks: () => [where(isRepo, clickhouse(repoTable), (r) => toRepoTableRow(r)), where(isServer, snapshot(...))],
 * ```
 */
import type { Sink } from '../runtime/pipeline.ts';

export function where<R, S extends R, T = S>(
  select: (record: R) => record is S,
  sink: Sink<T>,
  as: (record: S) => T = (record) => record as unknown as T,
): Sink<R> {
  return {
    name: sink.name,
    kind: sink.kind,
    batch: sink.batch,
    open: sink.open,
    close: sink.close,
    write: (records, ctx) => {
      const kept: T[] = [];
      for (const record of records) if (select(record)) kept.push(as(record));
      return kept.length ? sink.write(kept, ctx) : undefined;
    },
  };
}
