// Test pipeline standing in for altrepo-repo (not written yet): takes the params a
// route of the daemon maps a `repo.load` message to, and records them.
import { z } from 'zod';
import { definePipeline, type Sink } from '../../../runtime/pipeline.ts';

const discard: Sink<{ path: string; branch: string }> = { name: 'discard', kind: 'null', write: () => undefined };

export default definePipeline({
  name: 'repo-load',
  description: 'Stands in for altrepo-repo in route-table tests',
  params: z.object({
    path: z.string().describe('repository snapshot directory'),
    branch: z.string(),
    date: z.string().optional(),
  }),
  source: ({ params }) => [{ path: params.path, branch: params.branch }],
  sinks: () => [discard],
});
