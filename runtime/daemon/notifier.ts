/**
 * Failure notifications in the old loaders' format, so the alert consumers already
 * bound to the notifier exchange keep working: routing key `<type>.<severity>` and a
 * JSON body `{subject, severity, type, message, timestamp, payload}` (timestamp in
 * ISO 8601, payload the triggering message's body — parsed JSON when it is JSON).
 *
 * @example
 * ```ts
 * const notifier = new Notifier(publisher, { exchange: 'notifier-ex', type: 'sluice' });
 * await notifier.notify({ type: 'repo-load', severity: 'error', subject: 'repo.load failed', message: '…', payload: body });
 * ```
 */
import type { Logger } from '../log.ts';
import type { AmqpPublisher } from '../amqp/publisher.ts';

export type Severity = 'info' | 'warning' | 'error' | 'critical';

export interface Notification {
  type: string;
  severity: Severity;
  subject: string;
  message: string;
  payload: unknown;
}

export class Notifier {
  constructor(
    private readonly publisher: AmqpPublisher,
    private readonly options: { exchange: string },
    private readonly log: Logger,
  ) {}

  /** Publish (confirmed); a failure to notify is logged, never thrown. */
  async notify(n: Notification): Promise<void> {
    const body = {
      subject: n.subject,
      severity: n.severity,
      type: n.type,
      message: n.message,
      timestamp: new Date().toISOString(),
      payload: n.payload,
    };
    try {
      await this.publisher.publish(this.options.exchange, `${n.type}.${n.severity}`, Buffer.from(JSON.stringify(body)), {
        contentType: 'application/json',
        persistent: true,
        appId: 'sluice',
      }, AbortSignal.timeout(30_000));
    } catch (err) {
      this.log.warn(`cannot publish a notification to ${this.options.exchange}: ${(err as Error).message}`);
    }
  }
}

/** The body of a message as the notification's payload: its JSON when it is JSON, else its text. */
export function payloadOf(content: Buffer): unknown {
  const text = content.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
