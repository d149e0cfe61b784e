/**
 * Read a stream to its end and return the hex digest of its bytes for each of the given
 * algorithms (any name `node:crypto` knows: `sha256`, `sha1`, `md5`, `sha512` …), all
 * computed in one pass. Memory stays one chunk, whatever the size of the stream.
 *
 * The stream is consumed (and released when done). If reading fails, the error of the
 * stream is thrown and the stream is cancelled.
 *
 * @example
 * ```ts
 * import { hashStream } from '../sources/files/hash-stream.ts';
 *
 * const { sha256, md5 } = await hashStream(entry.content(), ['sha256', 'md5']);
 * ```
 */
import { createHash, getHashes, type Hash } from 'node:crypto';
import { FatalError } from '../../runtime/errors.ts';

export async function hashStream<A extends string = 'sha256'>(
  stream: ReadableStream<Uint8Array>,
  algorithms: readonly A[] = ['sha256' as A],
): Promise<Record<A, string>> {
  const hashes = new Map<A, Hash>();
  for (const algorithm of algorithms) {
    if (hashes.has(algorithm)) continue;
    try {
      hashes.set(algorithm, createHash(algorithm));
    } catch (err) {
      throw new FatalError(`unknown hash algorithm ${JSON.stringify(algorithm)}`, {
        hint: `use a name node:crypto knows: ${getHashes().join(', ')}`,
        cause: err,
      });
    }
  }
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const hash of hashes.values()) hash.update(value);
    }
  } catch (err) {
    await reader.cancel(err).catch(() => undefined);
    throw err;
  } finally {
    reader.releaseLock();
  }
  const digests = {} as Record<A, string>;
  for (const [algorithm, hash] of hashes) digests[algorithm] = hash.digest('hex');
  return digests;
}
