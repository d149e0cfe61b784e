// Test pipeline for the daemon: kills the process running it (SIGKILL, like the OOM
// killer would), so a test can check that such a poison message does not loop.
import { z } from 'zod';
import { definePipeline, type Sink } from '../../../runtime/pipeline.ts';

const discard: Sink<number> = { name: 'discard', kind: 'null', write: () => undefined };

export default definePipeline({
  name: 'crash',
  description: 'Kills its own process (poison-message tests)',
  params: z.object({}),
  source: async function* () {
    process.kill(process.pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 60_000));
    yield 1;
  },
  sinks: () => [discard],
});
