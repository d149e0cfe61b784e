/**
 * Exact-length reads over a stream of chunks, for the RPM readers (lead, headers, cpio):
 * "give me the next 16 bytes", "skip 3 bytes of padding", "hand me the rest". It
 * holds only what was asked for plus the part of one chunk read ahead, and it knows
 * the absolute byte offset, so errors can say where the input went wrong.
 *
 * An optional `onChunk` sees every chunk pulled from the source exactly once, in order:
 * that is how a package's md5/sha1/sha256/blake2b are computed in the same pass that
 * parses it.
 *
 * @example
 * ```ts
 * import { ByteReader } from './byte-reader.ts';
 *
 * const reader = new ByteReader(stream);
 * const lead = await reader.read(96); // shorter only at the end of the input
 * ```
 */

/**
 * What the RPM readers accept: a web stream (e.g. `FileEntry.content()`), any async
 * iterable of bytes (a Node stream), or chunks already in memory (`[buffer]`).
 */
export type ByteSource = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** Iterate a web stream or an async iterable alike; a web stream is cancelled if the loop stops early. */
export async function* chunksOf(source: ByteSource): AsyncGenerator<Uint8Array, void, undefined> {
  if (typeof (source as ReadableStream<Uint8Array>).getReader === 'function') {
    const reader = (source as ReadableStream<Uint8Array>).getReader();
    let finished = false;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          finished = true;
          return;
        }
        yield value;
      }
    } finally {
      if (!finished) await reader.cancel().catch(() => undefined);
      reader.releaseLock();
    }
  } else {
    yield* source as AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  }
}

const EMPTY = Buffer.alloc(0);

export class ByteReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private readonly onChunk?: (chunk: Uint8Array) => void;
  /** chunks read ahead (the first one starts at `head`) */
  private queue: Buffer[] = [];
  private head = 0;
  private buffered = 0;
  private ended = false;
  /** bytes handed out (or skipped) so far: the absolute offset of the next byte */
  position = 0;

  constructor(source: ByteSource, onChunk?: (chunk: Uint8Array) => void) {
    this.iterator = chunksOf(source)[Symbol.asyncIterator]();
    this.onChunk = onChunk;
  }

  /** Pull one more chunk; false at the end of the input. */
  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    for (;;) {
      const { done, value } = await this.iterator.next();
      if (done) {
        this.ended = true;
        return false;
      }
      if (!value || value.byteLength === 0) continue;
      this.onChunk?.(value);
      const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      this.queue.push(chunk);
      this.buffered += chunk.length;
      return true;
    }
  }

  /** Make sure `n` bytes are buffered, if the input has them; returns how many are. */
  async fill(n: number): Promise<number> {
    while (this.buffered < n && (await this.pull()));
    return Math.min(this.buffered, n);
  }

  /**
   * The next `n` bytes, or fewer only when the input ends first (so callers compare the
   * length to what they asked for). Memory grows with what the input really delivers,
   * never with `n` itself, so a hostile length cannot make it allocate up front.
   */
  async read(n: number): Promise<Buffer> {
    if (n <= 0) return EMPTY;
    const have = await this.fill(n);
    return this.take(have);
  }

  /** The next `n` bytes (fewer only at the end of the input) without consuming them. */
  async peek(n: number): Promise<Buffer> {
    const have = await this.fill(n);
    if (have === 0) return EMPTY;
    const first = this.queue[0]!;
    if (first.length - this.head >= have) return first.subarray(this.head, this.head + have);
    // spread over chunks: merge them into one, so the bytes are copied once whatever comes next
    const merged = Buffer.concat(this.queue).subarray(this.head);
    this.queue = [merged];
    this.head = 0;
    return merged.subarray(0, have);
  }

  /** Skip `n` bytes; returns how many were skipped (fewer only at the end of the input). */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0 && !(await this.pull())) break;
      const step = Math.min(left, this.buffered);
      this.drop(step);
      left -= step;
    }
    return n - left;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    return (await this.fill(1)) === 0;
  }

  /**
   * Up to `max` bytes that are already buffered or arrive in the next chunk (at least one
   * byte unless the input has ended): for streaming a body without copying it.
   */
  async readSome(max: number): Promise<Buffer> {
    if (max <= 0) return EMPTY;
    if (this.buffered === 0 && !(await this.pull())) return EMPTY;
    const first = this.queue[0]!;
    return this.take(Math.min(max, first.length - this.head));
  }

  /** Everything left, chunk by chunk (what is buffered first). */
  async *rest(): AsyncGenerator<Buffer, void, undefined> {
    for (;;) {
      const chunk = await this.readSome(Number.MAX_SAFE_INTEGER);
      if (chunk.length === 0) return;
      yield chunk;
    }
  }

  /** Read the input to its end, dropping it (the `onChunk` hook still sees it); returns the bytes dropped. */
  async drain(): Promise<number> {
    let n = 0;
    for await (const chunk of this.rest()) n += chunk.length;
    return n;
  }

  /** Stop reading: the source is closed (a web stream is cancelled). */
  async close(): Promise<void> {
    this.queue = [];
    this.buffered = 0;
    this.ended = true;
    await this.iterator.return?.();
  }

  private take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const first = this.queue[0]!;
    let out: Buffer;
    if (first.length - this.head >= n) {
      out = first.subarray(this.head, this.head + n);
    } else {
      out = Buffer.allocUnsafe(n);
      let copied = 0;
      let i = 0;
      let start = this.head;
      while (copied < n) {
        const chunk = this.queue[i++]!;
        const count = Math.min(n - copied, chunk.length - start);
        chunk.copy(out, copied, start, start + count);
        copied += count;
        start = 0;
      }
    }
    this.drop(n);
    return out;
  }

  private drop(n: number): void {
    this.buffered -= n;
    this.position += n;
    let left = n;
    while (left > 0) {
      const first = this.queue[0]!;
      const available = first.length - this.head;
      if (available > left) {
        this.head += left;
        return;
      }
      left -= available;
      this.queue.shift();
      this.head = 0;
    }
  }
}
