/**
 * The daemon's own Prometheus metrics, next to the engine's (`sluice_runs_total
 * {pipeline,status}` and the rest, which every run in the daemon updates in the same
 * registry):
 *
 * | metric                                      | type      | labels            |
 * |---------------------------------------------|-----------|-------------------|
 * | `sluice_daemon_messages_total`              | counter   | outcome, reason   |
 * | `sluice_daemon_runs_in_flight`              | gauge     |                   |
 * | `sluice_daemon_queue_messages`              | gauge     | queue             |
 * | `sluice_daemon_queue_consumers`             | gauge     | queue             |
 * | `sluice_daemon_trigger_wait_seconds`        | histogram |                   |
 * | `sluice_daemon_trigger_latency_seconds`     | histogram | pipeline          |
 * | `sluice_daemon_broker_connected`            | gauge     |                   |
 * | `sluice_daemon_broker_reconnects_total`     | counter   |                   |
 *
 * `outcome` is `acked` (run succeeded), `retried` (sent to the retry queue),
 * `dead_lettered` (with `reason`: `failed`, `failed-permanently`, or why the message
 * was refused: `invalid-json`, `unknown-pipeline` …), `requeued` (handed back on
 * shutdown), `abandoned` (its channel closed mid-run; the broker redelivers it) or
 * `recounted` (it came back redelivered and was queued again with its redelivery
 * count, classic queues only).
 * Queue lag: `sluice_daemon_queue_messages{queue}` (ready messages in the trigger,
 * retry and dead-letter queues, sampled every few seconds) and
 * `sluice_daemon_trigger_wait_seconds` (publish → run start, when the publisher sent
 * a timestamp).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

export type MessageOutcome = 'acked' | 'retried' | 'dead_lettered' | 'requeued' | 'abandoned' | 'recounted';

export class DaemonMetrics {
  readonly messages: Counter<string>;
  readonly inFlight: Gauge<string>;
  readonly queueMessages: Gauge<string>;
  readonly queueConsumers: Gauge<string>;
  readonly wait: Histogram<string>;
  readonly latency: Histogram<string>;
  readonly connected: Gauge<string>;
  readonly reconnects: Counter<string>;

  constructor(registry: Registry) {
    const r = [registry];
    this.messages = new Counter({ name: 'sluice_daemon_messages_total', help: 'Trigger messages settled, by outcome (and reason for dead letters).', labelNames: ['outcome', 'reason'], registers: r });
    this.inFlight = new Gauge({ name: 'sluice_daemon_runs_in_flight', help: 'Runs the daemon is executing now.', registers: r });
    this.queueMessages = new Gauge({ name: 'sluice_daemon_queue_messages', help: 'Messages ready in the queue (sampled).', labelNames: ['queue'], registers: r });
    this.queueConsumers = new Gauge({ name: 'sluice_daemon_queue_consumers', help: 'Consumers of the queue (sampled): the daemons sharing it.', labelNames: ['queue'], registers: r });
    this.wait = new Histogram({ name: 'sluice_daemon_trigger_wait_seconds', help: 'Time from publishing a trigger to its run starting.', buckets: SECONDS, registers: r });
    this.latency = new Histogram({ name: 'sluice_daemon_trigger_latency_seconds', help: 'Time from publishing a trigger to its message being settled.', labelNames: ['pipeline'], buckets: SECONDS, registers: r });
    this.connected = new Gauge({ name: 'sluice_daemon_broker_connected', help: '1 while connected to the broker and consuming.', registers: r });
    this.reconnects = new Counter({ name: 'sluice_daemon_broker_reconnects_total', help: 'Broker connections made after the first.', registers: r });
    for (const outcome of ['acked', 'retried', 'requeued', 'abandoned', 'recounted'] as const) this.messages.inc({ outcome, reason: '' }, 0);
    this.messages.inc({ outcome: 'dead_lettered', reason: 'failed' }, 0);
  }

  settled(outcome: MessageOutcome, reason = ''): void {
    this.messages.inc({ outcome, reason });
  }
}
