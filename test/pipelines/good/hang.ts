// Test pipeline: its one item never finishes, for the second-Ctrl-C test.
import { NEVER } from 'rxjs';
import { z } from 'zod';
import { definePipeline, item } from '../../../runtime/pipeline.ts';
import { stdout } from '../../../sinks/stdout.ts';

export default definePipeline({
  name: 'hang',
  description: 'One item whose transform never completes',
  params: z.object({}),
  source: function* () {
    // tells the test the run is under way (its signal handlers are in place)
    process.stderr.write('hang: item pulled\n');
    yield item('stuck', 1);
  },
  transform: () => () => NEVER,
  sinks: () => [stdout<number>()],
});
