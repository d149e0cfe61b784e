/**
 * The `prometheus` sink: turns records into data metrics (gauges and counters) in the
 * run's metrics registry (`ctx.metrics`), which the daemon serves on `/metrics` or
 * writes as a node_exporter textfile (see runtime/metrics-exporter.ts).
 *
 * Each metric says how to read its value from a record and where its labels come from:
 * `labels` names fields of the record, or, with `labelsOf`, lists the label names that
 * `labelsOf(record)` fills in. A gauge is set to the value (NaN and ±Inf are allowed);
 * a counter is increased by it (it must be finite and ≥ 0).
 *
 * Names are checked when the sink is defined, against Prometheus' rules and the lints
 * of `promtool check metrics` (counters end in `_total`, snake_case, base units …), so
 * what a pipeline exports always passes them.
 *
 * Bad data never fails a batch: a record without a value for a label gets `""` and is
 * counted in `sluice_prometheus_sink_missing_labels_total`; a record whose value cannot
 * be used (not a number, a negative or non-finite counter increment, a throwing value
 * function) is skipped and counted in `sluice_prometheus_sink_invalid_values_total`.
 *
 * With `resetEachRun`, a successful run removes the series this sink (same pipeline,
 * same sink name) wrote in earlier runs of the process and did not write in this one,
 * so a repository that vanished stops being reported. A failed or interrupted run
 * removes nothing. Series written by other pipelines or sinks are never touched; runs
 * of one pipeline that report disjoint parts of a metric (one per server, say) should
 * give their sinks distinct names.
 *
 * @example
 * ```ts
 * sinks: ({ params }) => [
 *   prometheus<{ repo: string; server: string; revision: number }>({
 *     name: `revisions-${params.server}`,
 *     resetEachRun: true,
 *     metrics: {
 *       cvmfs_revision: { type: 'gauge', help: 'Repository revision', labels: ['server', 'repo'], value: (r) => r.revision },
 *       cvmfs_files_total: { type: 'counter', help: 'Files seen', labels: [], value: () => 1 },
 *     },
 *   }),
 * ],
 * ```
 */
import { Counter, Gauge, Histogram, Summary, type Registry } from 'prom-client';
import type { RunContext } from '../runtime/context.ts';
import { FatalError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import type { RunOutcome, Sink } from '../runtime/pipeline.ts';

export type PrometheusMetricType = 'gauge' | 'counter';

interface MetricCommon<R> {
  readonly type: PrometheusMetricType;
  readonly help: string;
  /** the sample's value: a gauge is set to it, a counter increased by it */
  readonly value: (record: R) => number;
  /** overrides the sink's `resetEachRun` for this metric */
  readonly resetEachRun?: boolean;
}

/** Labels read from fields of the record. */
interface FieldLabels<R> {
  readonly labels: ReadonlyArray<keyof R & string>;
  readonly labelsOf?: undefined;
}

/** Labels computed from the record; `labels` declares their names. */
interface ComputedLabels<R> {
  readonly labels: readonly string[];
  readonly labelsOf: (record: R) => Readonly<Record<string, string>>;
}

export type PrometheusMetricSpec<R> = MetricCommon<R> & (FieldLabels<R> | ComputedLabels<R>);

export interface PrometheusSinkSpec<R> {
  /** the sink's name in run records, engine metrics and resetEachRun ownership; default `prometheus` */
  readonly name?: string;
  /** metric name → how to fill it */
  readonly metrics: { readonly [metricName: string]: PrometheusMetricSpec<R> };
  /** on a successful run, drop series not written in it (default false) */
  readonly resetEachRun?: boolean;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const CAMEL_CASE = /[a-z][A-Z]/;

// the unit lints of promtool (client_golang's promlint)
const NON_BASE_UNITS: Record<string, string> = {
  minutes: 'seconds', hours: 'seconds', days: 'seconds', weeks: 'seconds',
  bits: 'bytes', kilobytes: 'bytes', megabytes: 'bytes', gigabytes: 'bytes', terabytes: 'bytes', petabytes: 'bytes',
  fahrenheit: 'celsius', feet: 'meters',
};
const BASE_UNITS = ['amperes', 'bytes', 'celsius', 'grams', 'joules', 'kelvin', 'meters', 'metres', 'seconds', 'volts'];
const UNIT_PREFIXES = ['pico', 'nano', 'micro', 'milli', 'centi', 'deci', 'deca', 'hecto', 'kilo', 'kibi', 'mega', 'mebi', 'giga', 'gibi', 'tera', 'tebi', 'peta', 'pebi'];
const UNIT_ABBREVIATIONS = ['s', 'ms', 'us', 'ns', 'sec', 'b', 'kb', 'mb', 'gb', 'tb', 'pb', 'm', 'h', 'd'];

function invalid(metric: string, problem: string, hint: string): FatalError {
  return new FatalError(`prometheus sink: metric ${JSON.stringify(metric)} ${problem}`, { hint });
}

/** Throws a FatalError naming the problem if Prometheus or `promtool check metrics` would refuse metric `name`. */
function checkMetric(name: string, spec: { type: unknown; help: unknown; labels: unknown; labelsOf?: unknown; value: unknown }): void {
  if (!METRIC_NAME.test(name)) {
    throw invalid(name, 'is not a valid Prometheus metric name', 'use letters, digits and underscores, not starting with a digit');
  }
  if (name.includes(':')) throw invalid(name, 'contains ":"', 'colons are reserved for recording rules; use "_"');
  if (name.startsWith('__')) throw invalid(name, 'starts with "__"', 'names starting with "__" are reserved by Prometheus');
  if (CAMEL_CASE.test(name)) throw invalid(name, 'is camelCase', 'metric names are snake_case');
  if (spec.type !== 'gauge' && spec.type !== 'counter') {
    throw invalid(name, `has type ${JSON.stringify(spec.type)}`, 'the type is "gauge" or "counter"');
  }
  if (typeof spec.help !== 'string' || spec.help.trim() === '') throw invalid(name, 'has no help text', 'say what the metric measures in `help`');
  if (typeof spec.value !== 'function') throw invalid(name, 'has no value function', 'give `value: (record) => number`');
  if (spec.type === 'counter' && !name.endsWith('_total')) {
    throw invalid(name, 'is a counter without the "_total" suffix', `call it ${name}_total`);
  }
  if (spec.type !== 'counter' && name.endsWith('_total')) {
    throw invalid(name, 'is a gauge with the "_total" suffix', 'only counters end in "_total"; drop the suffix or make it a counter');
  }
  for (const suffix of ['_bucket', '_count', '_sum', '_created']) {
    if (name.endsWith(suffix)) throw invalid(name, `ends in "${suffix}"`, 'that suffix is reserved for histograms and summaries');
  }
  const parts = name.toLowerCase().split('_');
  for (const type of ['counter', 'gauge', 'histogram', 'summary']) {
    if (parts.includes(type)) throw invalid(name, `includes its type "${type}"`, 'the type is already in the exposition; leave it out of the name');
  }
  for (const part of parts) {
    const base = NON_BASE_UNITS[part] ?? (UNIT_PREFIXES.some((p) => part.startsWith(p) && BASE_UNITS.includes(part.slice(p.length))) ? BASE_UNITS.find((u) => part.endsWith(u)) : undefined);
    if (base) throw invalid(name, `uses the unit "${part}"`, `use the base unit "${base}" and scale the value`);
    if (UNIT_ABBREVIATIONS.includes(part)) throw invalid(name, `contains the abbreviated unit "${part}"`, 'spell the unit out, e.g. "seconds", "bytes"');
  }
  if (!Array.isArray(spec.labels)) throw invalid(name, 'has no `labels` list', 'give `labels: []` when it has none');
  if (spec.labelsOf !== undefined && typeof spec.labelsOf !== 'function') throw invalid(name, 'has a `labelsOf` that is not a function', 'give `labelsOf: (record) => ({ ... })`');
  const seen = new Set<string>();
  for (const label of spec.labels as unknown[]) {
    if (typeof label !== 'string' || !LABEL_NAME.test(label)) {
      throw invalid(name, `has an invalid label name ${JSON.stringify(label)}`, 'label names are letters, digits and underscores, not starting with a digit');
    }
    if (label.startsWith('__')) throw invalid(name, `has the label "${label}"`, 'label names starting with "__" are reserved by Prometheus');
    if (CAMEL_CASE.test(label)) {
      throw invalid(name, `has the camelCase label "${label}"`, 'label names are snake_case; map the field with `labelsOf` to rename it');
    }
    if (label === 'le' || label === 'quantile') throw invalid(name, `has the label "${label}"`, `"${label}" is reserved for histograms and summaries`);
    if (seen.has(label)) throw invalid(name, `lists the label "${label}" twice`, 'each label once');
    seen.add(label);
  }
}

type DataMetric = Gauge<string> | Counter<string>;
type Labels = Record<string, string>;

/**
 * Which series each sink wrote, per metric object: owner (`pipeline` + sink name) →
 * series key → labels. Kept across runs, for `resetEachRun`.
 */
const owners = new WeakMap<DataMetric, Map<string, Map<string, Labels>>>();

/** The metric object for `name`: the registered one if it matches, else a new one. */
function registerDataMetric(registry: Registry, name: string, type: PrometheusMetricType, help: string, labelNames: readonly string[]): DataMetric {
  const Class = type === 'gauge' ? Gauge : Counter;
  const existing = registry.getSingleMetric(name);
  if (existing) {
    const existingLabels = (existing as unknown as { labelNames?: readonly string[] }).labelNames ?? [];
    const existingType = existing instanceof Gauge ? 'gauge'
      : existing instanceof Counter ? 'counter'
      : existing instanceof Histogram ? 'histogram'
      : existing instanceof Summary ? 'summary'
      : 'metric of another kind';
    if (existingType !== type) {
      throw invalid(name, `is already registered as a ${existingType}, not a ${type}`,
        'another pipeline, sink or the engine uses this name; pick another name or the same type');
    }
    const same = existingLabels.length === labelNames.length && labelNames.every((l) => existingLabels.includes(l));
    if (!same) {
      throw invalid(name, `is already registered with labels [${existingLabels.join(', ')}], not [${labelNames.join(', ')}]`,
        'a metric has one set of label names; pick another name or the same labels');
    }
    return existing as DataMetric;
  }
  const metric = new Class({ name, help, labelNames: [...labelNames], registers: [] });
  registry.registerMetric(metric);
  return metric;
}

function sharedCounter(registry: Registry, name: string, help: string, labelNames: readonly string[]): Counter<string> {
  return registerDataMetric(registry, name, 'counter', help, labelNames) as Counter<string>;
}

interface OpenMetric<R> {
  readonly name: string;
  readonly spec: PrometheusMetricSpec<R>;
  readonly metric: DataMetric;
  readonly reset: boolean;
  /** series written in this run: key → labels */
  readonly seen: Map<string, Labels>;
}

interface OpenState<R> {
  readonly ctx: RunContext;
  readonly log: Logger;
  readonly owner: string;
  readonly metrics: OpenMetric<R>[];
  readonly missingLabels: Counter<string>;
  readonly invalidValues: Counter<string>;
  /** problems already logged this run (one warning per metric and problem) */
  readonly warned: Set<string>;
}

function labelValue(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return value.toISOString();
  return JSON.stringify(value) ?? String(value);
}

/**
 * A sink that sets gauges and increases counters from records.
 */
export function prometheus<R>(spec: PrometheusSinkSpec<R>): Sink<R> {
  const name = spec.name ?? 'prometheus';
  if (typeof spec.metrics !== 'object' || spec.metrics === null || Object.keys(spec.metrics).length === 0) {
    throw new FatalError(`prometheus sink ${name}: no metrics declared`, { hint: 'give `metrics: { name: { type, help, labels, value } }`' });
  }
  for (const [metricName, metricSpec] of Object.entries(spec.metrics)) checkMetric(metricName, metricSpec);

  let state: OpenState<R> | undefined;

  function warnOnce(key: string, message: string, fields: Record<string, unknown>): void {
    if (!state || state.warned.has(key)) return;
    state.warned.add(key);
    state.log.warn(message, fields);
  }

  function labelsFor(m: OpenMetric<R>, record: R, s: OpenState<R>): Labels {
    const source: Readonly<Record<string, unknown>> = m.spec.labelsOf ? m.spec.labelsOf(record) ?? {} : (record as Record<string, unknown>);
    const labels: Labels = {};
    for (const label of m.spec.labels) {
      const value = source == null ? undefined : labelValue(source[label]);
      if (value === undefined) {
        s.missingLabels.inc({ pipeline: s.ctx.pipeline, component_id: name, metric: m.name, label }, 1);
        warnOnce(`missing:${m.name}:${label}`, `prometheus sink ${name}: a record has no value for label ${label} of ${m.name}; using ""`,
          { metric: m.name, label });
      }
      labels[label] = value ?? '';
    }
    return labels;
  }

  function rejectValue(m: OpenMetric<R>, s: OpenState<R>, why: string): void {
    s.invalidValues.inc({ pipeline: s.ctx.pipeline, component_id: name, metric: m.name }, 1);
    warnOnce(`invalid:${m.name}`, `prometheus sink ${name}: skipped a record for ${m.name}: ${why}`, { metric: m.name });
  }

  return {
    name,
    kind: 'prometheus',

    open(ctx) {
      const registry = ctx.metrics;
      const metrics = Object.entries(spec.metrics).map(([metricName, metricSpec]): OpenMetric<R> => ({
        name: metricName,
        spec: metricSpec,
        metric: registerDataMetric(registry, metricName, metricSpec.type, metricSpec.help, metricSpec.labels),
        reset: metricSpec.resetEachRun ?? spec.resetEachRun ?? false,
        seen: new Map(),
      }));
      state = {
        ctx,
        log: ctx.log,
        owner: `${ctx.pipeline}\u0000${name}`,
        metrics,
        missingLabels: sharedCounter(registry, 'sluice_prometheus_sink_missing_labels_total',
          'Records a prometheus sink wrote with "" for a label the record had no value for.',
          ['pipeline', 'component_id', 'metric', 'label']),
        invalidValues: sharedCounter(registry, 'sluice_prometheus_sink_invalid_values_total',
          'Records a prometheus sink skipped because their value could not be used.',
          ['pipeline', 'component_id', 'metric']),
        warned: new Set(),
      };
      // series that exist from the start, so a first problem shows as an increase
      for (const m of metrics) {
        state.invalidValues.inc({ pipeline: ctx.pipeline, component_id: name, metric: m.name }, 0);
        for (const label of m.spec.labels) {
          state.missingLabels.inc({ pipeline: ctx.pipeline, component_id: name, metric: m.name, label }, 0);
        }
      }
    },

    write(records) {
      const s = state;
      if (!s) throw new FatalError(`prometheus sink ${name}: write before open`, { hint: 'the runner opens every sink before writing to it' });
      for (const record of records) {
        for (const m of s.metrics) {
          let labels: Labels;
          let value: unknown;
          try {
            labels = labelsFor(m, record, s);
            value = m.spec.value(record);
          } catch (err) {
            rejectValue(m, s, `its labels or value could not be computed: ${err instanceof Error ? err.message : String(err)}`);
            continue;
          }
          if (typeof value !== 'number') {
            rejectValue(m, s, `the value is ${value === null ? 'null' : typeof value}, not a number`);
            continue;
          }
          if (m.metric instanceof Gauge) {
            m.metric.set(labels, value);
          } else {
            if (!Number.isFinite(value) || value < 0) {
              rejectValue(m, s, `a counter cannot be increased by ${value}`);
              continue;
            }
            m.metric.inc(labels, value);
          }
          const labelNames: readonly string[] = m.spec.labels;
          m.seen.set(JSON.stringify(labelNames.map((l) => labels[l])), labels);
        }
      }
    },

    close(outcome: RunOutcome) {
      const s = state;
      if (!s) return;
      state = undefined;
      for (const m of s.metrics) {
        let byOwner = owners.get(m.metric);
        if (!byOwner) owners.set(m.metric, (byOwner = new Map()));
        const before = byOwner.get(s.owner) ?? new Map<string, Labels>();
        if (m.reset && outcome.status === 'succeeded') {
          for (const [key, labels] of before) {
            if (m.seen.has(key)) continue;
            const ownedElsewhere = [...byOwner].some(([owner, series]) => owner !== s.owner && series.has(key));
            if (!ownedElsewhere) m.metric.remove(labels);
          }
          byOwner.set(s.owner, m.seen);
        } else {
          // keep what earlier runs wrote: a later successful run decides whether it vanished
          byOwner.set(s.owner, new Map([...before, ...m.seen]));
        }
      }
    },
  };
}
