/**
 * sluice's own trigger message, and why a message is refused.
 *
 * A trigger is a JSON object published to the trigger exchange:
 *
 * ```json
 * { "pipeline": "inventory", "params": { "root": "/srv/mirror" }, "id": "nightly-2024-05-01" }
 * ```
 *
 * `params` is optional (the pipeline's defaults apply) and is validated by the
 * pipeline's zod schema; `id` is optional (default: the AMQP `message_id`, else one is
 * made up) and is the run's trigger id. Nothing else is allowed: in particular a
 * message can never carry permissions (`allow`, `permissions`, `allowNet` …), which
 * only the pipeline's own declaration and the operator's config grant.
 */
import { randomUUID } from 'node:crypto';

/** Why a message goes to the dead-letter queue without being run (the `x-sluice-reason` header). */
export type RejectReason =
  | 'invalid-json'
  | 'invalid-message'
  | 'unknown-route'
  | 'route-check'
  | 'unknown-pipeline'
  | 'pipeline-not-allowed'
  | 'invalid-params'
  | 'permission-widening'
  | 'too-many-deliveries';

/** A message that will never run: dead-lettered at once (no retries), with `reason` and the message. */
export class InvalidTrigger extends Error {
  override name = 'InvalidTrigger';
  constructor(readonly reason: RejectReason, message: string) {
    super(message);
  }
}

export interface TriggerRequest {
  pipeline: string;
  params: Record<string, unknown>;
  /** from the body, or the message id, or made up */
  id: string;
}

/** Keys that would grant permissions if anything honoured them; nothing does, and a message carrying one is refused. */
export const PERMISSION_KEY = /^(allow|allows|allowed|allow[-_]?(net|read|write|run|all)|permissions?|grants?|capabilities)$/i;

/** Parse a body as JSON; InvalidTrigger('invalid-json') when it is not. */
export function parseJsonBody(content: Buffer): unknown {
  const text = content.toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    const shown = text.length > 60 ? `${text.slice(0, 57)}…` : text;
    throw new InvalidTrigger('invalid-json', `the body is not JSON (${(err as Error).message}): ${JSON.stringify(shown)}`);
  }
}

/** Read sluice's own trigger format from a parsed body. */
export function readTrigger(body: unknown, messageId?: string): TriggerRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidTrigger('invalid-message', 'a trigger must be a JSON object {"pipeline": "...", "params": {...}, "id": "..."}');
  }
  const fields = body as Record<string, unknown>;
  const widening = Object.keys(fields).filter((k) => PERMISSION_KEY.test(k));
  if (widening.length) {
    throw new InvalidTrigger('permission-widening', `a message cannot grant permissions (it has ${widening.map((k) => `"${k}"`).join(', ')}); permissions come from the pipeline and the daemon's config`);
  }
  const unknown = Object.keys(fields).filter((k) => !['pipeline', 'params', 'id'].includes(k));
  if (unknown.length) {
    throw new InvalidTrigger('invalid-message', `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')} in the trigger (it takes pipeline, params, id)`);
  }
  if (typeof fields.pipeline !== 'string' || !fields.pipeline) {
    throw new InvalidTrigger('invalid-message', 'the trigger has no "pipeline" (a pipeline name)');
  }
  const params = fields.params ?? {};
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new InvalidTrigger('invalid-message', '"params" must be a JSON object');
  }
  if (fields.id !== undefined && (typeof fields.id !== 'string' || !fields.id)) {
    throw new InvalidTrigger('invalid-message', '"id" must be a non-empty string');
  }
  return {
    pipeline: fields.pipeline,
    params: params as Record<string, unknown>,
    id: (fields.id as string | undefined) ?? messageId ?? `amqp-${randomUUID()}`,
  };
}

/** Param names that look like permissions and that the pipeline's schema does not declare. */
export function wideningParams(params: Record<string, unknown>, declared: readonly string[]): string[] {
  return Object.keys(params).filter((k) => PERMISSION_KEY.test(k) && !declared.includes(k));
}
