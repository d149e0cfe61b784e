/**
 * The scheduler: runs inside every daemon (`npm run serve`) and turns schedules into
 * trigger messages, which the daemons then run like any other trigger.
 *
 * - **What it schedules**: the schedules in the state store (`sluice_schedules`, see
 *   schedule-store.ts), added through the admin API, plus each pipeline's default
 *   `schedule` (id `<pipeline>.default`, created on start-up, its cron following the
 *   pipeline file; enable/disable it like any other).
 * - **When**: croner computes each schedule's next due time (cron.ts). A due time
 *   fires at `due + jitter(due)`, the jitter a fixed fraction of `jitter` seconds per
 *   schedule and due time, so every daemon agrees on it. Several due times that
 *   passed within `grace` (a loaded machine, a 1-second schedule) fire once, as the
 *   latest.
 * - **Once across daemons**: each daemon sees every due time; before firing it checks
 *   the store (`sluice_schedule_fires`) and claims the due time on the broker
 *   (claim.ts). The winner publishes the trigger — message id and trigger id
 *   `schedule:<id>:<due ISO time>` — and records the firing.
 * - **No overlap**: if the schedule's last fired trigger has not started yet (for up
 *   to `startTimeout`), or its run is still `running` (for up to `stale`), the due
 *   time is `skipped` (counted), or with `overlap: queue` recorded as `queued` (one at
 *   most; later ones are skipped) and fired as soon as the run ends.
 * - **Missed runs**: due times older than `grace` that passed while no daemon ran are
 *   run once at start-up (`missed: run-once`: the latest of them) or recorded as
 *   `missed` (`missed: skip`). A schedule's clock starts when it is created or last
 *   changed (times before that are never "missed").
 * - **Changes** made through another daemon's API are picked up every `refresh`.
 *
 * @example
 * ```ts
 * const scheduler = new Scheduler({ store, connection: daemon.connection, exchange: daemon.names.exchange, queue: daemon.names.queue, … });
 * await scheduler.start();
 * await scheduler.add({ id: 'nightly', pipeline: 'inventory', cron: '0 3 * * *' }, 'alice');
 * ```
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import { delayFor } from '../backoff.ts';
import type { AmqpConnection } from '../amqp/connection.ts';
import { AmqpPublisher } from '../amqp/publisher.ts';
import type { ClickHouseStore } from '../clickhouse/store.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { ParamsError } from '../params-error.ts';
import { listPipelineNames, loadPipeline, PipelineLoadError, pipelinesDir } from '../pipeline-loader.ts';
import type { AnyPipeline } from '../pipeline.ts';
import { parseParams } from '../runner.ts';
import { claimDueTime } from './claim.ts';
import { compileCron, type CompiledCron } from './cron.ts';
import { applyUpdate, scheduleInputSchema, type Schedule, type ScheduleInput, type ScheduleSpec, type ScheduleUpdate } from './schedule.ts';
import { lastFiredOf, queuedOf, ScheduleStore, type Fire, type FireOutcome } from './schedule-store.ts';
import { SchedulerMetrics } from './scheduler-metrics.ts';
import { publishTrigger, scheduleTriggerId } from './trigger.ts';

export interface SchedulerOptions {
  store: ClickHouseStore;
  connection: AmqpConnection;
  /** the daemon's trigger exchange */
  exchange: string;
  /** the daemon's trigger queue (claim queues are named after it) */
  queue: string;
  log: Logger;
  registry: Registry;
  /** pipelines that messages may trigger (the daemon's `pipelines`) */
  allowed: '*' | readonly string[];
  /** this daemon, for the fires table and claims */
  identity: string;
  pipelinesDir?: string;
  /** reload schedules from the store this often; default 10 s */
  refreshMs?: number;
  /** due times older than this count as missed; default 60 s */
  graceMs?: number;
  /** a fired trigger not started after this is no longer "in progress"; default 15 min */
  startTimeoutMs?: number;
  /** a run `running` longer than this is presumed dead (its daemon was killed); default 24 h */
  staleMs?: number;
  /** how long a claim queue outlives its last use; default 10 min */
  claimTtlMs?: number;
}

/** A refused change: `status` 400 (with `field`), 404 or 409, for the admin API. */
export class ScheduleRefused extends Error {
  override name = 'ScheduleRefused';
  constructor(readonly status: 400 | 404 | 409, message: string, readonly field?: string) {
    super(message);
  }
}

/** A schedule as the API shows it. */
export interface ScheduleView extends Schedule {
  /** the croner pattern used */
  expression: string;
  nextDue?: string;
  lastFire?: { due: string; outcome: FireOutcome; triggerId: string; at: string; daemon: string };
}

interface Entry {
  schedule: Schedule;
  cron: CompiledCron;
  /** due times up to this one are handled */
  lastDue: number;
  /** the newest fires row */
  latest?: Fire;
  /** a due time is queued (overlap: queue) and waits for the running run */
  queued?: boolean;
}

const MAX_STEPS = 100_000;

export class Scheduler {
  readonly metrics: SchedulerMetrics;
  private readonly schedules: ScheduleStore;
  private readonly publisher: AmqpPublisher;
  private readonly entries = new Map<string, Entry>();
  private readonly log: Logger;
  private readonly refreshMs: number;
  private readonly graceMs: number;
  private readonly startTimeoutMs: number;
  private readonly staleMs: number;
  private readonly claimTtlMs: number;
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private lastRefresh = 0;
  private stopped = false;

  constructor(private readonly options: SchedulerOptions) {
    this.schedules = new ScheduleStore(options.store);
    this.publisher = new AmqpPublisher(options.connection, { log: options.log });
    this.metrics = new SchedulerMetrics(options.registry);
    this.log = options.log.child({ component: 'scheduler' });
    this.refreshMs = options.refreshMs ?? 10_000;
    this.graceMs = options.graceMs ?? 60_000;
    this.startTimeoutMs = options.startTimeoutMs ?? 15 * 60_000;
    this.staleMs = options.staleMs ?? 24 * 3_600_000;
    this.claimTtlMs = options.claimTtlMs ?? 10 * 60_000;
  }

  /** Create the tables, add the pipelines' default schedules, load, and start the clock. */
  async start(): Promise<void> {
    await this.schedules.ready();
    await this.refresh();
    await this.syncDefaults();
    this.log.info(`scheduler: ${this.entries.size} schedule(s); ${[...this.entries.values()].filter((e) => e.schedule.enabled).length} enabled`);
    this.arm(0);
  }

  /** Stop the clock (a firing in progress finishes). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking?.catch(() => undefined);
    await this.publisher.close();
  }

  // ---- the API's operations ----------------------------------------------------------

  list(): ScheduleView[] {
    return [...this.entries.values()].sort((a, b) => a.schedule.id.localeCompare(b.schedule.id)).map((e) => this.view(e));
  }

  get(id: string): ScheduleView | undefined {
    const e = this.entries.get(id);
    return e && this.view(e);
  }

  async add(input: ScheduleInput, by: string): Promise<ScheduleView> {
    await this.refresh();
    const spec = this.parse(input);
    if (this.entries.has(spec.id)) throw new ScheduleRefused(409, `a schedule "${spec.id}" exists already`, 'id');
    await this.checkPipeline(spec);
    const now = new Date().toISOString();
    const schedule: Schedule = { ...spec, origin: 'api', createdAt: now, updatedAt: now, updatedBy: by };
    await this.schedules.save(schedule);
    this.put(schedule);
    this.log.info(`schedule ${spec.id} added by ${by}: ${spec.pipeline} at ${JSON.stringify(spec.cron)} (${spec.timezone})`);
    this.arm(0);
    return this.view(this.entries.get(spec.id)!);
  }

  async update(id: string, update: ScheduleUpdate, by: string): Promise<ScheduleView> {
    await this.refresh();
    const entry = this.entries.get(id);
    if (!entry) throw new ScheduleRefused(404, `no schedule "${id}"`);
    const { origin, createdAt, updatedAt: _u, updatedBy: _b, ...current } = entry.schedule;
    let spec: ScheduleSpec;
    try {
      spec = applyUpdate(current, update);
    } catch (err) {
      throw refusedFromZod(err);
    }
    if (spec.pipeline !== current.pipeline || JSON.stringify(spec.params) !== JSON.stringify(current.params)) await this.checkPipeline(spec);
    // a default schedule whose cron is changed by hand no longer follows its pipeline file
    const changedCron = JSON.stringify(spec.cron) !== JSON.stringify(current.cron);
    const schedule: Schedule = { ...spec, origin: origin === 'pipeline' && !changedCron ? 'pipeline' : 'api', createdAt, updatedAt: new Date().toISOString(), updatedBy: by };
    await this.schedules.save(schedule);
    this.put(schedule);
    this.log.info(`schedule ${id} changed by ${by}: ${Object.keys(update).join(', ')}`);
    this.arm(0);
    return this.view(this.entries.get(id)!);
  }

  setEnabled(id: string, enabled: boolean, by: string): Promise<ScheduleView> {
    return this.update(id, { enabled }, by);
  }

  async remove(id: string, by: string): Promise<void> {
    await this.refresh();
    const entry = this.entries.get(id);
    if (!entry) throw new ScheduleRefused(404, `no schedule "${id}"`);
    await this.schedules.remove(entry.schedule, by);
    this.entries.delete(id);
    this.metrics.nextDue.remove({ schedule: id });
    this.log.info(`schedule ${id} removed by ${by}`);
  }

  /** Publish a trigger for a run now (the API's "run now"); returns the trigger id. */
  async runNow(pipeline: string, params: Record<string, unknown>, by: string): Promise<string> {
    await this.checkPipeline({ pipeline, params });
    const id = `api:${new Date().toISOString()}:${randomUUID().slice(0, 8)}`;
    await publishTrigger(this.publisher, this.options.exchange, { pipeline, params, id, trigger: 'api', headers: { 'x-sluice-user': by } });
    this.log.info(`${pipeline}: run requested by ${by} (trigger ${id})`);
    return id;
  }

  /** Check a pipeline may be scheduled with these params; ScheduleRefused(400) naming the field otherwise. */
  async checkPipeline(s: { pipeline: string; params: Record<string, unknown> }): Promise<AnyPipeline> {
    const allowed = this.options.allowed;
    if (allowed !== '*' && !allowed.includes(s.pipeline)) {
      throw new ScheduleRefused(400, `pipeline "${s.pipeline}" may not be triggered on this daemon (allowed: ${allowed.join(', ') || 'none'})`, 'pipeline');
    }
    let pipeline: AnyPipeline;
    try {
      pipeline = await loadPipeline(s.pipeline, this.options.pipelinesDir ?? pipelinesDir());
    } catch (err) {
      if (err instanceof PipelineLoadError) throw new ScheduleRefused(400, err.message.replace(/ in \/\S+;/, ';'), 'pipeline');
      throw err;
    }
    try {
      parseParams(pipeline.params, s.params);
    } catch (err) {
      if (err instanceof ParamsError) {
        const field = /param "([^"]+)"/.exec(err.message)?.[1];
        throw new ScheduleRefused(400, `params: ${err.message}`, field ? `params.${field}` : 'params');
      }
      throw err;
    }
    return pipeline;
  }

  // ---- loading -----------------------------------------------------------------------

  private parse(input: unknown): ScheduleSpec {
    const result = scheduleInputSchema.safeParse(input);
    if (!result.success) throw refusedFromZod(result.error);
    return result.data;
  }

  private put(schedule: Schedule, latest?: Fire): void {
    let cron: CompiledCron;
    try {
      cron = compileCron(schedule.cron, schedule.timezone);
    } catch (err) {
      this.log.error(`schedule ${schedule.id}: ${describeError(err)}; it cannot fire`);
      return;
    }
    const previous = this.entries.get(schedule.id);
    const since = Math.max(Date.parse(schedule.createdAt), Date.parse(schedule.updatedAt)) || Date.now();
    const lastDue = Math.max(since, latest?.dueMs ?? 0, previous && previous.schedule.updatedAt === schedule.updatedAt ? previous.lastDue : 0);
    this.entries.set(schedule.id, { schedule, cron, lastDue, latest: latest ?? previous?.latest });
  }

  /** Reload when the last load is older than `ms` (the API's reads). */
  async refreshIfOlder(ms: number): Promise<void> {
    if (Date.now() - this.lastRefresh > ms) await this.refresh();
  }

  /** Reload every schedule and its newest firing from the store. */
  async refresh(): Promise<void> {
    const [all, fires] = await Promise.all([this.schedules.list(), this.schedules.recentFires(1)]);
    const seen = new Set<string>();
    for (const s of all) {
      seen.add(s.id);
      const latest = fires.get(s.id)?.[0];
      const previous = this.entries.get(s.id);
      this.put(s, latest && (!previous?.latest || latest.dueMs >= previous.latest.dueMs) ? latest : previous?.latest);
    }
    for (const id of [...this.entries.keys()]) {
      if (!seen.has(id)) {
        this.entries.delete(id);
        this.metrics.nextDue.remove({ schedule: id });
      }
    }
    this.lastRefresh = Date.now();
    const enabled = all.filter((s) => s.enabled).length;
    this.metrics.schedules.set({ state: 'enabled' }, enabled);
    this.metrics.schedules.set({ state: 'disabled' }, all.length - enabled);
  }

  /** The pipelines' own `schedule`s, as `<pipeline>.default`. */
  private async syncDefaults(): Promise<void> {
    const dir = this.options.pipelinesDir ?? pipelinesDir();
    let names: string[];
    try {
      names = await listPipelineNames(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (this.options.allowed !== '*' && !this.options.allowed.includes(name)) continue;
      let pipeline: AnyPipeline;
      try {
        pipeline = await loadPipeline(name, dir);
      } catch {
        continue;
      }
      if (!pipeline.schedule) continue;
      const id = `${name}.default`;
      const existing = this.entries.get(id)?.schedule;
      if (existing && (existing.origin !== 'pipeline' || JSON.stringify(existing.cron) === JSON.stringify(pipeline.schedule))) continue;
      try {
        parseParams(pipeline.params, {});
      } catch (err) {
        this.log.warn(`pipeline ${name} has a default schedule but its params have no defaults (${describeError(err)}): not scheduled`);
        continue;
      }
      const now = new Date().toISOString();
      let spec: ScheduleSpec;
      try {
        const { origin: _o, createdAt: _c, updatedAt: _u, updatedBy: _b, ...kept } = existing ?? ({} as Partial<Schedule>);
        spec = this.parse({ missed: 'skip', ...kept, id, pipeline: name, params: kept.params ?? {}, cron: pipeline.schedule });
      } catch (err) {
        this.log.error(`pipeline ${name}: its schedule ${JSON.stringify(pipeline.schedule)} cannot be used: ${describeError(err)}`);
        continue;
      }
      const schedule: Schedule = { ...spec, origin: 'pipeline', createdAt: existing?.createdAt ?? now, updatedAt: now, updatedBy: 'pipeline file' };
      await this.schedules.save(schedule);
      this.put(schedule);
      this.log.info(`schedule ${id}: ${existing ? 'cron updated from' : 'added for'} pipeline ${name} (${pipeline.schedule})`);
    }
  }

  // ---- the clock -----------------------------------------------------------------------

  private arm(delayMs?: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    let delay = delayMs;
    if (delay === undefined) {
      const now = Date.now();
      let earliest = now + this.refreshMs;
      for (const e of this.entries.values()) {
        if (!e.schedule.enabled) continue;
        const next = this.nextAfter(e, e.lastDue);
        if (next !== undefined) earliest = Math.min(earliest, next + this.jitterMs(e.schedule, next));
        if (e.queued) earliest = Math.min(earliest, now + 1000);
      }
      delay = Math.max(20, Math.min(earliest - now, this.refreshMs));
    }
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        this.arm();
      });
    }, delay);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      if (Date.now() - this.lastRefresh >= this.refreshMs) await this.refresh();
    } catch (err) {
      this.log.warn(`scheduler: cannot reload schedules: ${describeError(err)}`);
    }
    for (const entry of [...this.entries.values()]) {
      if (this.stopped) return;
      try {
        await this.handle(entry);
      } catch (err) {
        this.log.error(`schedule ${entry.schedule.id}: ${describeError(err)}`);
        await delayFor(100);
      }
      const next = this.nextAfter(entry, entry.lastDue);
      if (next !== undefined && entry.schedule.enabled) this.metrics.nextDue.set({ schedule: entry.schedule.id }, (next + this.jitterMs(entry.schedule, next)) / 1000);
      else this.metrics.nextDue.remove({ schedule: entry.schedule.id });
    }
  }

  private nextAfter(e: Entry, after: number): number | undefined {
    const s = e.schedule;
    const start = s.start ? Date.parse(s.start) : undefined;
    const from = start !== undefined && start - 1 > after ? start - 1 : after;
    const next = e.cron.next(new Date(from));
    if (!next) return undefined;
    if (s.end && next.getTime() > Date.parse(s.end)) return undefined;
    return next.getTime();
  }

  /** The fixed delay of a due time: the same on every daemon. */
  private jitterMs(s: ScheduleSpec, dueMs: number): number {
    if (!s.jitter) return 0;
    const h = createHash('sha256').update(`${s.id}:${dueMs}`).digest().readUInt32BE(0);
    return Math.floor((h / 2 ** 32) * s.jitter * 1000);
  }

  /** The due times that have come: the latest within `grace`, and the latest older one. */
  private dueTimes(e: Entry, now: number): { recent?: number; missed?: number } {
    let t = e.lastDue;
    let recent: number | undefined;
    let missed: number | undefined;
    for (let steps = 0; ; steps++) {
      if (steps === MAX_STEPS) {
        // a fast schedule after a long downtime: jump ahead; what was skipped was missed anyway
        missed = t;
        t = Math.max(t, now - this.graceMs - 1);
      }
      const next = this.nextAfter(e, t);
      if (next === undefined || next + this.jitterMs(e.schedule, next) > now) break;
      if (next + this.jitterMs(e.schedule, next) >= now - this.graceMs) recent = next;
      else missed = next;
      t = next;
      if (steps > MAX_STEPS * 2) break;
    }
    return { recent, missed };
  }

  private async handle(entry: Entry): Promise<void> {
    const s = entry.schedule;
    if (!s.enabled) return;
    const queued = s.overlap === 'queue' || entry.queued ? await queuedOf(this.schedules, s.id) : undefined;
    entry.queued = queued !== undefined;
    if (queued && !(await this.running(s))) {
      await this.release(entry, queued);
      return;
    }
    const { recent, missed } = this.dueTimes(entry, Date.now());
    if (recent !== undefined) {
      await this.fire(entry, recent);
    } else if (missed !== undefined) {
      if (s.missed === 'run-once') {
        this.log.info(`schedule ${s.id}: due at ${new Date(missed).toISOString()} while no daemon ran; running it once now`);
        await this.fire(entry, missed);
      } else {
        await this.decide(entry, missed, 'missed');
      }
    }
  }

  /** Claim a due time and record `outcome` for it (no trigger). */
  private async decide(entry: Entry, dueMs: number, outcome: FireOutcome): Promise<boolean> {
    const s = entry.schedule;
    entry.lastDue = Math.max(entry.lastDue, dueMs);
    if (await this.schedules.fireOf(s.id, dueMs)) return false;
    if (!(await claimDueTime(this.options.connection, this.options.queue, s.id, dueMs, this.claimTtlMs, this.options.identity))) {
      this.metrics.fires.inc({ schedule: s.id, outcome: 'claimed_elsewhere' });
      return false;
    }
    if (outcome !== 'fired') await this.record(entry, dueMs, outcome, '');
    return true;
  }

  private async fire(entry: Entry, dueMs: number): Promise<void> {
    const s = entry.schedule;
    if (!(await this.decide(entry, dueMs, 'fired'))) return;
    // busy: a due time already waits (queued, perhaps by another daemon), or the last run is still to start or running
    const waiting = await queuedOf(this.schedules, s.id);
    if (waiting || (await this.running(s))) {
      const queued = s.overlap === 'queue' && !waiting;
      await this.record(entry, dueMs, queued ? 'queued' : 'skipped', '');
      if (queued) entry.queued = true;
      this.log.warn(`schedule ${s.id}: due at ${new Date(dueMs).toISOString()} while its previous run is still going: ${queued ? 'queued (it runs when that one ends)' : 'skipped'}`);
      return;
    }
    await this.publish(entry, dueMs);
  }

  /** A queued due time, once the run before it ended: claimed again (phase `release`) so one daemon fires it. */
  private async release(entry: Entry, fire: Fire): Promise<void> {
    const s = entry.schedule;
    entry.queued = false;
    if (!(await claimDueTime(this.options.connection, this.options.queue, s.id, fire.dueMs, this.claimTtlMs, this.options.identity, 'release'))) return; // another daemon releases it
    this.log.info(`schedule ${s.id}: the previous run ended; running the queued one (due ${new Date(fire.dueMs).toISOString()})`);
    await this.publish(entry, fire.dueMs);
  }

  private async publish(entry: Entry, dueMs: number): Promise<void> {
    const s = entry.schedule;
    const triggerId = scheduleTriggerId(s.id, dueMs);
    try {
      await publishTrigger(this.publisher, this.options.exchange, {
        pipeline: s.pipeline,
        params: s.params,
        id: triggerId,
        trigger: 'schedule',
        headers: { 'x-sluice-schedule': s.id, 'x-sluice-due': new Date(dueMs).toISOString() },
      });
    } catch (err) {
      this.metrics.fires.inc({ schedule: s.id, outcome: 'failed' });
      this.log.error(`schedule ${s.id}: cannot publish the trigger for ${new Date(dueMs).toISOString()}: ${describeError(err)}`);
      return;
    }
    await this.record(entry, dueMs, 'fired', triggerId);
    this.log.info(`schedule ${s.id}: fired ${s.pipeline} (trigger ${triggerId})`);
  }

  private async record(entry: Entry, dueMs: number, outcome: FireOutcome, triggerId: string): Promise<void> {
    const fire = { scheduleId: entry.schedule.id, dueMs, triggerId, outcome, daemon: this.options.identity };
    await this.schedules.recordFire(fire);
    entry.latest = { ...fire, at: new Date().toISOString() };
    entry.lastDue = Math.max(entry.lastDue, dueMs);
    this.metrics.fires.inc({ schedule: entry.schedule.id, outcome });
  }

  /** Is the schedule's last fired run still to start or still running? */
  private async running(s: Schedule): Promise<boolean> {
    const fired = await lastFiredOf(this.schedules, s.id);
    if (!fired) return false;
    const now = Date.now();
    const run = await this.schedules.runOf(fired.triggerId);
    if (!run) return now - Date.parse(fired.at) < this.startTimeoutMs;
    if (run.status !== 'running') return false;
    return now - Date.parse(run.startedAt) < this.staleMs;
  }

  private view(e: Entry): ScheduleView {
    const next = e.schedule.enabled ? this.nextAfter(e, Math.max(e.lastDue, Date.now() - this.graceMs)) : undefined;
    return {
      ...e.schedule,
      expression: e.cron.expression,
      ...(next !== undefined ? { nextDue: new Date(next + this.jitterMs(e.schedule, next)).toISOString() } : {}),
      ...(e.latest ? { lastFire: { due: new Date(e.latest.dueMs).toISOString(), outcome: e.latest.outcome, triggerId: e.latest.triggerId, at: e.latest.at, daemon: e.latest.daemon } } : {}),
    };
  }
}

/** A zod error as a ScheduleRefused(400) naming the first failing field. */
function refusedFromZod(err: unknown): ScheduleRefused {
  const issues = (err as { issues?: { path: PropertyKey[]; message: string; code: string; keys?: string[] }[] }).issues;
  if (!issues?.length) return new ScheduleRefused(400, describeError(err));
  const issue = issues[0]!;
  const field = issue.code === 'unrecognized_keys' && issue.keys?.length ? [...issue.path, issue.keys[0]].join('.') : issue.path.join('.');
  const message = issue.code === 'unrecognized_keys' ? `unknown field${(issue.keys?.length ?? 0) > 1 ? 's' : ''} ${issue.keys!.map((k) => `"${k}"`).join(', ')}` : issue.message;
  return new ScheduleRefused(400, field ? `${field}: ${message}` : message, field || undefined);
}
