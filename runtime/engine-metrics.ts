/**
 * The engine's own Prometheus metrics: what came in, what went out, what was dropped,
 * what failed and how runs ended. Names follow Vector's `component_*` set with a
 * `sluice_` prefix, so dashboards written for Vector read naturally here:
 *
 * | metric                                          | type      | labels                                                        |
 * |-------------------------------------------------|-----------|---------------------------------------------------------------|
 * | `sluice_component_received_events_total`        | counter   | pipeline, component_id, component_kind                        |
 * | `sluice_component_received_bytes_total`         | counter   | pipeline, component_id, component_kind                        |
 * | `sluice_component_sent_events_total`            | counter   | pipeline, component_id, component_kind, component_type        |
 * | `sluice_component_sent_event_bytes_total`       | counter   | pipeline, component_id, component_kind, component_type        |
 * | `sluice_component_discarded_events_total`       | counter   | pipeline, component_id, component_kind, reason                |
 * | `sluice_component_errors_total`                 | counter   | pipeline, component_id, component_kind, error_type            |
 * | `sluice_item_latency_seconds`                   | histogram | pipeline                                                      |
 * | `sluice_items_in_flight`                        | gauge     | pipeline                                                      |
 * | `sluice_run_duration_seconds`                   | gauge     | pipeline                                                      |
 * | `sluice_runs_total`                             | counter   | pipeline, status                                              |
 * | `sluice_last_success_timestamp_seconds`         | gauge     | pipeline                                                      |
 *
 * `component_type` is Vector's name for what a component is: the sink's `kind`
 * (`clickhouse`, `prometheus` …); it is empty for the transform, which has no kind.
 *
 * Several `EngineMetrics` (one per run, several pipelines in one daemon) may share one
 * registry: each metric is created once per registry and reused afterwards.
 *
 * Metrics never break the data path: a count that is not a finite number ≥ 0 (a source
 * reporting `NaN` bytes, say) is ignored rather than thrown.
 *
 * @example
 * ```ts
 * const registry = new Registry();
 * const metrics = new EngineMetrics(registry, 'cvmfs');
 * metrics.itemReceived(4096);
 * metrics.sinkSent('clickhouse', 'clickhouse', 120, 18_000);
 * metrics.runFinished(12.5, 'succeeded');
 * ```
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type ComponentKind = 'source' | 'transform' | 'sink';
export type EngineErrorType = 'transient' | 'permanent' | 'fatal';
export type FinishedRunStatus = 'succeeded' | 'failed' | 'interrupted';

/** Latency buckets from 1 ms to 5 min, roughly 1-2.5-5 per decade. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

const COMPONENT = ['pipeline', 'component_id', 'component_kind'] as const;
const SENT = [...COMPONENT, 'component_type'] as const;

type MetricClass = typeof Counter | typeof Gauge | typeof Histogram;

/** The metric `name` in `registry`, created on first use; an existing one must match in type and labels. */
function shared<C extends MetricClass>(
  registry: Registry,
  Class: C,
  name: string,
  help: string,
  labelNames: readonly string[],
  extra: { buckets?: number[] } = {},
): InstanceType<C> {
  const existing = registry.getSingleMetric(name);
  if (existing) {
    const existingLabels = (existing as unknown as { labelNames?: readonly string[] }).labelNames ?? [];
    const sameLabels = existingLabels.length === labelNames.length && labelNames.every((l) => existingLabels.includes(l));
    if (!(existing instanceof Class) || !sameLabels) {
      throw new Error(
        `metric ${name} is already registered as a different metric (labels [${existingLabels.join(', ')}]); ` +
          `the engine needs a ${Class.name.toLowerCase()} with labels [${labelNames.join(', ')}]: ` +
          'rename the data metric that uses this name',
      );
    }
    return existing as InstanceType<C>;
  }
  const MetricCtor = Class as unknown as new (config: object) => InstanceType<C>;
  const metric = new MetricCtor({ name, help, labelNames: [...labelNames], registers: [], ...extra });
  registry.registerMetric(metric as unknown as Counter);
  return metric;
}

/** A count the engine reported, or undefined when it is not a usable increment. */
function usable(n: number): number | undefined {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : undefined;
}

export class EngineMetrics {
  private readonly receivedEvents: Counter<string>;
  private readonly receivedBytes: Counter<string>;
  private readonly sentEvents: Counter<string>;
  private readonly sentBytes: Counter<string>;
  private readonly discardedEvents: Counter<string>;
  private readonly errors: Counter<string>;
  private readonly latency: Histogram<string>;
  private readonly inFlight: Gauge<string>;
  private readonly runDuration: Gauge<string>;
  private readonly runs: Counter<string>;
  private readonly lastSuccess: Gauge<string>;

  constructor(registry: Registry, readonly pipeline: string) {
    this.receivedEvents = shared(registry, Counter, 'sluice_component_received_events_total',
      'Items the component received (for the source: items pulled).', COMPONENT);
    this.receivedBytes = shared(registry, Counter, 'sluice_component_received_bytes_total',
      'Bytes the received items stand for (file sizes, body lengths).', COMPONENT);
    this.sentEvents = shared(registry, Counter, 'sluice_component_sent_events_total',
      'Records the component passed on (transform: records emitted; sink: records durably written).', SENT);
    this.sentBytes = shared(registry, Counter, 'sluice_component_sent_event_bytes_total',
      'Estimated size of the records a sink durably wrote.', SENT);
    this.discardedEvents = shared(registry, Counter, 'sluice_component_discarded_events_total',
      'Items or records the component dropped, by reason.', [...COMPONENT, 'reason']);
    this.errors = shared(registry, Counter, 'sluice_component_errors_total',
      'Errors the component met, by kind (transient: retried; permanent: item failed; fatal: run failed).',
      [...COMPONENT, 'error_type']);
    this.latency = shared(registry, Histogram, 'sluice_item_latency_seconds',
      'Time from pulling an item to every sink accepting its records.', ['pipeline'], { buckets: LATENCY_BUCKETS });
    this.inFlight = shared(registry, Gauge, 'sluice_items_in_flight',
      'Items pulled from the source and not yet acknowledged.', ['pipeline']);
    this.runDuration = shared(registry, Gauge, 'sluice_run_duration_seconds',
      'Duration of the last finished run.', ['pipeline']);
    this.runs = shared(registry, Counter, 'sluice_runs_total', 'Finished runs, by final status.', ['pipeline', 'status']);
    this.lastSuccess = shared(registry, Gauge, 'sluice_last_success_timestamp_seconds',
      'Unix time at which the last successful run finished.', ['pipeline']);

    // series that exist from the start, so rate() and increase() see the first event
    this.receivedEvents.inc(this.source, 0);
    this.receivedBytes.inc(this.source, 0);
    this.sentEvents.inc(this.transform, 0);
    for (const status of ['succeeded', 'failed', 'interrupted'] as const) this.runs.inc({ pipeline, status }, 0);
  }

  private get source() {
    return { pipeline: this.pipeline, component_id: 'source', component_kind: 'source' };
  }

  private get transform() {
    return { pipeline: this.pipeline, component_id: 'transform', component_kind: 'transform', component_type: '' };
  }

  /** The source produced one item standing for `bytes` bytes (0 when unknown). */
  itemReceived(bytes: number): void {
    this.itemsReceived(1, bytes);
  }

  /**
   * The source produced `count` items standing for `bytes` bytes in all. The runner
   * counts on its hot path with plain numbers and reports here in bulk, because each
   * prom-client update costs ~0.3 µs of label hashing.
   */
  itemsReceived(count: number, bytes: number): void {
    const c = usable(count);
    if (c) this.receivedEvents.inc(this.source, c);
    const n = usable(bytes);
    if (n) this.receivedBytes.inc(this.source, n);
  }

  /** An item left flight `latencySeconds` after it was pulled. */
  itemDone(latencySeconds: number): void {
    if (typeof latencySeconds !== 'number' || Number.isNaN(latencySeconds)) return;
    // a clock step can make a duration negative; it still took (about) no time
    this.latency.observe({ pipeline: this.pipeline }, Math.min(Math.max(latencySeconds, 0), Number.MAX_VALUE));
  }

  setInFlight(n: number): void {
    const value = usable(n);
    if (value !== undefined) this.inFlight.set({ pipeline: this.pipeline }, value);
  }

  /** The transform emitted `n` records. */
  recordsEmitted(n: number): void {
    const value = usable(n);
    if (value) this.sentEvents.inc(this.transform, value);
  }

  /** Sink `sinkName` (of kind `sinkKind`) durably wrote `records` records of about `bytes` bytes. */
  sinkSent(sinkName: string, sinkKind: string, records: number, bytes: number): void {
    const labels = { pipeline: this.pipeline, component_id: sinkName, component_kind: 'sink', component_type: sinkKind };
    this.sentEvents.inc(labels, usable(records) ?? 0);
    this.sentBytes.inc(labels, usable(bytes) ?? 0);
  }

  /** `n` items or records were dropped by a component, e.g. `reason` = `filtered`, `permanent`, `dead-lettered`. */
  discarded(componentId: string, componentKind: ComponentKind, n: number, reason: string): void {
    const value = usable(n);
    if (value === undefined) return;
    this.discardedEvents.inc({ pipeline: this.pipeline, component_id: componentId, component_kind: componentKind, reason }, value);
  }

  error(componentId: string, componentKind: ComponentKind, errorKind: EngineErrorType): void {
    this.errors.inc({ pipeline: this.pipeline, component_id: componentId, component_kind: componentKind, error_type: errorKind }, 1);
  }

  /** A run ended: its duration, a count by status, and on success the time of the last success. */
  runFinished(durationSeconds: number, status: FinishedRunStatus): void {
    const pipeline = this.pipeline;
    const duration = usable(durationSeconds);
    if (duration !== undefined) this.runDuration.set({ pipeline }, duration);
    this.runs.inc({ pipeline, status }, 1);
    if (status === 'succeeded') this.lastSuccess.set({ pipeline }, Date.now() / 1000);
  }
}
