/**
 * A pull reader over a byte stream that knows how far it has read and can give bytes
 * back: what the decoders and the archive readers read their input through.
 *
 * - `read()` returns the next non-empty chunk, or `undefined` at the end;
 * - `position` is the number of bytes handed out so far (less any given back), i.e. the
 *   offset in the input of the next byte `read()` returns: the offset that error
 *   messages name;
 * - `unread(chunk)` puts bytes back in front, so a caller can look at the start of a
 *   stream (`peek(n)`) and hand the whole stream on;
 * - `recording()` is a view for trying out a decoder on the start of the stream: what it
 *   reads is kept, and `rewind()` gives it all back (after any read still under way), so
 *   the stream is as it was;
 * - it is itself an `AsyncIterable<Uint8Array>`, so it can be given to anything that
 *   takes a `ByteInput`, without copying.
 *
 * Memory: the reader holds only the chunks given back to it; it never reads ahead.
 *
 * @example
 * ```ts
 * import { ByteReader } from './byte-reader.ts';
 *
 * const reader = ByteReader.from(file.content());
 * const head = await reader.peek(6); // not consumed
 * for await (const chunk of reader) console.log(chunk.length);
 * ```
 */

/** What decoders and archive readers accept: a web stream or any async iterable of bytes. */
export type ByteInput = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

export class ByteReader implements AsyncIterable<Uint8Array> {
  /** offset of the next byte `read()` returns */
  position = 0;
  private readonly pending: Uint8Array[] = [];
  private iterator: AsyncIterator<Uint8Array> | undefined;
  private streamReader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private ended = false;

  private constructor(input: ByteInput) {
    if (isReadableStream(input)) this.streamReader = input.getReader();
    else this.iterator = input[Symbol.asyncIterator]();
  }

  /** A reader over `input`; a `ByteReader` is returned as it is. */
  static from(input: ByteInput): ByteReader {
    return input instanceof ByteReader ? input : new ByteReader(input);
  }

  /** The next chunk (never empty), or `undefined` when the input has ended. */
  async read(): Promise<Uint8Array | undefined> {
    const given = this.pending.pop();
    if (given) {
      this.position += given.length;
      return given;
    }
    while (!this.ended) {
      let result: { done?: boolean; value?: Uint8Array };
      if (this.streamReader) result = await this.streamReader.read();
      else result = await this.iterator!.next();
      if (result.done) {
        this.ended = true;
        this.release();
        return undefined;
      }
      const chunk = result.value;
      if (!(chunk instanceof Uint8Array)) throw new TypeError(`expected Uint8Array chunks, got ${typeof chunk}`);
      if (chunk.length === 0) continue;
      this.position += chunk.length;
      return chunk;
    }
    return undefined;
  }

  /** Give bytes back: the next `read()` returns them. */
  unread(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.pending.push(chunk);
    this.position -= chunk.length;
  }

  /** Up to `n` bytes from the start of what is left (fewer at the end), without consuming them. */
  async peek(n: number): Promise<Uint8Array> {
    const taken: Uint8Array[] = [];
    let have = 0;
    while (have < n) {
      const chunk = await this.read();
      if (!chunk) break;
      taken.push(chunk);
      have += chunk.length;
    }
    for (let i = taken.length - 1; i >= 0; i--) this.unread(taken[i]!);
    if (taken.length === 1) return taken[0]!.subarray(0, n);
    const out = new Uint8Array(Math.min(n, have));
    let at = 0;
    for (const chunk of taken) {
      if (at >= out.length) break;
      const part = chunk.subarray(0, out.length - at);
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /**
   * A view that reads from this reader and keeps what it read; `rewind()` gives it all
   * back. Cancelling the view (as a decoder does when it is cancelled) does not cancel
   * this reader.
   */
  recording(): { input: AsyncIterable<Uint8Array>; rewind: () => Promise<void> } {
    const kept: Uint8Array[] = [];
    let rewound = false;
    let reading: Promise<unknown> = Promise.resolve();
    const input: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<Uint8Array>> => {
          if (rewound) return { done: true, value: undefined };
          const read = this.read();
          reading = read.catch(() => undefined);
          const chunk = await read;
          if (!chunk) return { done: true, value: undefined };
          // a read that was under way when rewind() was called is kept too (rewind waits for it)
          kept.push(chunk);
          if (rewound) return { done: true, value: undefined };
          return { done: false, value: chunk };
        },
        return: async (): Promise<IteratorResult<Uint8Array>> => ({ done: true, value: undefined }),
      }),
    };
    const rewind = async () => {
      if (rewound) return;
      rewound = true;
      await reading;
      for (let i = kept.length - 1; i >= 0; i--) this.unread(kept[i]!);
      kept.length = 0;
    };
    return { input, rewind };
  }

  /** Stop reading: the input is cancelled (a web stream) or returned (an iterator). */
  async cancel(reason?: unknown): Promise<void> {
    this.pending.length = 0;
    if (this.ended) return;
    this.ended = true;
    try {
      if (this.streamReader) await this.streamReader.cancel(reason);
      else await this.iterator!.return?.();
    } catch {
      // the input failing while it is being cancelled changes nothing for us
    } finally {
      this.release();
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: async () => {
        const chunk = await this.read();
        return chunk ? { done: false, value: chunk } : { done: true, value: undefined };
      },
      return: async () => {
        await this.cancel();
        return { done: true, value: undefined };
      },
    };
  }

  private release(): void {
    try {
      this.streamReader?.releaseLock();
    } catch {
      // releasing a lock that is already gone
    }
  }
}

function isReadableStream(input: ByteInput): input is ReadableStream<Uint8Array> {
  return typeof (input as ReadableStream<Uint8Array>).getReader === 'function';
}
