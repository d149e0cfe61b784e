/**
 * The rule for an archive member's `content()`: it is valid until the next member is
 * pulled, it can be opened once, and pulling the next member waits until an opened
 * content has been read to its end or cancelled.
 *
 * Why: a tar is one sequential stream (possibly compressed); a member's bytes go by once,
 * between its header and the next one. Reading the next member means skipping whatever
 * of this one is left, so this one can no longer be read. Rather than buffer a member
 * (unbounded) or fail a reader that is still busy, the reader waits for it.
 *
 * So a consumer must:
 * - call `content()` before it pulls the next member (the runner runs a pipeline's
 *   transform on an item before it pulls the next one, so a transform that calls
 *   `entry.content()` right away, e.g. `mergeMap(async (e) => hashStream(e.content()))`,
 *   is fine, whatever `maxInFlight` is);
 * - read the stream to its end, or `cancel()` it; one left half-read would hold up the
 *   next member (the `archive()` source also releases it when the item is acknowledged).
 *
 * `content()` after the next member was pulled, or a second time, throws a
 * `PermanentError` that says so.
 *
 * The same rule holds for zip members, although a zip could be read at random, so that a
 * pipeline does not work for one format and not the other.
 */
import { PermanentError } from '../../runtime/errors.ts';

type State = 'fresh' | 'open' | 'done' | 'expired';

export class ContentLease {
  private state: State = 'fresh';
  private inner: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private finished: Promise<void> | undefined;
  private finish: (() => void) | undefined;

  /**
   * @param what the member, for error messages (`archive!path`)
   * @param open opens the member's bytes; called at most once
   * @param unused called when the member is moved past without its content being opened
   */
  constructor(
    private readonly what: string,
    private readonly open: () => ReadableStream<Uint8Array>,
    private readonly unused?: () => Promise<void> | void,
  ) {}

  readonly content = (): ReadableStream<Uint8Array> => {
    if (this.state === 'expired') {
      throw new PermanentError(`${this.what}: content() called after the next archive member was read`, {
        item: this.what,
        hint: 'an archive is read in order: call entry.content() (and read it) before pulling the next entry',
      });
    }
    if (this.state !== 'fresh') {
      throw new PermanentError(`${this.what}: content() called a second time`, {
        item: this.what,
        hint: 'an archive member can be read once; tee the stream if two readers need it',
      });
    }
    // open() may throw (a directory, a hard link, a member that cannot be read): then
    // nothing was opened, and a later call throws the same
    const inner = this.open().getReader();
    this.state = 'open';
    this.finished = new Promise<void>((resolve) => { this.finish = resolve; });
    this.inner = inner;
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          try {
            const { done, value } = await inner.read();
            if (done) {
              this.settle();
              controller.close();
            } else controller.enqueue(value);
          } catch (err) {
            this.settle();
            throw err;
          }
        },
        cancel: async (reason) => {
          try {
            await inner.cancel(reason);
          } finally {
            this.settle();
          }
        },
      },
      { highWaterMark: 0 },
    );
  };

  /**
   * The consumer has moved on to the next member: wait until an opened content is read
   * or cancelled (or `signal` aborts, which cancels it); release one never opened.
   */
  async release(signal?: AbortSignal): Promise<void> {
    if (this.state === 'fresh') {
      this.state = 'expired';
      await this.unused?.();
      return;
    }
    if (this.state === 'open' && this.finished) {
      if (signal) {
        if (signal.aborted) await this.abandon(signal.reason);
        else {
          const onAbort = () => void this.abandon(signal.reason);
          signal.addEventListener('abort', onAbort, { once: true });
          try {
            await this.finished;
          } finally {
            signal.removeEventListener('abort', onAbort);
          }
        }
      } else await this.finished;
    }
    this.state = 'expired';
  }

  /** Stop now: cancel an opened content that is still being read; the member can no longer be opened. */
  async abandon(reason?: unknown): Promise<void> {
    if (this.state === 'open' && this.inner) {
      await this.inner.cancel(reason).catch(() => undefined);
      this.settle();
    }
    if (this.state === 'fresh') {
      this.state = 'expired';
      await this.unused?.();
    }
  }

  private settle(): void {
    if (this.state === 'open') this.state = 'done';
    this.finish?.();
  }
}

const leases = new WeakMap<object, ContentLease>();

/** Remember which lease governs an entry's content (so a source can release it on ack). */
export function attachLease<T extends object>(entry: T, lease: ContentLease): T {
  leases.set(entry, lease);
  return entry;
}

/** Cancel an entry's open content (if any) so the archive reader can move on; a no-op for entries of other sources. */
export async function releaseEntryContent(entry: object, reason?: unknown): Promise<void> {
  await leases.get(entry)?.abandon(reason);
}
