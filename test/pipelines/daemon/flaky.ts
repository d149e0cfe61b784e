// Test pipeline for the daemon: fails on purpose. `fail: transient` throws a
// TransientError from the source (the run fails; the daemon retries it), `permanent`
// fails an item with a PermanentError under onError: fail (the daemon does not retry).
// With `failTimes` N and a `counterFile`, only the first N runs fail.
import fs from 'node:fs';
import { z } from 'zod';
import { PermanentError, TransientError } from '../../../runtime/errors.ts';
import { definePipeline, item, type Sink } from '../../../runtime/pipeline.ts';

const discard: Sink<{ n: number }> = { name: 'discard', kind: 'null', write: () => undefined };

export default definePipeline({
  name: 'flaky',
  description: 'Fails as told (for retry and dead-letter tests)',
  params: z.object({
    fail: z.enum(['none', 'transient', 'permanent']).default('none'),
    failTimes: z.number().int().min(0).default(0).describe('fail only this many runs (0: always); needs counterFile'),
    counterFile: z.string().optional(),
    items: z.number().int().min(0).default(3),
    delayMs: z.number().int().min(0).default(0),
  }),
  onError: 'fail',
  source: async function* ({ params }) {
    let failNow = params.fail !== 'none';
    if (failNow && params.failTimes > 0 && params.counterFile) {
      let runs = 0;
      try {
        runs = Number(fs.readFileSync(params.counterFile, 'utf8')) || 0;
      } catch {
        // first run
      }
      fs.writeFileSync(params.counterFile, String(runs + 1));
      failNow = runs < params.failTimes;
    }
    for (let n = 0; n < params.items; n++) {
      if (params.delayMs) await new Promise((r) => setTimeout(r, params.delayMs));
      if (failNow && params.fail === 'transient') throw new TransientError('the upstream is down (on purpose)');
      if (failNow && params.fail === 'permanent') {
        yield item(`item-${n}`, { n }, { error: new PermanentError(`item ${n} is malformed (on purpose)`) });
        continue;
      }
      yield item(`item-${n}`, { n });
    }
  },
  sinks: () => [discard],
});
