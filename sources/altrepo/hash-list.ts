/**
 * `files/list/<arch>.hash.xz` and `src.hash.xz` of an ALT snapshot: the SHA-256 of every
 * package file of an arch, one `<sha256 hex> <file name>` line each (sha256sum's format:
 * one or two spaces, or ` *`, between them). The loader checks each package it reads
 * against it, so a file that differs from what the snapshot published fails its item.
 *
 * Memory: one map entry per package of the arch (a Sisyphus arch: ~40,000 entries,
 * a few MB), held while that arch is read.
 *
 * @example
 * ```ts
 * const sums = await readHashList(ctx.fs.createReadStream('files/list/x86_64.hash.xz'), { source: 'x86_64.hash.xz' });
 * sums.get('bash-5.2-alt1.x86_64.rpm'); // 'e3b0c442…'
 * ```
 */
import { decompress, type ByteInput } from '../decoders/index.ts';

export async function readHashList(input: ByteInput, options: { source?: string } = {}): Promise<Map<string, string>> {
  const { stream } = await decompress(input, { name: options.source ?? '(hash list)' });
  const sums = new Map<string, string>();
  let rest = '';
  const take = (line: string) => {
    const m = /^([0-9a-fA-F]{64})\s+\*?(.+?)\s*$/.exec(line);
    if (m) sums.set(m[2]!, m[1]!.toLowerCase());
  };
  const decoder = new TextDecoder();
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
    rest += decoder.decode(chunk, { stream: true });
    let start = 0;
    let nl: number;
    while ((nl = rest.indexOf('\n', start)) >= 0) {
      take(rest.slice(start, nl));
      start = nl + 1;
    }
    rest = rest.slice(start);
  }
  rest += decoder.decode();
  if (rest) take(rest);
  return sums;
}
