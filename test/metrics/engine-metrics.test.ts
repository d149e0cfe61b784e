import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { EngineMetrics } from '../../runtime/engine-metrics.ts';

/** The value of the series of `name` whose labels are exactly `labels`, or undefined. */
async function sample(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const wanted = JSON.stringify(Object.entries(labels).sort());
  const found = values.find((v) => JSON.stringify(Object.entries(v.labels).map(([k, x]) => [k, String(x)]).sort()) === wanted);
  return found?.value;
}

async function labelNames(registry: Registry, name: string): Promise<string[][]> {
  const { values } = await registry.getSingleMetric(name)!.get();
  return [...new Set(values.map((v) => JSON.stringify(Object.keys(v.labels).sort())))].map((s) => JSON.parse(s) as string[]);
}

describe('EngineMetrics', () => {
  it('counts items, records, sends, discards and errors with Vector-style labels', async () => {
    const registry = new Registry();
    const m = new EngineMetrics(registry, 'cvmfs');
    m.itemReceived(100);
    m.itemReceived(50);
    m.recordsEmitted(3);
    m.recordsEmitted(2);
    m.sinkSent('revisions', 'clickhouse', 4, 400);
    m.sinkSent('revisions', 'clickhouse', 1, 100);
    m.discarded('transform', 'transform', 2, 'filtered');
    m.error('revisions', 'sink', 'transient');
    m.error('revisions', 'sink', 'transient');
    m.error('source', 'source', 'permanent');

    const source = { pipeline: 'cvmfs', component_id: 'source', component_kind: 'source' };
    expect(await sample(registry, 'sluice_component_received_events_total', source)).toBe(2);
    expect(await sample(registry, 'sluice_component_received_bytes_total', source)).toBe(150);
    expect(await sample(registry, 'sluice_component_sent_events_total',
      { pipeline: 'cvmfs', component_id: 'transform', component_kind: 'transform', component_type: '' })).toBe(5);
    const sink = { pipeline: 'cvmfs', component_id: 'revisions', component_kind: 'sink', component_type: 'clickhouse' };
    expect(await sample(registry, 'sluice_component_sent_events_total', sink)).toBe(5);
    expect(await sample(registry, 'sluice_component_sent_event_bytes_total', sink)).toBe(500);
    expect(await sample(registry, 'sluice_component_discarded_events_total',
      { pipeline: 'cvmfs', component_id: 'transform', component_kind: 'transform', reason: 'filtered' })).toBe(2);
    expect(await sample(registry, 'sluice_component_errors_total',
      { pipeline: 'cvmfs', component_id: 'revisions', component_kind: 'sink', error_type: 'transient' })).toBe(2);
    expect(await sample(registry, 'sluice_component_errors_total',
      { pipeline: 'cvmfs', component_id: 'source', component_kind: 'source', error_type: 'permanent' })).toBe(1);

    // one label set per metric name, whichever component wrote it
    expect(await labelNames(registry, 'sluice_component_sent_events_total')).toEqual([
      ['component_id', 'component_kind', 'component_type', 'pipeline'],
    ]);
  });

  it('observes latency in a histogram spanning 1 ms to 5 min, and tracks in-flight items', async () => {
    const registry = new Registry();
    const m = new EngineMetrics(registry, 'p');
    m.itemDone(0.0004);
    m.itemDone(0.2);
    m.itemDone(200);
    m.setInFlight(7);
    m.setInFlight(3);
    const text = await registry.getSingleMetricAsString('sluice_item_latency_seconds');
    expect(text).toContain('# TYPE sluice_item_latency_seconds histogram');
    expect(text).toContain('sluice_item_latency_seconds_bucket{le="0.001",pipeline="p"} 1');
    expect(text).toContain('sluice_item_latency_seconds_bucket{le="0.25",pipeline="p"} 2');
    expect(text).toContain('sluice_item_latency_seconds_bucket{le="120",pipeline="p"} 2');
    expect(text).toContain('sluice_item_latency_seconds_bucket{le="300",pipeline="p"} 3');
    expect(text).toContain('sluice_item_latency_seconds_count{pipeline="p"} 3');
    expect(await sample(registry, 'sluice_items_in_flight', { pipeline: 'p' })).toBe(3);
  });

  it('records how runs end, and the time of the last success only on success', async () => {
    const registry = new Registry();
    const m = new EngineMetrics(registry, 'p');
    // every status exists from the start at 0
    expect(await sample(registry, 'sluice_runs_total', { pipeline: 'p', status: 'failed' })).toBe(0);

    m.runFinished(4, 'failed');
    expect(await sample(registry, 'sluice_run_duration_seconds', { pipeline: 'p' })).toBe(4);
    expect(await sample(registry, 'sluice_last_success_timestamp_seconds', { pipeline: 'p' })).toBeUndefined();

    const before = Date.now() / 1000;
    m.runFinished(2.5, 'succeeded');
    const after = Date.now() / 1000;
    expect(await sample(registry, 'sluice_runs_total', { pipeline: 'p', status: 'failed' })).toBe(1);
    expect(await sample(registry, 'sluice_runs_total', { pipeline: 'p', status: 'succeeded' })).toBe(1);
    expect(await sample(registry, 'sluice_runs_total', { pipeline: 'p', status: 'interrupted' })).toBe(0);
    expect(await sample(registry, 'sluice_run_duration_seconds', { pipeline: 'p' })).toBe(2.5);
    const last = await sample(registry, 'sluice_last_success_timestamp_seconds', { pipeline: 'p' });
    expect(last).toBeGreaterThanOrEqual(before);
    expect(last).toBeLessThanOrEqual(after);

    m.runFinished(1, 'interrupted');
    expect(await sample(registry, 'sluice_last_success_timestamp_seconds', { pipeline: 'p' })).toBe(last);
  });

  it('shares one set of metrics among several instances on one registry', async () => {
    const registry = new Registry();
    const a = new EngineMetrics(registry, 'a');
    const b = new EngineMetrics(registry, 'b');
    const a2 = new EngineMetrics(registry, 'a'); // a second run of pipeline a
    a.itemReceived(1);
    b.itemReceived(1);
    a2.itemReceived(1);
    expect(await sample(registry, 'sluice_component_received_events_total',
      { pipeline: 'a', component_id: 'source', component_kind: 'source' })).toBe(2);
    expect(await sample(registry, 'sluice_component_received_events_total',
      { pipeline: 'b', component_id: 'source', component_kind: 'source' })).toBe(1);
    const names = registry.getMetricsAsArray().map((metric) => metric.name);
    expect(names.length).toBe(new Set(names).size);
  });

  it('ignores counts that are not finite numbers >= 0 instead of failing the run', async () => {
    const registry = new Registry();
    const m = new EngineMetrics(registry, 'p');
    m.itemReceived(Number.NaN);
    m.itemReceived(-5);
    m.recordsEmitted(-1);
    m.itemDone(Number.NaN);
    const source = { pipeline: 'p', component_id: 'source', component_kind: 'source' };
    expect(await sample(registry, 'sluice_component_received_events_total', source)).toBe(2);
    expect(await sample(registry, 'sluice_component_received_bytes_total', source)).toBe(0);
    expect(await sample(registry, 'sluice_component_sent_events_total',
      { pipeline: 'p', component_id: 'transform', component_kind: 'transform', component_type: '' })).toBe(0);
  });

  it('refuses a registry where one of its names is taken by a different metric', () => {
    const registry = new Registry();
    new Counter({ name: 'sluice_runs_total', help: 'x', labelNames: ['job'], registers: [registry] });
    expect(() => new EngineMetrics(registry, 'p')).toThrow(/sluice_runs_total.*labels \[job\].*\[pipeline, status\]/);
  });
});
