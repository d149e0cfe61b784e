/**
 * The sluice daemon: consumes trigger messages from one RabbitMQ queue and runs the
 * pipelines they ask for. Several daemons on the same queue share the work
 * (competing consumers); nothing else coordinates them.
 *
 * For each message:
 *
 * 1. **Decide what it is**: a route-table message (its exchange and routing key match
 *    a route: checked and mapped to a pipeline and params), or sluice's own trigger
 *    `{pipeline, params, id}`. A message that can never run — not JSON, unknown
 *    pipeline, a pipeline not allowed for triggering, params failing the pipeline's
 *    schema, a payload carrying permissions, a failed route check, redelivered more
 *    than `maxRedeliveries` times — goes to the dead-letter queue at once, with
 *    `x-sluice-reason` and `x-sluice-error` headers. Redeliveries are counted by the
 *    broker on quorum queues (`x-delivery-count`); on classic queues (the default: far
 *    lower latency) the daemon counts them itself: a message that comes back
 *    redelivered (its daemon died, or its connection did, mid-run) is republished with
 *    `x-sluice-redeliveries` + 1 and the original acked, before anything runs.
 * 2. **Run it** in this process (trigger `amqp`, trigger id = the message id) on the
 *    daemon's store, and **ack only after the run succeeded**, which the runner
 *    reports only once every record is accepted by every sink.
 * 3. **A failed run** is published to the retry queue with a per-message TTL (the
 *    delay grows by `retry.factor`), which dead-letters it back to the trigger queue
 *    when it expires; the attempt number travels in `x-sluice-attempt`. After
 *    `retry.maxAttempts` runs, or at once when the failure is permanent (bad data that
 *    the same run would hit again), it goes to the dead-letter queue with the error.
 *    The copy is published (and confirmed) before the original is acked: a crash in
 *    between means a duplicate, never a loss.
 * 4. **Replies**: with `reply_to`, the outcome (`succeeded`, `failed`, `rejected`, and
 *    `retrying` for each failed attempt) is sent there with the `correlation_id`.
 *
 * Deliveries belong to their channel: when the connection or channel is lost, the
 * runs of its messages are stopped and never acked (the broker redelivers those
 * messages); the consumer comes back on a new channel after the reconnect.
 *
 * When a run cannot even be recorded because the store does not answer, the message
 * is handed back (republished as it is, not counted as a redelivery) and the daemon
 * stops taking messages until the store answers again: a store outage delays work, it
 * does not dead-letter it.
 *
 * `stop(grace)`: stop consuming, let the running runs finish within the grace period,
 * then stop them and hand their messages back.
 */
import os from 'node:os';
import type { Channel, ConsumeMessage, Options } from 'amqplib';
import type { Registry } from 'prom-client';
import type { z } from 'zod';
import { backoffDelay, delayFor } from '../backoff.ts';
import type { ClickHouseStore } from '../clickhouse/store.ts';
import { migrate } from '../clickhouse/migrate.ts';
import { ClickHouseRunStore } from '../clickhouse/run-store.ts';
import { runsTable } from '../clickhouse/table.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { ParamsError } from '../params-error.ts';
import { listPipelineNames, loadPipeline, PipelineLoadError, pipelinesDir } from '../pipeline-loader.ts';
import type { AnyPipeline } from '../pipeline.ts';
import type { RunRecord, RunStore, Trigger } from '../run-record.ts';
import { parseParams, runPipeline } from '../runner.ts';
import { AmqpConnection, shareAmqpConnection } from '../amqp/connection.ts';
import { AmqpConsumer, type Delivery } from '../amqp/consumer.ts';
import { AmqpPublisher } from '../amqp/publisher.ts';
import { declareTopology, type Topology } from '../amqp/topology.ts';
import { topologyNames, type DaemonConfig, type TopologyNames } from './config.ts';
import { DaemonMetrics, type MessageOutcome } from './daemon-metrics.ts';
import { formatDuration } from './duration.ts';
import { Notifier, payloadOf, type Severity } from './notifier.ts';
import { RouteTable, type Route } from './routes.ts';
import { InvalidTrigger, parseJsonBody, readTrigger, wideningParams, type RejectReason } from './trigger-message.ts';

/** Headers the daemon reads and writes. */
export const HEADERS = {
  attempt: 'x-sluice-attempt',
  exchange: 'x-sluice-exchange',
  routingKey: 'x-sluice-routing-key',
  reason: 'x-sluice-reason',
  error: 'x-sluice-error',
  attempts: 'x-sluice-attempts',
  pipeline: 'x-sluice-pipeline',
  runId: 'x-sluice-run-id',
  lastError: 'x-sluice-last-error',
  deadAt: 'x-sluice-dead-lettered-at',
  daemon: 'x-sluice-daemon',
  publishedAt: 'x-sluice-published-at',
  redeliveries: 'x-sluice-redeliveries',
} as const;

/** The result sent to `reply_to`. */
export interface TriggerReply {
  id: string;
  pipeline?: string;
  status: 'succeeded' | 'failed' | 'rejected' | 'retrying';
  runId?: string;
  attempt: number;
  error?: string;
  reason?: string;
  /** retrying: when the next attempt starts, ms from now */
  retryInMs?: number;
  counts?: RunRecord['counts'];
  /** the run's duration, as in its run record */
  durationMs?: number;
  /** wall time the daemon spent in the run, run-record writes included (latency minus this = the trigger path's own cost) */
  runMs?: number;
}

export interface DaemonOptions {
  config: DaemonConfig;
  store: ClickHouseStore;
  stateDir: string;
  log: Logger;
  registry: Registry;
  /** default `SLUICE_PIPELINES_DIR` or `pipelines/` */
  pipelinesDir?: string;
  /** how long a stopped run may take to wind down (in-flight items) before it is abandoned; default 5 s */
  runStopGraceMs?: number;
}

interface Job {
  pipeline: AnyPipeline;
  params: Record<string, unknown>;
  id: string;
  attempt: number;
  exchange: string;
  routingKey: string;
  route?: Route;
  /** `amqp`, or `schedule`/`api` for triggers the scheduler and the admin API publish (header x-sluice-trigger) */
  trigger: Trigger;
}

interface Running {
  delivery: Delivery;
  stop: AbortController;
  kill: AbortController;
  done: Promise<void>;
}

const MAX_HEADER_TEXT = 2000;

export class Daemon {
  readonly names: TopologyNames;
  readonly connection: AmqpConnection;
  readonly metrics: DaemonMetrics;
  private readonly config: DaemonConfig;
  private readonly log: Logger;
  private readonly routes: RouteTable;
  private readonly runStore: RunStore;
  private readonly publisher: AmqpPublisher;
  private readonly consumer: AmqpConsumer;
  private readonly notifier?: Notifier;
  private readonly pipelines = new Map<string, AnyPipeline>();
  private readonly strictSchemas = new WeakMap<AnyPipeline, z.ZodType>();
  private readonly running = new Set<Running>();
  private readonly handling = new Set<Promise<void>>();
  private readonly identity = `${os.hostname()}:${process.pid}`;
  private stopping = false;
  private unshare?: () => void;
  private sampler?: NodeJS.Timeout;
  private sampleChannel?: Promise<Channel | undefined>;
  private storeWait?: Promise<void>;

  constructor(private readonly options: DaemonOptions) {
    this.config = options.config;
    this.log = options.log;
    this.names = topologyNames(this.config);
    this.routes = new RouteTable(this.config.routes);
    this.runStore = new ClickHouseRunStore(options.store);
    this.metrics = new DaemonMetrics(options.registry);
    this.connection = new AmqpConnection({
      url: this.config.amqp.url,
      heartbeatSeconds: Math.round(this.config.amqp.heartbeat / 1000),
      tls: this.config.amqp.tls,
      connectionName: `sluice daemon ${this.identity}`,
      log: this.log,
    });
    this.publisher = new AmqpPublisher(this.connection, { log: this.log });
    this.consumer = new AmqpConsumer(this.connection, {
      queue: this.names.queue,
      prefetch: this.config.concurrency,
      setup: (channel) => declareTopology(channel, this.topology()),
      onMessage: (delivery) => this.track(this.handle(delivery)),
      log: this.log,
    });
    if (this.config.notify) this.notifier = new Notifier(this.publisher, { exchange: this.config.notify.exchange }, this.log);
    this.connection.on('connected', ({ generation }) => {
      if (generation > 1) this.metrics.reconnects.inc();
    });
  }

  /** Everything the daemon declares: trigger exchange and queue, retry queue, dead-letter exchange and queue, routes, notifier. */
  topology(): Topology {
    const n = this.names;
    const queueArgs: Record<string, unknown> = { 'x-dead-letter-exchange': n.deadLetterExchange };
    if (this.config.queueType === 'quorum') queueArgs['x-queue-type'] = 'quorum';
    const exchanges: NonNullable<Topology['exchanges']>[number][] = [
      { name: n.exchange, type: 'topic' },
      { name: n.deadLetterExchange, type: 'fanout' },
      ...this.routes.exchanges(),
    ];
    if (this.config.notify) exchanges.push({ name: this.config.notify.exchange, type: this.config.notify.exchangeType, passive: !this.config.notify.declareExchange });
    return {
      exchanges,
      queues: [
        { name: n.queue, arguments: queueArgs },
        { name: n.retryQueue, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': n.queue } },
        { name: n.deadLetterQueue },
      ],
      bindings: [
        ...this.config.routingKeys.map((routingKey) => ({ queue: n.queue, exchange: n.exchange, routingKey })),
        { queue: n.deadLetterQueue, exchange: n.deadLetterExchange, routingKey: '#' },
        ...this.routes.bindings(n.queue),
      ],
    };
  }

  /** runs executing now */
  get inFlight(): number {
    return this.running.size;
  }

  /**
   * Prepare the store (run records table), connect (retrying with backoff until the
   * broker answers), declare the topology and start consuming. Rejects on a
   * configuration error (a queue that exists with other arguments, …).
   */
  async start(): Promise<void> {
    await migrate(this.options.store, [runsTable]);
    this.unshare = shareAmqpConnection(this.connection);
    this.connection.on('connected', () => this.metrics.connected.set(1));
    this.connection.on('disconnected', () => this.metrics.connected.set(0));
    void this.connection.start().catch(() => undefined);
    await this.consumer.start();
    this.metrics.connected.set(1);
    this.sampler = setInterval(() => void this.sampleQueues(), 5_000);
    this.sampler.unref();
    void this.sampleQueues();
    this.log.info(`consuming ${this.names.queue} on ${this.connection.description} (concurrency ${this.config.concurrency}; pipelines ${this.config.pipelines === '*' ? 'all' : this.config.pipelines.join(', ')})`);
  }

  /** For /healthz. */
  async health(): Promise<{ ok: boolean; broker: string; store: string; runsInFlight: number; stopping: boolean }> {
    const broker = this.connection.connected ? (this.consumer.consuming ? 'consuming' : this.stopping ? 'stopping' : 'connected, not consuming') : 'disconnected';
    let store = 'ok';
    try {
      await Promise.race([
        this.options.store.query('SELECT 1 AS ok'),
        delayFor(5_000).then(() => { throw new Error('no answer within 5 s'); }),
      ]);
    } catch (err) {
      store = `unreachable: ${describeError(err)}`;
    }
    return { ok: broker === 'consuming' && store === 'ok', broker, store, runsInFlight: this.running.size, stopping: this.stopping };
  }

  /**
   * Stop consuming; give running runs `graceMs` to finish; then stop them and nack
   * their messages for redelivery; close the broker connection. The store stays open
   * (the caller owns it).
   */
  async stop(graceMs = this.config.grace): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.sampler) clearInterval(this.sampler);
    await this.consumer.pause();
    const all = () => Promise.allSettled([...this.handling]);
    if (this.running.size) {
      this.log.info(`stopping: waiting up to ${Math.round(graceMs / 1000)} s for ${this.running.size} running run(s)`);
      await Promise.race([all(), delayFor(graceMs)]);
    }
    if (this.running.size) {
      this.log.warn(`stopping: ${this.running.size} run(s) still running after the grace period; stopping them and handing their messages back`);
      for (const r of this.running) r.stop.abort(new Error('the daemon is stopping (grace period over)'));
      const killAfter = (this.options.runStopGraceMs ?? 5_000) + 5_000;
      await Promise.race([all(), delayFor(killAfter)]);
      for (const r of this.running) r.kill.abort(new Error('the daemon is stopping'));
      await Promise.race([all(), delayFor(5_000)]);
      for (const r of this.running) r.delivery.nack(true);
    }
    await this.consumer.close();
    await this.publisher.close();
    this.unshare?.();
    await this.connection.close();
    this.metrics.connected.set(0);
  }

  private track(promise: Promise<void>): void {
    this.handling.add(promise);
    void promise.finally(() => this.handling.delete(promise));
  }

  private async handle(delivery: Delivery): Promise<void> {
    const received = Date.now();
    const publishedAt = Number(delivery.headers[HEADERS.publishedAt]);
    try {
      if (delivery.message.fields.redelivered && this.config.queueType === 'classic') {
        await this.recount(delivery);
        return;
      }
      let job: Job;
      try {
        job = await this.prepare(delivery);
      } catch (err) {
        if (err instanceof InvalidTrigger) {
          await this.reject(delivery, err.reason, err.message);
          return;
        }
        throw err;
      }
      if (Number.isFinite(publishedAt) && publishedAt > 0) this.metrics.wait.observe(Math.max(0, received - publishedAt) / 1000);
      await this.execute(delivery, job);
      if (Number.isFinite(publishedAt) && publishedAt > 0) this.metrics.latency.observe({ pipeline: job.pipeline.name }, Math.max(0, Date.now() - publishedAt) / 1000);
    } catch (err) {
      // a pipeline file that does not load, or a bug: never crash, never loop
      this.log.error(`handling message ${delivery.message.properties.messageId ?? delivery.message.fields.deliveryTag} failed: ${describeError(err)}`);
      if (!delivery.pending) return;
      const reason = err instanceof PipelineLoadError ? 'pipeline-load-error' : 'internal-error';
      try {
        await this.deadLetter(delivery, reason, describeError(err), {});
        await this.reply(delivery.message, { id: String(delivery.message.properties.messageId ?? ''), status: 'failed', attempt: 1, error: describeError(err), reason });
      } catch {
        if (delivery.nack(false)) this.metrics.settled('dead_lettered', reason);
      }
    }
  }

  /** Everything that can be decided before running; InvalidTrigger for a message that must not run. */
  private async prepare(delivery: Delivery): Promise<Job> {
    const msg = delivery.message;
    const headers = delivery.headers;
    // a message back from the retry queue carries where it first came from
    const fromRetry = msg.fields.exchange === '' && typeof headers[HEADERS.exchange] === 'string';
    const exchange = fromRetry ? String(headers[HEADERS.exchange]) : msg.fields.exchange;
    const routingKey = fromRetry ? String(headers[HEADERS.routingKey] ?? '') : msg.fields.routingKey;
    const attempt = Math.max(1, Math.floor(Number(headers[HEADERS.attempt] ?? 1)) || 1);
    const route = this.routes.match(exchange, routingKey);
    if (!route && exchange !== '' && exchange !== this.names.exchange) {
      throw new InvalidTrigger('unknown-route', this.routes.hasExchange(exchange)
        ? `no route for routing key "${routingKey}" on exchange "${exchange}" (routes: ${this.routes.routes.filter((r) => r.config.exchange === exchange).map((r) => r.config.routingKey).join(', ')})`
        : `messages from exchange "${exchange}" are not triggers (no route for it)`);
    }
    const counted = Number(headers[HEADERS.redeliveries] ?? 0) || 0;
    const byBroker = Number(headers['x-delivery-count'] ?? 0) || 0;
    const deliveries = Math.max(counted, byBroker);
    const limit = route?.config.maxRedeliveries ?? this.config.maxRedeliveries;
    if (deliveries > limit) {
      throw new InvalidTrigger('too-many-deliveries', `redelivered ${deliveries} times (${byBroker >= counted ? 'x-delivery-count' : HEADERS.redeliveries}), more than the limit of ${limit}: a run of it keeps dying`);
    }
    const body = parseJsonBody(msg.content);
    let pipelineName: string;
    let params: Record<string, unknown>;
    let id: string;
    if (route) {
      params = route.map(body);
      pipelineName = route.config.pipeline;
      id = (msg.properties.messageId as string | undefined) || `${route.name}:${fingerprint(msg)}`;
    } else {
      const trigger = readTrigger(body, msg.properties.messageId as string | undefined);
      pipelineName = trigger.pipeline;
      params = trigger.params;
      id = trigger.id;
    }
    const pipeline = await this.pipeline(pipelineName);
    // a route names its pipeline in the operator's config: that is its permission to trigger it
    if (!route && this.config.pipelines !== '*' && !this.config.pipelines.includes(pipelineName)) {
      throw new InvalidTrigger('pipeline-not-allowed', `pipeline "${pipelineName}" may not be triggered by messages (allowed: ${this.config.pipelines.join(', ') || 'none'})`);
    }
    const widening = wideningParams(params, Object.keys(pipeline.params.shape));
    if (widening.length) {
      throw new InvalidTrigger('permission-widening', `a message cannot grant permissions (params ${widening.map((k) => `"${k}"`).join(', ')}); permissions come from the pipeline and the daemon's config`);
    }
    if (!this.strictParams(pipeline).safeParse(params ?? {}).success) {
      // the slow path, for the message: parseParams names the param
      try {
        parseParams(pipeline.params, params);
      } catch (err) {
        if (err instanceof ParamsError) throw new InvalidTrigger('invalid-params', `${pipelineName}: ${err.message}`);
        throw err;
      }
    }
    const asked = headers['x-sluice-trigger'];
    const trigger: Trigger = !route && (asked === 'schedule' || asked === 'api') ? asked : 'amqp';
    return { pipeline, params, id, attempt, exchange, routingKey, route, trigger };
  }

  /**
   * The pipeline's params schema in strict mode (what `parseParams` checks against),
   * built once per pipeline: building it (and zod compiling its fast path on first use)
   * cost ~0.3 ms per message, on the path between the delivery and the run.
   */
  private strictParams(pipeline: AnyPipeline): z.ZodType {
    const cached = this.strictSchemas.get(pipeline);
    if (cached) return cached;
    const schema: z.ZodType = pipeline.params.strict();
    this.strictSchemas.set(pipeline, schema);
    return schema;
  }

  private async pipeline(name: string): Promise<AnyPipeline> {
    const cached = this.pipelines.get(name);
    if (cached) return cached;
    try {
      const pipeline = await loadPipeline(name, this.options.pipelinesDir ?? pipelinesDir());
      this.pipelines.set(name, pipeline);
      return pipeline;
    } catch (err) {
      if (err instanceof PipelineLoadError && /no pipeline|is not a pipeline name/.test(err.message)) {
        // name only what messages may trigger, not every pipeline on the machine
        const known = this.config.pipelines === '*' ? await listPipelineNames(this.options.pipelinesDir ?? pipelinesDir()).catch(() => []) : this.config.pipelines;
        throw new InvalidTrigger('unknown-pipeline', `no pipeline "${name}" (pipelines that messages may trigger: ${known.join(', ') || 'none'})`);
      }
      throw err;
    }
  }

  private async execute(delivery: Delivery, job: Job): Promise<void> {
    const stop = new AbortController();
    const kill = new AbortController();
    const onDead = () => stop.abort(new Error('the broker connection was lost; the message will be redelivered'));
    delivery.signal.addEventListener('abort', onDead, { once: true });
    let finish!: () => void;
    const running: Running = { delivery, stop, kill, done: new Promise<void>((r) => { finish = r; }) };
    this.running.add(running);
    this.metrics.inFlight.set(this.running.size);
    let record: RunRecord | undefined;
    let thrown: unknown;
    this.log.info(`${job.pipeline.name} (trigger ${job.id}${job.attempt > 1 ? `, attempt ${job.attempt}` : ''}): started`);
    const runStarted = performance.now();
    let runMs = 0;
    try {
      record = await runPipeline({
        pipeline: job.pipeline,
        params: job.params,
        trigger: job.trigger,
        triggerId: job.id,
        allow: this.config.allow[job.pipeline.name],
        stateDir: this.options.stateDir,
        signal: stop.signal,
        killSignal: kill.signal,
        stopGraceMs: this.options.runStopGraceMs ?? 5_000,
        log: this.log.child({ trigger: job.id }),
        registry: this.options.registry,
        openStore: () => Promise.resolve(this.options.store),
        keepStoreOpen: true,
        runStore: this.runStore,
      });
    } catch (err) {
      thrown = err;
    } finally {
      runMs = Math.round((performance.now() - runStarted) * 1000) / 1000;
      delivery.signal.removeEventListener('abort', onDead);
      this.running.delete(running);
      this.metrics.inFlight.set(this.running.size);
      finish();
    }

    const label = `${job.pipeline.name} (trigger ${job.id}${job.attempt > 1 ? `, attempt ${job.attempt}` : ''}${record ? `, run ${record.id}` : ''})`;
    if (delivery.state === 'dead') {
      this.log.warn(`${label}: the broker connection was lost during the run; not acknowledging (the broker redelivers the message)`);
      this.metrics.settled('abandoned');
      return;
    }
    if (record?.status === 'succeeded') {
      if (job.route?.config.done) {
        const done = job.route.config.done;
        await this.publisher.publish(done.exchange, done.routingKey, delivery.message.content, copyProperties(delivery.message, {}), AbortSignal.timeout(30_000))
          .catch((err: unknown) => this.log.warn(`${label}: cannot republish to ${done.exchange}: ${describeError(err)}`));
      }
      if (delivery.ack()) {
        this.metrics.settled('acked');
        this.log.info(`${label}: succeeded in ${record.durationMs} ms, acked`);
        await this.reply(delivery.message, { id: job.id, pipeline: job.pipeline.name, status: 'succeeded', runId: record.id, attempt: job.attempt, counts: record.counts, durationMs: record.durationMs, runMs });
      } else {
        this.metrics.settled('abandoned');
      }
      return;
    }
    if (record?.status === 'interrupted' || (this.stopping && stop.signal.aborted)) {
      await this.handBack(delivery, `${label}: stopped before it finished`);
      return;
    }
    if (thrown !== undefined && !(await this.storeAnswers())) {
      // not the message's fault: keep it (uncounted) and stop taking more until the store is back
      await this.handBack(delivery, `${label}: the store is unreachable (${describeError(thrown)})`);
      this.waitForStore();
      return;
    }
    const error = thrown !== undefined ? describeError(thrown) : failureOf(record!);
    const permanent = thrown === undefined && isPermanentFailure(record!);
    const maxAttempts = this.config.retry.maxAttempts;
    if (!permanent && job.attempt < maxAttempts) {
      await this.retry(delivery, job, error, record?.id, label);
      return;
    }
    const reason = permanent ? 'failed-permanently' : 'failed';
    const why = permanent ? 'failed permanently' : `failed ${job.attempt} time${job.attempt > 1 ? 's' : ''}`;
    this.log.error(`${label}: ${why}: ${error}; dead-lettered`);
    await this.deadLetter(delivery, reason, error, {
      [HEADERS.attempts]: job.attempt,
      [HEADERS.pipeline]: job.pipeline.name,
      [HEADERS.exchange]: job.exchange,
      [HEADERS.routingKey]: job.routingKey,
      ...(record ? { [HEADERS.runId]: record.id } : {}),
    });
    await this.reply(delivery.message, { id: job.id, pipeline: job.pipeline.name, status: 'failed', runId: record?.id, attempt: job.attempt, error, reason, counts: record?.counts, durationMs: record?.durationMs, runMs });
    await this.notify(job.route?.config.notifyType ?? job.route?.name, 'error', `${job.route ? job.route.config.routingKey : job.pipeline.name} failed`, `${label}: ${why}: ${error}`, delivery.message);
  }

  /**
   * Put a message back at the end of the queue as it is (its redelivery count not
   * raised: handing back is not a crash), then ack the original; if the copy cannot be
   * published, nack it with requeue instead.
   */
  private async handBack(delivery: Delivery, why: string): Promise<void> {
    const msg = delivery.message;
    try {
      await this.publisher.publish('', this.names.queue, msg.content, copyProperties(msg, { headers: { ...cleanHeaders(delivery.headers), ...originHeaders(msg, delivery.headers) } }), delivery.signal);
    } catch (err) {
      this.log.debug(`cannot republish ${msg.properties.messageId ?? msg.fields.deliveryTag}: ${describeError(err)}; nacking it`);
      if (delivery.nack(true)) {
        this.metrics.settled('requeued');
        this.log.warn(`${why}; handed back to the queue`);
      }
      return;
    }
    if (delivery.ack()) {
      this.metrics.settled('requeued');
      this.log.warn(`${why}; handed back to the queue`);
    }
  }

  /** true when the store answers `SELECT 1` within 5 s */
  private async storeAnswers(): Promise<boolean> {
    try {
      await Promise.race([
        this.options.store.query('SELECT 1 AS ok'),
        delayFor(5_000).then(() => { throw new Error('no answer within 5 s'); }),
      ]);
      return true;
    } catch {
      return false;
    }
  }

  /** Stop consuming until the store answers again (checked with backoff), then consume again. */
  private waitForStore(): void {
    if (this.storeWait || this.stopping) return;
    this.storeWait = (async () => {
      this.log.error('the store is unreachable: not taking messages until it answers again (runs that need it are handed back)');
      await this.consumer.pause();
      for (let attempt = 1; !this.stopping; attempt++) {
        await delayFor(backoffDelay(attempt, { initialDelayMs: 1_000, maxDelayMs: 30_000, jitter: 'equal' }));
        if (this.stopping) return;
        if (await this.storeAnswers()) break;
      }
      if (this.stopping) return;
      this.log.info('the store answers again: consuming');
      await this.consumer.resume();
    })().finally(() => { this.storeWait = undefined; });
  }

  /**
   * Classic queues do not count redeliveries: put the message back at the end of the
   * queue with its count in `x-sluice-redeliveries` (confirmed), then ack the
   * redelivered original. The copy keeps where the message first came from.
   */
  private async recount(delivery: Delivery): Promise<void> {
    const msg = delivery.message;
    const headers = delivery.headers;
    const count = (Number(headers[HEADERS.redeliveries] ?? 0) || 0) + 1;
    const copy = { ...cleanHeaders(headers), [HEADERS.redeliveries]: count, ...originHeaders(msg, headers) };
    try {
      await this.publisher.publish('', this.names.queue, msg.content, copyProperties(msg, { headers: copy }), delivery.signal);
    } catch (err) {
      this.log.warn(`cannot republish redelivered message ${msg.properties.messageId ?? msg.fields.deliveryTag} with its count: ${describeError(err)}; handing it back`);
      delivery.nack(true);
      return;
    }
    if (delivery.ack()) {
      this.metrics.settled('recounted');
      this.log.warn(`message ${msg.properties.messageId ?? msg.fields.deliveryTag} was redelivered (${count} time${count > 1 ? 's' : ''}: a daemon or its connection died while running it); queued again with its count`);
    }
  }

  private async retry(delivery: Delivery, job: Job, error: string, runId: string | undefined, label: string): Promise<void> {
    const r = this.config.retry;
    const delay = Math.round(Math.min(r.maxDelay, r.delay * r.factor ** (job.attempt - 1)));
    const headers = {
      ...cleanHeaders(delivery.headers),
      [HEADERS.attempt]: job.attempt + 1,
      [HEADERS.exchange]: job.exchange,
      [HEADERS.routingKey]: job.routingKey,
      [HEADERS.lastError]: clip(error),
      ...(runId ? { [HEADERS.runId]: runId } : {}),
    };
    try {
      await this.publisher.publish('', this.names.retryQueue, delivery.message.content, copyProperties(delivery.message, {
        headers,
        messageId: job.id,
        expiration: String(delay),
      }), delivery.signal);
    } catch (err) {
      this.log.error(`${label}: failed (${error}), and cannot publish it to the retry queue: ${describeError(err)}; handing it back to the queue`);
      if (delivery.nack(true)) this.metrics.settled('requeued');
      return;
    }
    if (!delivery.ack()) {
      // the copy is in the retry queue and the original will be redelivered: one duplicate run at worst
      this.metrics.settled('abandoned');
      return;
    }
    this.metrics.settled('retried');
    this.log.warn(`${label}: failed: ${error}; attempt ${job.attempt + 1} of ${this.config.retry.maxAttempts} in ${formatDuration(delay)}`);
    await this.reply(delivery.message, { id: job.id, pipeline: job.pipeline.name, status: 'retrying', runId, attempt: job.attempt, error, retryInMs: delay });
    if (this.config.notify?.retries) {
      await this.notify(job.route?.config.notifyType ?? job.route?.name, 'warning', `${job.route ? job.route.config.routingKey : job.pipeline.name} failed, will retry`, `${label}: ${error}`, delivery.message);
    }
  }

  /** A message that must not run: dead-letter it with the reason, reply, notify. */
  private async reject(delivery: Delivery, reason: RejectReason, message: string): Promise<void> {
    const msg = delivery.message;
    const id = (msg.properties.messageId as string | undefined) ?? `delivery ${msg.fields.deliveryTag}`;
    this.log.warn(`rejected message ${id} (${msg.fields.exchange || '(default exchange)'} / ${msg.fields.routingKey}): ${reason}: ${message}`);
    await this.deadLetter(delivery, reason, message, {});
    let pipeline: string | undefined;
    try {
      const body = JSON.parse(msg.content.toString('utf8')) as { pipeline?: unknown };
      if (typeof body?.pipeline === 'string') pipeline = body.pipeline;
    } catch {
      // not JSON
    }
    await this.reply(msg, { id, pipeline, status: 'rejected', attempt: Number(delivery.headers[HEADERS.attempt] ?? 1) || 1, error: message, reason });
    const route = this.routes.match(msg.fields.exchange, msg.fields.routingKey);
    await this.notify(route?.config.notifyType ?? route?.name, 'error', `message rejected: ${reason}`, message, msg);
  }

  /**
   * Publish a copy with the reason to the dead-letter exchange (confirmed), then ack
   * the original; if the copy cannot be published, reject the original without
   * requeue, so the broker dead-letters it (reason only in `x-death`).
   */
  private async deadLetter(delivery: Delivery, reason: string, error: string, extra: Record<string, unknown>): Promise<void> {
    const msg = delivery.message;
    const headers = {
      ...cleanHeaders(delivery.headers),
      ...extra,
      [HEADERS.reason]: reason,
      [HEADERS.error]: clip(error),
      [HEADERS.deadAt]: new Date().toISOString(),
      [HEADERS.daemon]: this.identity,
      ...(extra[HEADERS.exchange] === undefined ? { [HEADERS.exchange]: msg.fields.exchange, [HEADERS.routingKey]: msg.fields.routingKey } : {}),
    };
    try {
      await this.publisher.publish(this.names.deadLetterExchange, msg.fields.routingKey, msg.content, copyProperties(msg, { headers }), delivery.signal);
    } catch (err) {
      this.log.error(`cannot publish to the dead-letter exchange ${this.names.deadLetterExchange}: ${describeError(err)}; rejecting the message instead`);
      if (delivery.nack(false)) this.metrics.settled('dead_lettered', reason);
      return;
    }
    if (delivery.ack()) this.metrics.settled('dead_lettered', reason);
    else this.metrics.settled('abandoned');
  }

  private async reply(msg: ConsumeMessage, reply: TriggerReply): Promise<void> {
    const to = msg.properties.replyTo as string | undefined;
    if (!to) return;
    // give up after 30 s; a timer cleared when the confirm comes (an AbortSignal.timeout would fire 30 s later, for every reply)
    const giveUp = new AbortController();
    const timer = setTimeout(() => giveUp.abort(new Error('no confirm from the broker within 30 s')), 30_000).unref();
    try {
      await this.publisher.publish('', to, Buffer.from(JSON.stringify(reply)), {
        correlationId: (msg.properties.correlationId as string | undefined) ?? (msg.properties.messageId as string | undefined),
        contentType: 'application/json',
        appId: 'sluice',
      }, giveUp.signal);
    } catch (err) {
      this.log.warn(`cannot send the result to reply_to ${to}: ${describeError(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private async notify(type: string | undefined, severity: Severity, subject: string, message: string, msg: ConsumeMessage): Promise<void> {
    if (!this.notifier || !this.config.notify) return;
    await this.notifier.notify({ type: type ?? this.config.notify.type, severity, subject, message, payload: payloadOf(msg.content) });
  }

  /** Queue depths for /metrics, on a channel of their own (a missing queue closes it). */
  private async sampleQueues(): Promise<void> {
    if (!this.connection.connected || this.stopping) return;
    const current = this.connection.current();
    this.sampleChannel ??= this.connection.createChannel().then((ch) => {
      ch.on('close', () => { this.sampleChannel = undefined; });
      return ch;
    }, () => { this.sampleChannel = undefined; return undefined; });
    const ch = await this.sampleChannel;
    if (!ch || this.connection.current()?.model !== current?.model) return;
    for (const queue of [this.names.queue, this.names.retryQueue, this.names.deadLetterQueue]) {
      try {
        const q = await ch.checkQueue(queue);
        this.metrics.queueMessages.set({ queue }, q.messageCount);
        this.metrics.queueConsumers.set({ queue }, q.consumerCount);
      } catch {
        return;
      }
    }
  }
}

/** Where a message first came from, for a copy published to the queue directly (the default exchange). */
function originHeaders(msg: ConsumeMessage, headers: Record<string, unknown>): Record<string, string> {
  const fromCopy = msg.fields.exchange === '' && typeof headers[HEADERS.exchange] === 'string';
  return {
    [HEADERS.exchange]: fromCopy ? String(headers[HEADERS.exchange]) : msg.fields.exchange,
    [HEADERS.routingKey]: fromCopy ? String(headers[HEADERS.routingKey] ?? '') : msg.fields.routingKey,
  };
}

/** Headers worth keeping on a republished copy (not the broker's own dead-lettering history). */
function cleanHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k === 'x-death' || k.startsWith('x-first-death') || k.startsWith('x-last-death') || k === 'x-delivery-count') continue;
    out[k] = v;
  }
  return out;
}

function copyProperties(msg: ConsumeMessage, over: Options.Publish): Options.Publish {
  const p = msg.properties;
  const props: Options.Publish = { persistent: true };
  if (p.contentType) props.contentType = p.contentType as string;
  if (p.contentEncoding) props.contentEncoding = p.contentEncoding as string;
  if (p.correlationId) props.correlationId = p.correlationId as string;
  if (p.replyTo) props.replyTo = p.replyTo as string;
  if (p.messageId) props.messageId = p.messageId as string;
  if (p.timestamp) props.timestamp = p.timestamp as number;
  if (p.type) props.type = p.type as string;
  if (p.appId) props.appId = p.appId as string;
  if (p.priority !== undefined) props.priority = p.priority as number;
  props.headers = (p.headers ?? {}) as Record<string, unknown>;
  return { ...props, ...over };
}

function clip(text: string): string {
  return text.length > MAX_HEADER_TEXT ? `${text.slice(0, MAX_HEADER_TEXT - 1)}…` : text;
}

/** A stable id for a message without one: its body's hash. */
function fingerprint(msg: ConsumeMessage): string {
  let h = 0x811c9dc5;
  for (const b of msg.content) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** The error that failed a run, for headers and replies. */
function failureOf(record: RunRecord): string {
  const decisive = [...record.errors].reverse().find((e) => e.kind === 'fatal') ?? [...record.errors].reverse().find((e) => e.kind === 'permanent') ?? record.errors[record.errors.length - 1];
  if (!decisive) return `run ${record.id} ${record.status}`;
  return `${decisive.item ? `${decisive.item}: ` : ''}${decisive.message}`.replace(/^(.+?): \1: /, '$1: ');
}

/**
 * A failure the same run would meet again: the run failed on bad data (a permanent
 * item error under `onError: fail`) and on nothing else. Transient trouble that
 * outlasted the engine's retries, and fatal errors (a source or store that failed,
 * a configuration the operator may fix), are worth another attempt later.
 */
function isPermanentFailure(record: RunRecord): boolean {
  const kinds = new Set(record.errors.map((e) => e.kind));
  return kinds.has('permanent') && !kinds.has('fatal') && record.counts.errors.fatal === 0;
}

export type { MessageOutcome };
