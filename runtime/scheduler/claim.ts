/**
 * One firing per due time, however many daemons run: each daemon that sees a schedule
 * due claims that due time on the broker, and only the daemon whose claim the broker
 * accepts publishes the trigger. No election, no coordinator: the broker decides.
 *
 * The claim is a message published (with publisher confirms) to a queue named after
 * the schedule and the due time, declared with `x-max-length: 1` and
 * `x-overflow: reject-publish`: the broker accepts the first message and nacks every
 * later one while the queue exists. The queue deletes itself (`x-expires`) some
 * minutes after the last daemon touched it; by then the winner has recorded the
 * firing in the store, which every daemon checks before claiming, so a latecomer does
 * not fire again either.
 *
 * A confirm that never comes (the connection dropped) counts as lost: better a due
 * time missed than fired twice; the log says so.
 *
 * @example
 * ```ts
 * if (await claimDueTime(connection, 'sluice.triggers', 'fedora', due.getTime(), 600_000)) publishTrigger(…);
 * ```
 */
import { createHash } from 'node:crypto';
import type { AmqpConnection } from '../amqp/connection.ts';

/** The claim queue's name: `<queue>.claim.<schedule>.<due ms>[.<phase>]` (hashed when too long for AMQP). */
export function claimQueueName(queue: string, scheduleId: string, dueMs: number, phase = ''): string {
  const name = `${queue}.claim.${scheduleId}.${dueMs}${phase ? `.${phase}` : ''}`;
  if (Buffer.byteLength(name) <= 255) return name;
  return `${queue.slice(0, 100)}.claim.${createHash('sha256').update(name).digest('hex')}`;
}

/** True when this process won the claim. */
export async function claimDueTime(connection: AmqpConnection, queue: string, scheduleId: string, dueMs: number, ttlMs: number, identity: string, phase = ''): Promise<boolean> {
  const name = claimQueueName(queue, scheduleId, dueMs, phase);
  const channel = await connection.createChannel(true);
  let closed = false;
  channel.once('close', () => { closed = true; });
  try {
    await channel.assertQueue(name, {
      durable: true,
      arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish', 'x-expires': Math.max(1000, Math.round(ttlMs)) },
    });
    return await new Promise<boolean>((resolve) => {
      try {
        channel.sendToQueue(name, Buffer.from(identity), { persistent: true }, (err: unknown) => resolve(!err && !closed));
      } catch {
        resolve(false);
      }
    });
  } finally {
    if (!closed) await channel.close().catch(() => undefined);
  }
}
