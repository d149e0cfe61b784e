/**
 * The pipeline contract: what a file in `pipelines/` exports.
 *
 * ```ts
 * export default definePipeline({
 *   name: 'inventory',
 *   description: 'Walk a directory and record every file',
 *   params: z.object({ root: z.string().default('fixtures').describe('directory to walk') }),
 *   permissions: ({ params }) => ({ read: [params.root], write: ['.sluice'] }),
 *   source: (ctx) => files(ctx, { root: ctx.params.root }),
 *   transform: () => pipe(map((f) => ({ path: f.path, size: f.size }))),
 *   sinks: ({ params }) => [snapshot({ path: '.sluice/inventory.json' })],
 * });
 * ```
 *
 * Record types flow from the source through `transform` into `sinks`: a sink is
 * contravariant in its record type, so a sink that needs a field the stream lacks is a
 * compile error.
 */
import type { OperatorFunction } from 'rxjs';
import type { z } from 'zod';
import type { TableDefinition } from './clickhouse/table.ts';
import type { RunContext } from './context.ts';
import type { PermissionSpec } from './permissions.ts';

/** A unit the runner pulls from a source and acknowledges once all its records are written. */
export interface Item<T> {
  /** identity used in errors, dead letters and run records: a path, a URL, a message id */
  readonly id: string;
  readonly data: T;
  /** bytes this item stands for (file size, body length), for progress and metrics */
  readonly bytes?: number;
  /** called once when every record derived from the item is accepted by every sink (or dropped) */
  readonly ack?: () => void | Promise<void>;
  /** called once when the item failed for good; `requeue` is false for permanent errors */
  readonly nack?: (error: unknown, requeue: boolean) => void | Promise<void>;
  /**
   * set by a source that could not produce this item (unreadable file, failed request):
   * the runner applies the pipeline's error policy to it without running the transform
   */
  readonly error?: unknown;
}

/** Marks a value as an `Item` so sources can attach identity; plain values get a sequence id. */
export const ITEM = Symbol.for('sluice.item');
export type SourceYield<T> = T | TaggedItem<T>;
export interface TaggedItem<T> extends Item<T> { readonly [ITEM]: true }

/** Wrap a value with its identity (and optional ack/nack hooks) for the runner. */
export function item<T>(id: string, data: T, extra: Omit<Item<T>, 'id' | 'data'> = {}): TaggedItem<T> {
  return { [ITEM]: true, id, data, ...extra };
}

export function isTaggedItem<T>(value: SourceYield<T>): value is TaggedItem<T> {
  return typeof value === 'object' && value !== null && (value as { [ITEM]?: unknown })[ITEM] === true;
}

/** A pull source: an async iterable of values (or tagged items). */
export type Source<T> = AsyncIterable<SourceYield<T>> | Iterable<SourceYield<T>>;

/** How a sink wants its records grouped. The runner flushes early when it must (in-flight limit, end of run). */
export interface BatchPolicy {
  maxRecords?: number;
  maxBytes?: number;
  /** flush a partial batch after this long */
  maxDelayMs?: number;
  /** estimate a record's size for maxBytes (defaults to JSON length) */
  sizeOf?: (record: never) => number;
  /**
   * when a batch fails for good, split it and write the halves again so only the bad
   * records are rejected (default true); turn off for sinks where a retry of part of a
   * batch is not safe
   */
  isolateFailures?: boolean;
  /**
   * the form the runner keeps a record in until it is written, made once as the record
   * joins the sink's queue; `write`, `sizeOf` and batch splitting then see these values,
   * not the records. For sinks whose wire form is small and flat (a line of text): the
   * record itself can be collected at once instead of living until its batch is written.
   */
  encode?: (record: never) => unknown;
  /** an encoded value back as a record, for dead letters (default: the encoded value as it is) */
  decode?: (encoded: never) => unknown;
}

export interface SinkWriteContext {
  readonly signal: AbortSignal;
  /** identities of the items whose records are in this batch (for idempotency tokens) */
  readonly itemIds: readonly string[];
  /** 1 on the first try, then 2, 3 … for retries of the same batch */
  readonly attempt: number;
}

/**
 * A sink takes records in batches. `write` settles when the batch is durably written,
 * or rejects with a classified error (see errors.ts). Property syntax (not method
 * syntax) keeps the record type contravariant under `strict`.
 */
export interface Sink<R> {
  readonly name: string;
  readonly kind: string;
  readonly batch?: BatchPolicy;
  readonly open?: (ctx: RunContext) => Promise<void> | void;
  readonly write: (records: readonly R[], ctx: SinkWriteContext) => Promise<void> | void;
  /** called once at the end of a run (also after a failed or interrupted run) */
  readonly close?: (outcome: RunOutcome) => Promise<void> | void;
}

export interface RunOutcome {
  readonly status: RunStatus;
}

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'interrupted';

export type ErrorPolicy = 'fail' | 'skip' | 'dead-letter';

export type ParamsSchema = z.ZodObject<z.ZodRawShape>;

export interface PipelineContext<P> extends RunContext {
  readonly params: P;
}

export interface PipelineDefinition<S extends ParamsSchema, In, Out> {
  /** the name used on the command line; must equal the file name */
  readonly name: string;
  readonly description: string;
  readonly params: S;
  /** what this pipeline may touch; CLI `--allow-*` flags widen it for one run */
  readonly permissions?: PermissionSpec | ((ctx: { params: z.infer<S> }) => PermissionSpec);
  readonly source: (ctx: PipelineContext<z.infer<S>>) => Source<In> | Promise<Source<In>>;
  /**
   * rxjs operators applied to each item's value; the records they emit go to every sink.
   * The function form is called once per run, so stateful operators (dedupeBy, rateLimit)
   * keep their state for one run and share it across items.
   */
  readonly transform?: (ctx: PipelineContext<z.infer<S>>) => OperatorFunction<In, Out>;
  readonly sinks: (ctx: PipelineContext<z.infer<S>>) => ReadonlyArray<Sink<Out>>;
  /** what happens to an item that fails permanently; default `fail` */
  readonly onError?: ErrorPolicy;
  /**
   * items in flight at most (pulled, not yet acknowledged); default 1000. A sink's batch
   * can only hold records of items in flight, so keep this at least the batch size for
   * full batches, and lower it when items are heavy (open files, large bodies).
   */
  readonly maxInFlight?: number;
  /**
   * the transform emits all of an item's records synchronously while it receives the
   * item's value (map, filter, mergeMap over arrays, no promises or timers): the runner
   * then keeps one subscription for the whole run instead of one per item, several times
   * cheaper per item. A record emitted later fails the run; transient transform errors are
   * not retried in this mode.
   */
  readonly syncTransform?: boolean;
  /** cron expression of the default schedule (used by the daemon) */
  readonly schedule?: string;
  /** the ClickHouse tables this pipeline writes: `pipeline migrate` creates and extends them */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly tables?: ReadonlyArray<TableDefinition<any>>;
  /** lines printed after a successful run's summary, e.g. a query the user can paste */
  readonly nextSteps?: (ctx: { params: z.infer<S> }) => readonly string[];
}

/** A loaded pipeline with the type parameters erased, as the runtime handles it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyPipeline = PipelineDefinition<any, any, any>;

/**
 * Declare a pipeline. Without `transform`, the records are the source's values, so the
 * sinks must accept exactly what the source yields.
 */
export function definePipeline<S extends ParamsSchema, In>(
  definition: PipelineDefinition<S, In, In> & { readonly transform?: undefined },
): PipelineDefinition<S, In, In>;
export function definePipeline<S extends ParamsSchema, In, Out>(
  definition: PipelineDefinition<S, In, Out> & { readonly transform: PipelineDefinition<S, In, Out>['transform'] & {} },
): PipelineDefinition<S, In, Out>;
export function definePipeline<S extends ParamsSchema, In, Out>(
  definition: PipelineDefinition<S, In, Out>,
): PipelineDefinition<S, In, Out> {
  return definition;
}
