/**
 * Error classes of the engine. Every error is one of three kinds, which decides what
 * the runner does with it:
 *  - `transient`: may succeed if tried again (network reset, 503, a server restarting):
 *    retried with exponential backoff and jitter, a bounded number of times;
 *  - `permanent`: this item (or this batch) will never succeed as it is: the pipeline's
 *    error policy applies (`fail`, `skip` or `dead-letter`);
 *  - `fatal`: the run cannot go on (bad configuration, store unreachable for good).
 */
export type ErrorKind = 'transient' | 'permanent' | 'fatal';

export interface SluiceErrorOptions {
  /** identity of the item the error is about: a path, a URL, a message id */
  item?: string;
  /** what the user can do about it */
  hint?: string;
  /** seconds the other side asked us to wait before trying again (HTTP Retry-After) */
  retryAfterMs?: number;
  cause?: unknown;
}

export class SluiceError extends Error {
  readonly kind: ErrorKind;
  readonly item?: string;
  readonly hint?: string;
  readonly retryAfterMs?: number;
  constructor(kind: ErrorKind, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.item = options.item;
    this.hint = options.hint;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export class TransientError extends SluiceError {
  override name = 'TransientError';
  constructor(message: string, options?: SluiceErrorOptions) {
    super('transient', message, options);
  }
}

export class PermanentError extends SluiceError {
  override name = 'PermanentError';
  constructor(message: string, options?: SluiceErrorOptions) {
    super('permanent', message, options);
  }
}

export class FatalError extends SluiceError {
  override name = 'FatalError';
  constructor(message: string, options?: SluiceErrorOptions) {
    super('fatal', message, options);
  }
}

/** Node/undici error codes that mean "the other side may answer next time". */
const TRANSIENT_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN',
  'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
]);

/** The kind of any thrown value: ours carry it; a few system errors are transient; the rest are permanent for the item. */
export function classifyError(err: unknown): ErrorKind {
  if (err instanceof SluiceError) return err.kind;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return 'transient';
  return 'permanent';
}

/** One line for logs and run records: the message, the item it is about, and the hint. */
export function describeError(err: unknown): string {
  if (err instanceof SluiceError) {
    let text = err.message;
    if (err.item && !text.includes(err.item)) text = `${err.item}: ${text}`;
    if (err.hint) text += ` (${err.hint})`;
    return text;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}
