/**
 * The admin API's routes as data: method, path, the least role allowed, the body and
 * query schemas, the answer's schema. The server (server.ts) routes, checks roles and
 * validates bodies from this table; the OpenAPI document (openapi.ts) is generated
 * from it.
 *
 * Roles: `viewer` reads; `operator` also triggers runs and enables/disables schedules;
 * `admin` does everything (schedules, users, audit).
 */
import { z } from 'zod';
import type { Role } from './admin-store.ts';
import * as s from './api-schemas.ts';

export interface RouteSpec {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** with `{name}` parameters */
  path: string;
  /** the least role allowed; `none` = no credentials needed; `any` = any authenticated user */
  role: Role | 'any' | 'none';
  summary: string;
  body?: z.ZodType;
  query?: z.ZodType;
  response?: z.ZodType;
  status: number;
  /** the handler's name (server.ts) */
  op: string;
}

export const ROUTES: readonly RouteSpec[] = [
  { method: 'GET', path: '/api/openapi.json', role: 'none', summary: 'This API as OpenAPI 3.1', status: 200, op: 'openapi' },
  { method: 'GET', path: '/api/me', role: 'any', summary: 'Who the credentials belong to', response: s.meSchema, status: 200, op: 'me' },
  { method: 'POST', path: '/api/tokens', role: 'any', summary: 'A bearer token for the caller (log in with Basic, then use the token)', body: s.tokenRequestSchema, response: s.tokenSchema, status: 201, op: 'createToken' },
  { method: 'DELETE', path: '/api/tokens/current', role: 'any', summary: 'Revoke the bearer token of this request (log out)', status: 204, op: 'revokeToken' },
  { method: 'GET', path: '/api/pipelines', role: 'viewer', summary: 'Pipelines with their param schemas', response: z.array(s.pipelineSchema), status: 200, op: 'listPipelines' },
  { method: 'GET', path: '/api/pipelines/{name}', role: 'viewer', summary: 'One pipeline', response: s.pipelineSchema, status: 200, op: 'getPipeline' },
  { method: 'POST', path: '/api/pipelines/{name}/runs', role: 'operator', summary: 'Run a pipeline now (a trigger for the daemons)', body: s.runRequestSchema, response: s.runAcceptedSchema, status: 202, op: 'runPipeline' },
  { method: 'GET', path: '/api/schedules', role: 'viewer', summary: 'Schedules with their next due time and last firing', response: z.array(s.scheduleSchema), status: 200, op: 'listSchedules' },
  { method: 'POST', path: '/api/schedules', role: 'admin', summary: 'Add a schedule', body: s.scheduleInputSchema, response: s.scheduleSchema, status: 201, op: 'addSchedule' },
  { method: 'GET', path: '/api/schedules/{id}', role: 'viewer', summary: 'One schedule', response: s.scheduleSchema, status: 200, op: 'getSchedule' },
  { method: 'PATCH', path: '/api/schedules/{id}', role: 'admin', summary: 'Change a schedule (null removes start or end)', body: s.scheduleUpdateSchema, response: s.scheduleSchema, status: 200, op: 'updateSchedule' },
  { method: 'DELETE', path: '/api/schedules/{id}', role: 'admin', summary: 'Remove a schedule', status: 204, op: 'removeSchedule' },
  { method: 'POST', path: '/api/schedules/{id}/enable', role: 'operator', summary: 'Enable a schedule', response: s.scheduleSchema, status: 200, op: 'enableSchedule' },
  { method: 'POST', path: '/api/schedules/{id}/disable', role: 'operator', summary: 'Disable (pause) a schedule', response: s.scheduleSchema, status: 200, op: 'disableSchedule' },
  { method: 'POST', path: '/api/schedules/{id}/runs', role: 'operator', summary: 'Run a schedule\'s pipeline with its params now ("sync now")', response: s.runAcceptedSchema, status: 202, op: 'runSchedule' },
  { method: 'GET', path: '/api/runs', role: 'viewer', summary: 'Recent runs, newest first, with status, counts and errors', query: s.runsQuerySchema, response: z.array(s.runSchema), status: 200, op: 'listRuns' },
  { method: 'GET', path: '/api/runs/{id}', role: 'viewer', summary: 'One run', response: s.runSchema, status: 200, op: 'getRun' },
  { method: 'GET', path: '/api/users', role: 'admin', summary: 'Users and their roles (never their passwords)', response: z.array(s.userSchema), status: 200, op: 'listUsers' },
  { method: 'POST', path: '/api/users', role: 'admin', summary: 'Create a user, or set an existing user\'s role and password', body: s.userInputSchema, response: s.userSchema, status: 201, op: 'putUser' },
  { method: 'DELETE', path: '/api/users/{name}', role: 'admin', summary: 'Remove a user', status: 204, op: 'removeUser' },
  { method: 'GET', path: '/api/audit', role: 'admin', summary: 'The audit log: every change, who made it and when', query: s.auditQuerySchema, response: z.array(s.auditSchema), status: 200, op: 'audit' },
];

const RANK: Readonly<Record<Role, number>> = { viewer: 1, operator: 2, admin: 3 };

/** May `role` use a route that needs `needed`? */
export function allows(role: Role, needed: RouteSpec['role']): boolean {
  if (needed === 'none' || needed === 'any') return true;
  return RANK[role] >= RANK[needed];
}

/** The route and its path parameters for a request; `methods` lists what the path allows when only the method is wrong. */
export function matchRoute(method: string, pathname: string): { route?: RouteSpec; params: Record<string, string>; methods: string[] } {
  const methods: string[] = [];
  for (const route of ROUTES) {
    const names: string[] = [];
    const re = new RegExp('^' + route.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_m, n: string) => { names.push(n); return '([^/]+)'; }) + '$');
    const m = re.exec(pathname);
    if (!m) continue;
    if (route.method !== method) {
      methods.push(route.method);
      continue;
    }
    const params: Record<string, string> = {};
    names.forEach((n, i) => {
      params[n] = decodeURIComponent(m[i + 1]!);
    });
    return { route, params, methods };
  }
  return { params: {}, methods };
}
