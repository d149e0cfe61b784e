// Test pipeline for schedules: one item after `ms` milliseconds, no sinks. A run that
// lasts long enough to overlap the next due time of a fast schedule.
import { z } from 'zod';
import { definePipeline } from '../../../runtime/pipeline.ts';

export default definePipeline({
  name: 'nap',
  description: 'Sleep, then yield one record',
  params: z.object({
    ms: z.number().int().min(0).default(0).describe('how long the run takes'),
    label: z.string().default('').describe('anything, to tell schedules apart'),
  }),
  source: async function* ({ params, signal }) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, params.ms);
      signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
    yield { label: params.label };
  },
  sinks: () => [],
});
