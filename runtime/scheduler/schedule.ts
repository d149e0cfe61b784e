/**
 * A schedule: run `pipeline` with `params` whenever `cron` is due, in `timezone`,
 * between `start` and `end`, up to `jitter` seconds late (the same delay on every
 * daemon, so they agree), when `enabled`. `overlap` says what happens when the
 * schedule's previous run has not finished (`skip` it and count, or `queue` one run
 * for when it has); `missed` what happens to times that passed while no daemon ran
 * (`run-once` at start-up, or `skip`).
 *
 * The zod schema is the one source of truth: the admin API validates bodies with it and
 * its OpenAPI document is generated from it.
 *
 * @example
 * ```json
 * { "id": "fedora", "pipeline": "mirror-sync", "params": {"project": "fedora", …},
 *   "cron": {"minute": "*\/30"}, "timezone": "UTC", "jitter": 60, "overlap": "skip", "missed": "run-once" }
 * ```
 */
import { z } from 'zod';
import { checkTimezone, compileCron, CronError, FIELD_ORDER } from './cron.ts';

const fieldValue = z.union([z.string(), z.number().int()]);

export const cronFieldsSchema = z.object(Object.fromEntries(FIELD_ORDER.map((f) => [f, fieldValue.optional()])) as Record<(typeof FIELD_ORDER)[number], z.ZodOptional<typeof fieldValue>>)
  .strict()
  .describe('named fields (the old tool\'s form): year, month, day, week, day_of_week (0 = Monday), hour, minute, second; less significant fields than the last given default to their minimum');

const instant = z.string().refine((s) => !Number.isNaN(Date.parse(s)), { message: 'not an ISO 8601 date-time' });

export const SCHEDULE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** What a client gives to create a schedule. */
export const scheduleInputSchema = z.object({
  id: z.string().regex(SCHEDULE_ID, 'letters, digits, ".", "_" and "-" (at most 100), starting with a letter or digit').describe('the schedule\'s id'),
  pipeline: z.string().min(1).describe('the pipeline to run'),
  params: z.record(z.string(), z.unknown()).default({}).describe('its params, checked by the pipeline\'s schema'),
  cron: z.union([z.string().describe('a 5- or 6-field cron expression'), cronFieldsSchema]).describe('when: a cron string or named fields'),
  timezone: z.string().default('UTC').describe('IANA time zone the cron is read in'),
  start: instant.optional().describe('no run before this time'),
  end: instant.optional().describe('no run after this time'),
  jitter: z.number().int().min(0).max(86_400).default(0).describe('seconds: each run starts up to this much later (a fixed delay per due time)'),
  enabled: z.boolean().default(true),
  overlap: z.enum(['skip', 'queue']).default('skip').describe('the previous run is still going: skip this one (counted), or queue one run for when it ends'),
  missed: z.enum(['run-once', 'skip']).default('run-once').describe('times missed while no daemon ran: run once at start-up, or skip them'),
}).strict().superRefine((s, ctx) => checkSchedule(s, ctx));

/** What a client may change (everything but the id). */
export const scheduleUpdateSchema = z.object({
  pipeline: z.string().min(1).optional(),
  params: z.record(z.string(), z.unknown()).optional(),
  cron: z.union([z.string(), cronFieldsSchema]).optional(),
  timezone: z.string().optional(),
  start: instant.nullable().optional().describe('null removes it'),
  end: instant.nullable().optional().describe('null removes it'),
  jitter: z.number().int().min(0).max(86_400).optional(),
  enabled: z.boolean().optional(),
  overlap: z.enum(['skip', 'queue']).optional(),
  missed: z.enum(['run-once', 'skip']).optional(),
}).strict();

export type ScheduleInput = z.input<typeof scheduleInputSchema>;
export type ScheduleSpec = z.output<typeof scheduleInputSchema>;
export type ScheduleUpdate = z.output<typeof scheduleUpdateSchema>;

/** A stored schedule. */
export interface Schedule extends ScheduleSpec {
  /** `api` (added at run time) or `pipeline` (the pipeline file's default `schedule`) */
  origin: 'api' | 'pipeline';
  createdAt: string;
  updatedAt: string;
  updatedBy: string;
}

function checkSchedule(s: { cron: unknown; timezone: string; start?: string; end?: string }, ctx: z.RefinementCtx): void {
  try {
    checkTimezone(s.timezone);
  } catch (err) {
    ctx.addIssue({ code: 'custom', path: ['timezone'], message: (err as Error).message });
    return;
  }
  try {
    compileCron(s.cron as string, s.timezone);
  } catch (err) {
    if (!(err instanceof CronError)) throw err;
    ctx.addIssue({ code: 'custom', path: ['cron'], message: err.message });
  }
  if (s.start && s.end && Date.parse(s.end) <= Date.parse(s.start)) {
    ctx.addIssue({ code: 'custom', path: ['end'], message: 'end must be after start' });
  }
}

/** Apply an update to a schedule and check the result like a new one; throws the zod error. */
export function applyUpdate(current: ScheduleSpec, update: ScheduleUpdate): ScheduleSpec {
  const merged: Record<string, unknown> = { ...current };
  for (const [k, v] of Object.entries(update)) {
    if (v === undefined) continue;
    if (v === null) delete merged[k];
    else merged[k] = v;
  }
  return scheduleInputSchema.parse(merged);
}
