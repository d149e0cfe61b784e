// Test pipeline: fetches one URL through the run's HTTP client (net permission checked).
import { z } from 'zod';
import { definePipeline, item } from '../../../runtime/pipeline.ts';
import { stdout } from '../../../sinks/stdout.ts';

export default definePipeline({
  name: 'fetch',
  description: 'Fetch a URL and print its status and body',
  params: z.object({ url: z.string().url().describe('what to fetch') }),
  permissions: { net: [] },
  onError: 'skip',
  source: async function* ({ params, http }) {
    try {
      const res = await http.request(params.url, { timeoutMs: 5000 });
      yield item(params.url, { status: res.status, body: res.body.toString('utf8') });
    } catch (err) {
      yield item(params.url, { status: 0, body: '' }, { error: err });
    }
  },
  sinks: () => [stdout()],
});
