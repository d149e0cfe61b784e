// Test pipeline whose name does not match its file: `check` must reject it.
import { z } from 'zod';
import { definePipeline } from '../../../runtime/pipeline.ts';

export default definePipeline({
  name: 'something-else',
  description: 'misnamed on purpose',
  params: z.object({}),
  source: () => [1, 2, 3],
  sinks: () => [],
});
