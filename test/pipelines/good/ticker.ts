// Test pipeline: emits numbered records slowly to stdout, for signal tests.
import { z } from 'zod';
import { definePipeline, item } from '../../../runtime/pipeline.ts';
import { stdout } from '../../../sinks/stdout.ts';

export default definePipeline({
  name: 'ticker',
  description: 'Numbers, one every few milliseconds',
  params: z.object({
    count: z.number().int().min(0).default(1_000_000).describe('how many numbers'),
    delayMs: z.number().int().min(0).default(5).describe('pause between numbers'),
    tags: z.array(z.string()).default([]).describe('labels copied into every record'),
    mode: z.enum(['plain', 'fancy']).default('plain'),
    verbose: z.boolean().default(false),
  }),
  source: async function* ({ params, signal }) {
    for (let n = 0; n < params.count && !signal.aborted; n++) {
      yield item(`tick-${n}`, { n, tags: params.tags, mode: params.mode, verbose: params.verbose });
      if (params.delayMs) await new Promise((r) => setTimeout(r, params.delayMs));
    }
  },
  sinks: () => [stdout()],
});
