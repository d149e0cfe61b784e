// Test pipeline: reads one file through the run's guarded fs (read permission checked).
import path from 'node:path';
import { z } from 'zod';
import { definePipeline, item } from '../../../runtime/pipeline.ts';
import { stdout } from '../../../sinks/stdout.ts';

export default definePipeline({
  name: 'readfile',
  description: 'Read a file under an allowed root',
  params: z.object({ root: z.string(), file: z.string() }),
  permissions: ({ params }) => ({ read: [params.root] }),
  onError: 'skip',
  source: async function* ({ params, fs }) {
    const target = path.join(params.root, params.file);
    try {
      yield item(target, { text: (await fs.readFile(target)).toString('utf8') });
    } catch (err) {
      yield item(target, { text: '' }, { error: err });
    }
  },
  sinks: () => [stdout()],
});
