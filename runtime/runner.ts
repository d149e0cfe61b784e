/**
 * The runner: pulls items from a pipeline's source, runs each item's value through the
 * transform, hands the records to every sink in batches, and acknowledges an item only
 * when every record derived from it was accepted by every sink (or dropped, or
 * dead-lettered).
 *
 * Flow control: at most `maxInFlight` items are pulled and not yet acknowledged; the
 * source is not pulled while that many are in flight, so a slow sink holds the source
 * back and memory stays bounded (rxjs alone has no backpressure).
 *
 * Why the transform runs per item: it is the only way to know exactly which records an
 * item produced and when it has produced all of them, whatever rxjs operators the
 * pipeline uses (map, filter, mergeMap fan-out, async work). Operators that must hold
 * state across items (dedupeBy, rateLimit) keep it in their closure, which the
 * pipeline's `transform(ctx)` creates once per run.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Registry } from 'prom-client';
import { finalize, of, Subject, type OperatorFunction, type Subscription } from 'rxjs';
import type { z } from 'zod';
import { backoffDelay, delayFor, type BackoffOptions } from './backoff.ts';
import type { ClickHouseStore } from './clickhouse/store.ts';
import { DeadLetterFile } from './dead-letter.ts';
import { EngineMetrics } from './engine-metrics.ts';
import { classifyError, describeError, FatalError, type ErrorKind } from './errors.ts';
import { GuardedFs } from './guarded-fs.ts';
import { HttpClient } from './http-client.ts';
import { createLogger, type Logger } from './log.ts';
import { ParamsError } from './params-error.ts';
import { Permissions, type PermissionSpec } from './permissions.ts';
import {
  isTaggedItem,
  type AnyPipeline,
  type BatchPolicy,
  type ErrorPolicy,
  type Item,
  type PipelineContext,
  type RunStatus,
  type Sink,
} from './pipeline.ts';
import { JsonlRunStore, type RunCounts, type RunRecord, type RunStore, type Trigger } from './run-record.ts';

export interface RunOptions {
  pipeline: AnyPipeline;
  /** raw params: validated (and coerced) by the pipeline's zod schema */
  params?: unknown;
  trigger?: Trigger;
  triggerId?: string;
  /** widens the pipeline's own permissions for this run (CLI `--allow-*`) */
  allow?: PermissionSpec;
  maxInFlight?: number;
  onError?: ErrorPolicy;
  /** default `.sluice` under the working directory */
  stateDir?: string;
  /** aborting it stops the run gracefully: no more pulls, accepted records flushed */
  signal?: AbortSignal;
  /** aborting it stops at once: in-flight items are abandoned (not acknowledged) */
  killSignal?: AbortSignal;
  /** how long a graceful stop waits for in-flight items before abandoning them */
  stopGraceMs?: number;
  log?: Logger;
  registry?: Registry;
  /** opens the ClickHouse store when a component first asks for it (see ctx.store()) */
  openStore?: () => Promise<ClickHouseStore>;
  /** leave the store open at the end (the caller owns it, e.g. a daemon sharing one store) */
  keepStoreOpen?: boolean;
  runStore?: RunStore;
  /** transient error retries, for transforms and sink writes */
  retry?: { maxAttempts?: number; initialDelayMs?: number; maxDelayMs?: number };
  /** called with the live counts (for progress lines) at most every `progressIntervalMs` */
  onProgress?: (counts: Readonly<RunCounts>, inFlight: number) => void;
  progressIntervalMs?: number;
}


const DEFAULT_BATCH: Required<Pick<BatchPolicy, 'maxRecords' | 'maxDelayMs'>> = { maxRecords: 1000, maxDelayMs: 1000 };
const MAX_RECORDED_ERRORS = 20;
/** as many items as the default batch has records, so 1-record items can fill a batch */
export const DEFAULT_MAX_IN_FLIGHT = 1000;

/** An item in flight: counts the sink acceptances it still waits for. */
class Ticket {
  pending = 0;
  transformDone = false;
  failed = false;
  finished = false;
  records = 0;
  attempts = 1;
  subscription?: Subscription;
  /** set for the items whose latency is sampled for the histogram (1 in LATENCY_SAMPLE) */
  startedAt = -1;
  constructor(public item: Item<unknown>) {}

  /**
   * Let go of the item's data once it is transformed: only its identity and its ack and
   * nack are needed until it settles, and the data (a page of rows, a file's contents)
   * would otherwise live as long as the slowest batch holding one of its records,
   * which makes the garbage collector copy and keep it (measured: 1M rows in pages of
   * 1000 cost twice the CPU when the pages were held).
   */
  releaseData(): void {
    const item = this.item;
    if (item instanceof PlainItem) item.data = undefined;
    else this.item = { id: item.id, data: undefined, bytes: item.bytes, ack: item.ack, nack: item.nack };
  }
}

/** A source value without an identity: its id (`#<n>`) is made only when something asks. */
class PlainItem implements Item<unknown> {
  constructor(public data: unknown, private readonly sequence: number) {}
  get id(): string {
    return `#${this.sequence}`;
  }
}

/**
 * One item in this many has its latency observed: a prom-client update per item would
 * cost more than the rest of the runner's per-item work.
 */
const LATENCY_SAMPLE = 64;

export function newRunId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${randomBytes(4).toString('hex')}`;
}

/** Validate raw params against the pipeline's schema; one line naming the param on error. */
export function parseParams<S extends z.ZodObject<z.ZodRawShape>>(schema: S, raw: unknown): z.infer<S> {
  const result = schema.strict().safeParse(raw ?? {});
  if (result.success) return result.data as z.infer<S>;
  const issues = result.error.issues;
  const unknown = issues.find((i) => i.code === 'unrecognized_keys');
  if (unknown && unknown.code === 'unrecognized_keys') {
    const valid = Object.keys(schema.shape).join(', ') || '(none)';
    throw new ParamsError(`unknown param ${unknown.keys.map((k) => `"${k}"`).join(', ')}; valid params: ${valid}`);
  }
  const issue = issues[0]!;
  const name = issue.path.length ? issue.path.join('.') : '(params)';
  const given = issue.path.reduce<unknown>((v, key) => (v as Record<PropertyKey, unknown> | undefined)?.[key], raw ?? {});
  const message = issue.code === 'invalid_type' && given === undefined ? 'required, but not given' : issue.message;
  throw new ParamsError(`invalid param "${name}": ${message}`);
}

export async function runPipeline(options: RunOptions): Promise<RunRecord> {
  const pipeline = options.pipeline;
  const params = parseParams(pipeline.params, options.params);
  const runId = newRunId();
  const stateDir = path.resolve(options.stateDir ?? '.sluice');
  const baseLog = options.log ?? createLogger();
  const log = baseLog.child({ pipeline: pipeline.name, runId });
  const registry = options.registry ?? new Registry();
  const metrics = new EngineMetrics(registry, pipeline.name);
  const runStore = options.runStore ?? new JsonlRunStore(stateDir);
  const declared = typeof pipeline.permissions === 'function' ? pipeline.permissions({ params }) : pipeline.permissions ?? {};
  const permissions = new Permissions(declared, options.allow ?? {});
  const onError: ErrorPolicy = options.onError ?? pipeline.onError ?? 'fail';
  const maxInFlight = Math.max(1, options.maxInFlight ?? pipeline.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
  const retry = { maxAttempts: 5, initialDelayMs: 200, maxDelayMs: 30_000, ...options.retry };

  // stop: graceful (no more pulls); kill: abandon in-flight work
  const stop = new AbortController();
  const kill = new AbortController();
  const onStop = () => stop.abort(options.signal?.reason);
  const onKill = () => {
    stop.abort(options.killSignal?.reason);
    kill.abort(options.killSignal?.reason);
  };
  if (options.signal?.aborted) onStop();
  options.signal?.addEventListener('abort', onStop, { once: true });
  options.killSignal?.addEventListener('abort', onKill, { once: true });

  const http = new HttpClient(permissions, { registry });
  let storePromise: Promise<ClickHouseStore> | undefined;
  const store = () => {
    storePromise ??= options.openStore
      ? options.openStore()
      : Promise.reject(new FatalError('this run has no ClickHouse store', { hint: 'pass openStore to runPipeline' }));
    return storePromise;
  };
  const ctx: PipelineContext<Record<string, unknown>> = {
    runId,
    pipeline: pipeline.name,
    signal: stop.signal,
    permissions,
    fs: new GuardedFs(permissions),
    http,
    log,
    stateDir,
    metrics: registry,
    store,
    params,
  };

  const counts: RunCounts = {
    items: 0, itemsDone: 0, records: 0, bytes: 0, recordsBySink: {},
    errors: { transient: 0, permanent: 0, fatal: 0 }, skipped: 0, deadLettered: 0, retries: 0,
  };
  const record: RunRecord = {
    id: runId,
    pipeline: pipeline.name,
    params,
    trigger: options.trigger ?? 'cli',
    ...(options.triggerId ? { triggerId: options.triggerId } : {}),
    status: 'running',
    startedAt: new Date().toISOString(),
    counts,
    errors: [],
  };
  const started = performance.now();
  await runStore.save(record);
  const deadLetters = new DeadLetterFile(stateDir, pipeline.name, runId);

  let fatal: unknown;
  const failRun = (err: unknown) => {
    if (fatal === undefined) fatal = err;
    stop.abort(err);
  };
  const noteError = (err: unknown, component: string, item?: string, kind: ErrorKind = classifyError(err)) => {
    counts.errors[kind]++;
    metrics.error(component, component === 'source' ? 'source' : component === 'transform' ? 'transform' : 'sink', kind);
    if (record.errors.length < MAX_RECORDED_ERRORS) {
      record.errors.push({ item, kind, message: describeError(err), component });
    }
  };

  // ---- in-flight bookkeeping -------------------------------------------------------
  let inFlight = 0;
  let wakePuller: (() => void) | undefined;
  let wakeDrain: (() => void) | undefined;
  let pullerBlocked = false;
  const lanes: SinkLane<unknown>[] = [];
  const live = new Set<Ticket>();
  let filtered = 0;

  // engine metrics in bulk: the hot path counts with plain numbers, this pushes the deltas
  const synced = { items: 0, bytes: 0, records: 0, filtered: 0 };
  const syncMetrics = () => {
    metrics.itemsReceived(counts.items - synced.items, counts.bytes - synced.bytes);
    metrics.recordsEmitted(counts.records - synced.records);
    if (filtered > synced.filtered) metrics.discarded('transform', 'transform', filtered - synced.filtered, 'filtered');
    metrics.setInFlight(inFlight);
    synced.items = counts.items;
    synced.bytes = counts.bytes;
    synced.records = counts.records;
    synced.filtered = filtered;
  };

  const settle = (ticket: Ticket) => {
    if (ticket.finished || !ticket.transformDone || ticket.pending > 0) return;
    ticket.finished = true;
    live.delete(ticket);
    inFlight--;
    counts.itemsDone++;
    if (ticket.startedAt >= 0) metrics.itemDone((performance.now() - ticket.startedAt) / 1000);
    const item = ticket.item;
    try {
      const done = ticket.failed ? undefined : item.ack?.();
      if (done && typeof (done as Promise<void>).catch === 'function') {
        (done as Promise<void>).catch((err) => log.warn(`acknowledging ${item.id} failed`, { error: describeError(err) }));
      }
    } catch (err) {
      log.warn(`acknowledging ${item.id} failed`, { error: describeError(err) });
    }
    if (wakePuller) { const w = wakePuller; wakePuller = undefined; w(); }
    if (inFlight === 0 && wakeDrain) { const w = wakeDrain; wakeDrain = undefined; w(); }
  };

  /** Apply the error policy to an item (once), and to a record it produced (each time). */
  const failItem = (ticket: Ticket, err: unknown, component: string, failedRecord?: unknown) => {
    const id = ticket.item.id;
    if (classifyError(err) === 'fatal') {
      // the run cannot go on (a table gone, bad credentials): no policy applies, the item
      // is handed back untouched for a later run
      if (fatal === undefined) noteError(err, component, id, 'fatal');
      if (!ticket.failed) {
        ticket.failed = true;
        callNack(ticket.item, err, true, log);
      }
      failRun(err);
      return;
    }
    const interrupted = stop.signal.aborted && fatal === undefined;
    if (!ticket.failed) {
      ticket.failed = true;
      if (interrupted) {
        // stopped mid-item: not the item's fault, hand it back for redelivery
        callNack(ticket.item, err, true, log);
      } else {
        noteError(err, component, id);
        log.warn(`${id}: ${describeError(err)}`, { component, policy: onError });
        if (onError === 'fail') failRun(err);
        else if (onError === 'skip') counts.skipped++;
        callNack(ticket.item, err, false, log);
      }
    }
    if (onError === 'dead-letter' && !interrupted) {
      counts.deadLettered++;
      deadLetters.add(id, component, err, failedRecord).catch((e) => failRun(new FatalError(`cannot write dead letters to ${deadLetters.file}: ${describeError(e)}`)));
    }
  };

  // ---- sinks -------------------------------------------------------------------------
  const sinks = pipeline.sinks(ctx) as ReadonlyArray<Sink<unknown>>;
  for (const sink of sinks) {
    lanes.push(new SinkLane(sink, {
      signal: kill.signal,
      retry,
      onAccepted: (n, bytes) => {
        counts.recordsBySink[sink.name] = (counts.recordsBySink[sink.name] ?? 0) + n;
        metrics.sinkSent(sink.name, sink.kind, n, bytes);
        syncMetrics();
      },
      onRetry: (err, attempt, delayMs) => {
        counts.retries++;
        noteError(err, sink.name, undefined, 'transient');
        log.warn(`sink ${sink.name}: ${describeError(err)}; retry ${attempt} in ${Math.round(delayMs)} ms`);
      },
      onFailed: (err, records, tickets, encoded = true) => {
        const decode = encoded ? sink.batch?.decode as ((encoded: unknown) => unknown) | undefined : undefined;
        for (let i = 0; i < records.length; i++) failItem(tickets[i]!, err, sink.name, decode ? decode(records[i]) : records[i]);
        metrics.discarded(sink.name, 'sink', records.length, classifyError(err));
      },
      settle,
    }));
  }

  let sourceIterator: AsyncIterator<unknown> | Iterator<unknown> | undefined;
  try {
    for (const sink of sinks) await sink.open?.(ctx);
    const transform = pipeline.transform?.(ctx) as OperatorFunction<unknown, unknown> | undefined;

    const emit = (ticket: Ticket, value: unknown) => {
      ticket.records++;
      counts.records++;
      for (const lane of lanes) lane.push(value, ticket);
    };

    const transformFailed = (ticket: Ticket, err: unknown) => {
      const kind = classifyError(err);
      // retry only an item that has not emitted yet, so no record is written twice
      if (kind === 'transient' && ticket.records === 0 && ticket.attempts < retry.maxAttempts && !stop.signal.aborted && !pipeline.syncTransform) {
        const delay = retryDelay(ticket.attempts, retry, err);
        ticket.attempts++;
        counts.retries++;
        noteError(err, 'transform', ticket.item.id, 'transient');
        delayFor(delay, stop.signal).then(() => runTransform(ticket), () => {
          failItem(ticket, err, 'transform');
          ticket.transformDone = true;
          settle(ticket);
        });
        return;
      }
      failItem(ticket, err, 'transform');
      ticket.transformDone = true;
      settle(ticket);
    };

    const transformDone = (ticket: Ticket) => {
      if (ticket.records === 0) filtered++;
      ticket.transformDone = true;
      ticket.releaseData();
      if (pullerBlocked) scheduleFlush();
      settle(ticket);
    };

    /** One item's inner subscription; a class, so an item costs no closures. */
    class ItemObserver {
      constructor(private readonly ticket: Ticket) {}
      next(value: unknown) { emit(this.ticket, value); }
      error(err: unknown) { transformFailed(this.ticket, err); }
      complete() { transformDone(this.ticket); }
    }

    // `syncTransform`: one subscription for the whole run; every record the transform
    // emits while an item's value is pushed belongs to that item
    let shared: { subject: Subject<unknown>; current: Ticket | undefined; broken: boolean; ended: Promise<void> } | undefined;
    const openShared = () => {
      let ended!: () => void;
      const state = {
        subject: new Subject<unknown>(),
        current: undefined as Ticket | undefined,
        broken: false,
        ended: new Promise<void>((resolve) => { ended = resolve; }),
      };
      transform!(state.subject).pipe(finalize(() => ended())).subscribe({
        next: (value) => {
          if (state.current) {
            emit(state.current, value);
            return;
          }
          const err = new FatalError(`${pipeline.name}: the transform emitted a record after its item was done, which syncTransform does not allow`, { hint: 'remove syncTransform from the pipeline: its transform has asynchronous operators' });
          if (fatal === undefined) noteError(err, 'transform', undefined, 'fatal');
          failRun(err);
        },
        error: (err) => {
          state.broken = true;
          if (state.current) failItem(state.current, err, 'transform');
          else {
            noteError(err, 'transform', undefined, 'fatal');
            failRun(err);
          }
        },
        complete: () => { state.broken = true; },
      });
      return state;
    };

    const runTransform = (ticket: Ticket) => {
      const data = ticket.item.data;
      if (!transform) {
        emit(ticket, data);
        ticket.transformDone = true;
        ticket.releaseData();
        settle(ticket);
        return;
      }
      if (pipeline.syncTransform) {
        if (!shared || shared.broken) shared = openShared();
        shared.current = ticket;
        shared.subject.next(data);
        shared.current = undefined;
        if (ticket.failed) {
          ticket.transformDone = true;
          settle(ticket);
        } else {
          transformDone(ticket);
        }
        return;
      }
      ticket.subscription = transform(of(data)).subscribe(new ItemObserver(ticket));
    };

    // while the puller waits for a free slot, partial batches must go out, or the
    // items holding the slots would wait for records that never come
    let flushScheduled = false;
    const scheduleFlush = () => {
      if (flushScheduled) return;
      flushScheduled = true;
      setImmediate(() => {
        flushScheduled = false;
        for (const lane of lanes) lane.flush();
      });
    };

    const report = options.onProgress;
    const progressTimer = setInterval(() => {
      syncMetrics();
      report?.(counts, inFlight);
    }, options.progressIntervalMs ?? 250);
    progressTimer.unref();
    // one listener for the whole run (a listener per wait would pile up on the signal)
    stop.signal.addEventListener('abort', () => {
      const wake = wakePuller;
      wakePuller = undefined;
      wake?.();
    }, { once: true });

    const source = await pipeline.source(ctx);
    sourceIterator = Symbol.asyncIterator in source
      ? (source as AsyncIterable<unknown>)[Symbol.asyncIterator]()
      : (source as Iterable<unknown>)[Symbol.iterator]();
    let sequence = 0;
    let lastYield = performance.now();
    try {
      while (!stop.signal.aborted) {
        if (inFlight >= maxInFlight) {
          pullerBlocked = true;
          for (const lane of lanes) lane.flush();
          await new Promise<void>((resolve) => { wakePuller = resolve; });
          pullerBlocked = false;
          continue;
        }
        // a source and sinks that never wait would keep the run in microtasks: give
        // timers, signals, /metrics and heartbeats a turn every 10 ms
        if ((sequence & 255) === 0 && performance.now() - lastYield > 10) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          lastYield = performance.now();
          if (stop.signal.aborted) break;
        }
        const next = await sourceIterator.next();
        if (next.done) break;
        const raw = next.value;
        sequence++;
        const item: Item<unknown> = isTaggedItem(raw) ? raw : new PlainItem(raw, sequence);
        const ticket = new Ticket(item);
        if (sequence % LATENCY_SAMPLE === 1) ticket.startedAt = performance.now();
        live.add(ticket);
        inFlight++;
        counts.items++;
        counts.bytes += item.bytes ?? 0;
        if (item.error !== undefined) {
          failItem(ticket, item.error, 'source');
          ticket.transformDone = true;
          settle(ticket);
          continue;
        }
        runTransform(ticket);
      }
    } catch (err) {
      // a source that throws cannot be resumed: the run fails, what was pulled is still written
      noteError(err, 'source', undefined, 'fatal');
      failRun(err);
      log.error(`source failed: ${describeError(err)}`);
    }
    if (stop.signal.aborted) await closeIterator(sourceIterator);

    // ---- drain: finish in-flight items, flush every sink -------------------------------
    const drained = new Promise<void>((resolve) => {
      if (inFlight === 0) resolve();
      else wakeDrain = resolve;
    });
    const flushLoop = setInterval(() => { for (const lane of lanes) lane.flush(); }, 50);
    for (const lane of lanes) lane.flush();
    if (stop.signal.aborted) {
      // stopping (signal or failed run): give in-flight items a grace period, then abandon them
      const grace = delayFor(options.stopGraceMs ?? 10_000, kill.signal).catch(() => undefined);
      await Promise.race([drained, grace]);
      for (const ticket of live) {
        ticket.subscription?.unsubscribe();
        callNack(ticket.item, stop.signal.reason, true, log);
      }
    } else {
      await drained;
    }
    if (shared && !shared.broken) {
      // end the shared stream: anything an operator still held comes out now (and, being
      // outside any item, fails the run as it must)
      shared.subject.complete();
      await Promise.race([shared.ended, delayFor(options.stopGraceMs ?? 10_000, kill.signal).catch(() => undefined)]);
    }
    clearInterval(flushLoop);
    clearInterval(progressTimer);
    await Promise.all(lanes.map((lane) => lane.drain()));
  } catch (err) {
    noteError(err, 'run', undefined, 'fatal');
    failRun(err);
    log.error(describeError(err));
  } finally {
    options.signal?.removeEventListener('abort', onStop);
    options.killSignal?.removeEventListener('abort', onKill);
  }

  const status: Exclude<RunStatus, 'running'> = fatal !== undefined ? 'failed' : stop.signal.aborted ? 'interrupted' : 'succeeded';
  for (const sink of sinks) {
    try {
      await sink.close?.({ status });
    } catch (err) {
      noteError(err, sink.name, undefined, 'fatal');
      log.error(`closing sink ${sink.name} failed: ${describeError(err)}`);
    }
  }
  await deadLetters.close().catch(() => undefined);
  await http.close().catch(() => undefined);
  if (storePromise && !options.keepStoreOpen) await storePromise.then((s) => s.close(), () => undefined);
  const finalStatus: Exclude<RunStatus, 'running'> = record.errors.some((e) => e.kind === 'fatal') ? 'failed' : status;
  record.status = finalStatus;
  record.endedAt = new Date().toISOString();
  record.durationMs = Math.round(performance.now() - started);
  syncMetrics();
  metrics.runFinished(record.durationMs / 1000, finalStatus);
  await runStore.save(record);
  return record;
}

/** Backoff with jitter, but never sooner than the other side asked (Retry-After). */
function retryDelay(attempt: number, retry: BackoffOptions, err: unknown): number {
  const asked = (err as { retryAfterMs?: unknown } | null)?.retryAfterMs;
  return Math.max(backoffDelay(attempt, retry), typeof asked === 'number' ? asked : 0);
}

function callNack(item: Item<unknown>, err: unknown, requeue: boolean, log: Logger) {
  try {
    const done = item.nack?.(err, requeue);
    if (done && typeof (done as Promise<void>).catch === 'function') {
      (done as Promise<void>).catch((e) => log.warn(`rejecting ${item.id} failed`, { error: describeError(e) }));
    }
  } catch (e) {
    log.warn(`rejecting ${item.id} failed`, { error: describeError(e) });
  }
}

async function closeIterator(iterator: AsyncIterator<unknown> | Iterator<unknown>): Promise<void> {
  try {
    await iterator.return?.();
  } catch {
    // a source that fails while closing has nothing more to give
  }
}

interface LaneHooks {
  signal: AbortSignal;
  retry: { maxAttempts: number; initialDelayMs: number; maxDelayMs: number };
  onAccepted: (records: number, bytes: number) => void;
  onRetry: (err: unknown, attempt: number, delayMs: number) => void;
  /** `encoded`: the records are what the sink's encode made of them (default true) */
  onFailed: (err: unknown, records: unknown[], tickets: Ticket[], encoded?: boolean) => void;
  settle: (ticket: Ticket) => void;
}

/**
 * One sink's queue: records gather into a batch (by count, bytes or time); one write is
 * in progress at a time; a transient failure holds the batch and retries it with
 * backoff, so the items behind it stay unacknowledged.
 */
class SinkLane<R> {
  private records: R[] = [];
  private tickets: Ticket[] = [];
  private bytes = 0;
  private writing: Promise<void> | undefined;
  private flushRequested = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly maxRecords: number;
  private readonly maxBytes: number;
  private readonly maxDelayMs: number;
  private readonly sizeOf?: (record: R) => number;
  private readonly encode?: (record: R) => R;

  constructor(private readonly sink: Sink<R>, private readonly hooks: LaneHooks) {
    const policy = sink.batch ?? {};
    this.maxRecords = policy.maxRecords ?? DEFAULT_BATCH.maxRecords;
    this.maxBytes = policy.maxBytes ?? Infinity;
    this.maxDelayMs = policy.maxDelayMs ?? DEFAULT_BATCH.maxDelayMs;
    // the lane holds (and sizes, writes and splits) what encode makes of a record
    this.encode = policy.encode as ((record: R) => R) | undefined;
    this.sizeOf = policy.maxBytes !== undefined
      ? (policy.sizeOf as ((r: R) => number) | undefined) ?? ((r: R) => Buffer.byteLength(JSON.stringify(r) ?? ''))
      : undefined;
  }

  push(value: R, ticket: Ticket): void {
    let record = value;
    if (this.encode) {
      try {
        record = this.encode(value);
      } catch (err) {
        // a record the sink cannot take fails alone, like a record its write rejected
        this.hooks.onFailed(err, [value], [ticket], false);
        return;
      }
    }
    this.records.push(record);
    this.tickets.push(ticket);
    ticket.pending++;
    if (this.sizeOf) this.bytes += this.sizeOf(record);
    if (this.records.length >= this.maxRecords || this.bytes >= this.maxBytes) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => { this.timer = undefined; this.flush(); }, this.maxDelayMs);
  }

  flush(): void {
    if (this.records.length === 0) return;
    if (this.writing) {
      // asked while a write is out: go as soon as it is back, not after maxDelayMs
      this.flushRequested = true;
      return;
    }
    this.flushRequested = false;
    if (this.timer) { clearTimeout(this.timer); this.timer = undefined; }
    // never more than maxRecords in one write, even when records piled up behind a slow one
    let records: R[], tickets: Ticket[], bytes: number;
    if (this.records.length <= this.maxRecords) {
      records = this.records;
      tickets = this.tickets;
      bytes = this.bytes;
      this.records = [];
      this.tickets = [];
      this.bytes = 0;
    } else {
      const total = this.records.length;
      records = this.records.splice(0, this.maxRecords);
      tickets = this.tickets.splice(0, this.maxRecords);
      bytes = Math.round((this.bytes * records.length) / total);
      this.bytes -= bytes;
    }
    this.writing = this.write(records, tickets, bytes).finally(() => {
      this.writing = undefined;
      if (this.flushRequested || this.records.length >= this.maxRecords || this.bytes >= this.maxBytes) this.flush();
      else if (this.records.length && !this.timer) this.timer = setTimeout(() => { this.timer = undefined; this.flush(); }, this.maxDelayMs);
    });
  }

  async drain(): Promise<void> {
    for (;;) {
      this.flush();
      if (!this.writing) return;
      await this.writing;
    }
  }

  private async write(records: R[], tickets: Ticket[], bytes: number): Promise<void> {
    await this.writeIsolating(records, tickets, bytes);
    for (const ticket of tickets) {
      ticket.pending--;
      this.hooks.settle(ticket);
    }
  }

  /**
   * A batch that fails for good is split in halves and each half written again, so one
   * bad record costs O(log n) extra writes and only it is rejected, not its neighbours.
   */
  private async writeIsolating(records: R[], tickets: Ticket[], bytes: number): Promise<void> {
    const error = await this.writeWithRetry(records, tickets, bytes);
    if (error === undefined) return;
    if (records.length > 1 && this.sink.batch?.isolateFailures !== false && classifyError(error) === 'permanent' && !this.hooks.signal.aborted) {
      const half = Math.ceil(records.length / 2);
      const halfBytes = Math.round(bytes / 2);
      await this.writeIsolating(records.slice(0, half), tickets.slice(0, half), halfBytes);
      await this.writeIsolating(records.slice(half), tickets.slice(half), bytes - halfBytes);
      return;
    }
    this.hooks.onFailed(error, records, tickets);
  }

  /** Resolves to undefined when written, or to the error that ended the retries. */
  private async writeWithRetry(records: R[], tickets: Ticket[], bytes: number): Promise<unknown> {
    // item ids only when a sink asks (most do not): making them costs per record
    let itemIds: string[] | undefined;
    const signal = this.hooks.signal;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.sink.write(records, {
          signal,
          attempt,
          get itemIds() {
            itemIds ??= [...new Set(tickets.map((t) => t.item.id))];
            return itemIds;
          },
        });
        this.hooks.onAccepted(records.length, bytes);
        return undefined;
      } catch (err) {
        const kind = classifyError(err);
        if (kind === 'transient' && attempt < this.hooks.retry.maxAttempts && !this.hooks.signal.aborted) {
          const delay = retryDelay(attempt, this.hooks.retry, err);
          this.hooks.onRetry(err, attempt, delay);
          try {
            await delayFor(delay, this.hooks.signal);
            continue;
          } catch {
            // killed while waiting: fall through and fail the batch
          }
        }
        return err;
      }
    }
  }
}
