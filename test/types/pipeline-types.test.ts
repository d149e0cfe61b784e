// Compile-time contract: record types flow from source to sinks. Each @ts-expect-error
// below is a mismatch that must stay a type error; `npm test` runs tsc, so if one
// stops being an error the suite fails.
import { map } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { definePipeline, type Sink } from '../../runtime/pipeline.ts';

declare function sinkOf<R>(): Sink<R>;

describe('pipeline record types', () => {
  it('accept matching types and reject mismatches at compile time', () => {
    const ok = definePipeline({
      name: 'ok',
      description: 'source → transform → sink types line up',
      params: z.object({ n: z.number().default(1) }),
      source: ({ params }) => [params.n],
      transform: () => map((n: number) => ({ value: n, label: String(n) })),
      sinks: () => [sinkOf<{ value: number }>()],
    });

    const none = z.object({});
    // the sink wants a field (`path`) the records do not have
    // @ts-expect-error
    definePipeline({ name: 'a', description: 'd', params: none, source: () => [1, 2], transform: () => map((n: number) => ({ value: n })), sinks: () => [sinkOf<{ value: number; path: string }>()] });

    // without a transform the sinks take the source's values: numbers are not strings
    // @ts-expect-error
    definePipeline({ name: 'b', description: 'd', params: none, source: () => [1, 2], sinks: () => [sinkOf<string>()] });

    // params are typed from the schema: root is a string
    // @ts-expect-error
    definePipeline({ name: 'c', description: 'd', params: z.object({ root: z.string() }), source: ({ params }) => [params.root * 2], sinks: () => [sinkOf<number>()] });

    // and the matching versions compile
    definePipeline({ name: 'd', description: 'd', params: none, source: () => [1, 2], sinks: () => [sinkOf<number>()] });

    expect(ok.name).toBe('ok');
  });
});
