/**
 * The scheduler's Prometheus metrics, in the daemon's registry:
 *
 * | metric | type | labels |
 * |---|---|---|
 * | `sluice_scheduler_fires_total` | counter | schedule, outcome (`fired`, `skipped`, `queued`, `missed`, `claimed_elsewhere`, `failed`) |
 * | `sluice_scheduler_next_due_timestamp_seconds` | gauge | schedule |
 * | `sluice_scheduler_schedules` | gauge | state (`enabled`, `disabled`) |
 *
 * `claimed_elsewhere` counts due times another daemon fired (each daemon sees every
 * due time; one fires it). `skipped` is the overlap policy at work.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export class SchedulerMetrics {
  readonly fires: Counter<string>;
  readonly nextDue: Gauge<string>;
  readonly schedules: Gauge<string>;

  constructor(registry: Registry) {
    const registers = [registry];
    const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined;
    this.fires = existing<Counter<string>>('sluice_scheduler_fires_total')
      ?? new Counter({ name: 'sluice_scheduler_fires_total', help: 'Due times of schedules, by what became of them in this daemon.', labelNames: ['schedule', 'outcome'], registers });
    this.nextDue = existing<Gauge<string>>('sluice_scheduler_next_due_timestamp_seconds')
      ?? new Gauge({ name: 'sluice_scheduler_next_due_timestamp_seconds', help: 'Unix time a schedule is next due.', labelNames: ['schedule'], registers });
    this.schedules = existing<Gauge<string>>('sluice_scheduler_schedules')
      ?? new Gauge({ name: 'sluice_scheduler_schedules', help: 'Schedules, by state.', labelNames: ['state'], registers });
  }
}
