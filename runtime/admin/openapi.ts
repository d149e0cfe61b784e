/**
 * The OpenAPI 3.1 document of the admin API, generated from the route table and its
 * zod schemas (z.toJSONSchema), served at `GET /api/openapi.json`.
 */
import { z } from 'zod';
import { errorSchema } from './api-schemas.ts';
import { ROUTES } from './routes.ts';

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete json.$schema;
  return json;
}

export function openApiDocument(version = '0.1.0'): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of ROUTES) {
    const parameters = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    if (r.query) {
      const q = schemaOf(r.query, 'input') as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
      for (const [name, schema] of Object.entries(q.properties ?? {})) {
        parameters.push({ name, in: 'query', required: (q.required ?? []).includes(name) && schema.default === undefined, schema: schema as { type: string } } as never);
      }
    }
    const responses: Record<string, unknown> = {
      [String(r.status)]: r.response
        ? { description: r.summary, content: { 'application/json': { schema: schemaOf(r.response, 'output') } } }
        : { description: r.status === 204 ? 'done' : r.summary },
    };
    const error = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
    if (r.role !== 'none') {
      responses['401'] = error('missing, wrong or expired credentials');
      if (r.role !== 'any') responses['403'] = error(`the caller's role is below ${r.role}`);
    }
    if (r.body || r.query) responses['400'] = error('a bad body or query: `field` names the failing field');
    if (r.path.includes('{')) responses['404'] = error('no such pipeline, schedule, run or user');
    if (r.op === 'addSchedule') responses['409'] = error('a schedule with that id exists');
    (paths[r.path] ??= {})[r.method.toLowerCase()] = {
      operationId: r.op,
      summary: r.summary,
      ...(r.role === 'none' ? { security: [] } : { 'x-sluice-role': r.role }),
      ...(parameters.length ? { parameters } : {}),
      ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: schemaOf(r.body, 'input') } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'sluice admin API',
      version,
      description: 'Pipelines, schedules, runs, users and the audit log of a sluice daemon. Roles: viewer (read), operator (+ run now, enable/disable), admin (everything).',
    },
    servers: [{ url: '/' }],
    security: [{ basic: [] }, { bearer: [] }],
    components: {
      securitySchemes: {
        basic: { type: 'http', scheme: 'basic' },
        bearer: { type: 'http', scheme: 'bearer', description: 'a token from POST /api/tokens' },
      },
      schemas: { Error: schemaOf(errorSchema, 'output') },
    },
    paths,
  };
}
