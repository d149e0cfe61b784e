/**
 * Publishing a trigger for the daemons to run: sluice's own trigger message
 * (`{pipeline, params, id}`, see runtime/daemon/trigger-message.ts) to the trigger
 * exchange with routing key `run.<pipeline>`, confirmed by the broker and `mandatory`
 * (an error when no queue is bound). `x-sluice-trigger` says who asked (`schedule`
 * or `api`), which the run record keeps; the message id is the trigger id, so a
 * scheduled run's id is the same on every daemon (`schedule:<id>:<due time>`).
 *
 * @example
 * ```ts
 * await publishTrigger(publisher, 'sluice.triggers', { pipeline: 'inventory', params: {}, id: 'api:…', trigger: 'api' });
 * ```
 */
import type { AmqpPublisher } from '../amqp/publisher.ts';

export interface TriggerToPublish {
  pipeline: string;
  params: Record<string, unknown>;
  id: string;
  trigger: 'schedule' | 'api';
  /** extra headers (`x-sluice-schedule`, `x-sluice-due`, `x-sluice-user` …) */
  headers?: Record<string, string>;
}

export const TRIGGER_HEADER = 'x-sluice-trigger';

export async function publishTrigger(publisher: AmqpPublisher, exchange: string, t: TriggerToPublish, signal?: AbortSignal): Promise<void> {
  const body = Buffer.from(JSON.stringify({ pipeline: t.pipeline, params: t.params, id: t.id }));
  await publisher.publish(exchange, `run.${t.pipeline}`, body, {
    persistent: true,
    mandatory: true,
    messageId: t.id,
    contentType: 'application/json',
    appId: 'sluice',
    timestamp: Math.floor(Date.now() / 1000),
    headers: { [TRIGGER_HEADER]: t.trigger, 'x-sluice-published-at': Date.now(), ...t.headers },
  }, signal ?? AbortSignal.timeout(30_000));
}

/** The trigger id of a schedule's due time. */
export function scheduleTriggerId(scheduleId: string, dueMs: number): string {
  return `schedule:${scheduleId}:${new Date(dueMs).toISOString()}`;
}
