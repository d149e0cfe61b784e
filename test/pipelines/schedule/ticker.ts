// Test pipeline with a default schedule (every 2 seconds): the scheduler adds it as
// `ticker.default` on start-up.
import { z } from 'zod';
import { definePipeline } from '../../../runtime/pipeline.ts';

export default definePipeline({
  name: 'ticker',
  description: 'One record; scheduled by default every 2 seconds',
  params: z.object({}),
  schedule: '*/2 * * * * *',
  source: () => [{ tick: 1 }],
  sinks: () => [],
});
