/**
 * The admin API's bodies and answers as zod schemas: request bodies are validated with
 * them (a 400 names the failing field) and the OpenAPI document is generated from
 * them (openapi.ts), so the two never drift.
 */
import { z } from 'zod';
import { scheduleInputSchema, scheduleUpdateSchema } from '../scheduler/schedule.ts';
import { ROLES } from './admin-store.ts';

export const errorSchema = z.object({
  error: z.string().describe('what is wrong, and what to do'),
  field: z.string().optional().describe('the failing field of the body, for 400'),
}).describe('An error');

export const meSchema = z.object({ name: z.string(), role: z.enum(ROLES), via: z.enum(['basic', 'bearer']) });

export const tokenRequestSchema = z.object({
  expiresIn: z.number().int().min(60).max(30 * 86_400).default(12 * 3600).describe('seconds the token lives (60 s to 30 days; default 12 h)'),
}).strict();

export const tokenSchema = z.object({ token: z.string().describe('send as "Authorization: Bearer <token>"; shown once, never stored'), expiresAt: z.string() });

export const pipelineSchema = z.object({
  name: z.string(),
  description: z.string(),
  params: z.record(z.string(), z.unknown()).describe('the params as JSON schema (from the pipeline\'s zod schema)'),
  schedule: z.string().optional().describe('the pipeline\'s default schedule'),
  triggerable: z.boolean().describe('messages (and so schedules and "run now") may run it on this daemon'),
});

export const runRequestSchema = z.object({
  params: z.record(z.string(), z.unknown()).default({}).describe('the run\'s params, checked by the pipeline\'s schema'),
}).strict();

export const runAcceptedSchema = z.object({ triggerId: z.string().describe('the run record\'s trigger id (GET /api/runs?trigger=…)'), pipeline: z.string() });

export const scheduleSchema = z.object({
  id: z.string(),
  pipeline: z.string(),
  params: z.record(z.string(), z.unknown()),
  cron: z.union([z.string(), z.record(z.string(), z.union([z.string(), z.number()]))]),
  timezone: z.string(),
  start: z.string().optional(),
  end: z.string().optional(),
  jitter: z.number(),
  enabled: z.boolean(),
  overlap: z.enum(['skip', 'queue']),
  missed: z.enum(['run-once', 'skip']),
  origin: z.enum(['api', 'pipeline']),
  createdAt: z.string(),
  updatedAt: z.string(),
  updatedBy: z.string(),
  expression: z.string().describe('the cron pattern as croner reads it'),
  nextDue: z.string().optional(),
  lastFire: z.object({ due: z.string(), outcome: z.string(), triggerId: z.string(), at: z.string(), daemon: z.string() }).optional(),
});

export const runSchema = z.object({
  id: z.string(),
  pipeline: z.string(),
  params: z.unknown(),
  trigger: z.enum(['cli', 'amqp', 'schedule', 'api']),
  triggerId: z.string().optional(),
  status: z.enum(['running', 'succeeded', 'failed', 'interrupted']),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  durationMs: z.number().optional(),
  counts: z.record(z.string(), z.unknown()),
  errors: z.array(z.object({ item: z.string().optional(), kind: z.string(), message: z.string(), component: z.string() })),
});

export const runsQuerySchema = z.object({
  pipeline: z.string().optional(),
  status: z.enum(['running', 'succeeded', 'failed', 'interrupted']).optional(),
  trigger: z.string().optional().describe('a trigger id'),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
});

export const userSchema = z.object({ name: z.string(), role: z.enum(ROLES), createdAt: z.string() });

export const userInputSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, 'letters, digits, ".", "_", "@" and "-" (at most 64)'),
  role: z.enum(ROLES),
  password: z.string().min(8, 'at least 8 characters').max(1024),
}).strict();

export const auditSchema = z.object({ at: z.string(), user: z.string(), action: z.string(), target: z.string(), outcome: z.string(), details: z.record(z.string(), z.unknown()) });

export const auditQuerySchema = z.object({ limit: z.coerce.number().int().min(1).max(10_000).default(100) });

export { scheduleInputSchema, scheduleUpdateSchema };
