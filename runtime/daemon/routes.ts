/**
 * The route table: how a message that is not one of sluice's own triggers — one sent
 * to another system's exchange, in that system's body format — becomes a run. A route
 * maps (exchange, routing key) to a pipeline; it checks the body field by field (the
 * old loaders' checks: known branch, real date, today's date …) and builds the
 * pipeline's params from templates. A message that fails a check is dead-lettered
 * with the reason, never run.
 *
 * Templates: `{field}`, `{table[field]}` (a lookup), with filters `|date:FORMAT`
 * (tokens YYYY, MM, DD), `|lower`, `|upper`; `{{` and `}}` are literal braces. A
 * template that is one reference without filters keeps the value's JSON type;
 * anything else is a string. A param whose only reference is an absent optional field
 * is left out (the pipeline's default applies).
 *
 * @example
 * ```ts
 * const table = new RouteTable([{
 *   exchange: 'repodb-ex', routingKey: 'repo.load', pipeline: 'altrepo-repo',
 *   fields: { branch: { type: 'string', lookup: 'branches' }, date: { type: 'date' } },
 *   tables: { branches: { p10: '/archive/repo/p10' } },
 *   params: { path: '{branches[branch]}/date/{date|date:YYYY/MM/DD}', branch: '{branch}' },
 * }]);
 * table.match('repodb-ex', 'repo.load')!.map({ branch: 'p10', date: '2022-06-22' });
 * // { path: '/archive/repo/p10/date/2022/06/22', branch: 'p10' }
 * ```
 */
import { topicMatches } from '../amqp/topology.ts';
import type { BindingSpec, ExchangeSpec } from '../amqp/topology.ts';
import { fieldCheckSchema, routeSchema, type FieldCheck, type RouteConfig } from './config.ts';
import { InvalidTrigger } from './trigger-message.ts';

export interface Route {
  readonly name: string;
  readonly config: RouteConfig;
  /** check the body and build the params; throws InvalidTrigger('route-check') */
  map(body: unknown): Record<string, unknown>;
}

type Part = { text: string } | { ref: string; table?: string; filters: string[] };

export class RouteTable {
  readonly routes: readonly Route[];

  constructor(configs: readonly (RouteConfig | Record<string, unknown>)[]) {
    this.routes = configs.map((c) => compileRoute(routeSchema.parse(c)));
  }

  /** The first route whose exchange is `exchange` and whose binding pattern matches `routingKey`. */
  match(exchange: string, routingKey: string): Route | undefined {
    return this.routes.find((r) => r.config.exchange === exchange && (r.config.exchangeType === 'fanout' || r.config.exchangeType === 'headers' || topicMatches(r.config.routingKey, routingKey)));
  }

  /** true when some route listens on `exchange` (a message from it that matches no route is a bad routing key) */
  hasExchange(exchange: string): boolean {
    return this.routes.some((r) => r.config.exchange === exchange);
  }

  exchanges(): ExchangeSpec[] {
    const seen = new Map<string, ExchangeSpec>();
    for (const r of this.routes) {
      if (!seen.has(r.config.exchange)) seen.set(r.config.exchange, { name: r.config.exchange, type: r.config.exchangeType, passive: !r.config.declareExchange });
      if (r.config.done && !seen.has(r.config.done.exchange)) seen.set(r.config.done.exchange, { name: r.config.done.exchange, type: r.config.done.exchangeType });
    }
    return [...seen.values()];
  }

  bindings(queue: string): BindingSpec[] {
    return this.routes.map((r) => ({ queue, exchange: r.config.exchange, routingKey: r.config.routingKey }));
  }
}

function compileRoute(config: RouteConfig): Route {
  const name = config.name ?? `${config.exchange}/${config.routingKey}`;
  const fail = (message: string): never => {
    throw new InvalidTrigger('route-check', `route ${name}: ${message}`);
  };
  const templates = Object.entries(config.params).map(([param, value]) => [param, typeof value === 'string' ? parseTemplate(value, name, param) : value] as const);
  for (const [param, value] of templates) {
    if (!Array.isArray(value)) continue;
    for (const part of value as Part[]) {
      if ('ref' in part) {
        if (part.table && !(part.table in config.tables)) throw new Error(`route ${name}: param "${param}" uses table "${part.table}", which is not in its tables`);
        for (const f of part.filters) if (!/^(date:.+|lower|upper)$/.test(f)) throw new Error(`route ${name}: param "${param}": unknown filter "${f}" (date:FORMAT, lower, upper)`);
      }
    }
  }
  return {
    name,
    config,
    map(body: unknown): Record<string, unknown> {
      if (typeof body !== 'object' || body === null || Array.isArray(body)) fail('the body must be a JSON object');
      const fields = body as Record<string, unknown>;
      if (config.strict) {
        const extra = Object.keys(fields).filter((k) => !(k in config.fields));
        if (extra.length) fail(`unknown field${extra.length > 1 ? 's' : ''} ${extra.map((k) => `"${k}"`).join(', ')} (this route takes ${Object.keys(config.fields).join(', ') || 'no fields'})`);
      }
      for (const [field, rawCheck] of Object.entries(config.fields)) {
        const check = fieldCheckSchema.parse(rawCheck);
        const problem = checkField(field, fields[field], check, config.tables);
        if (problem) fail(problem);
      }
      const params: Record<string, unknown> = {};
      for (const [param, value] of templates) {
        if (!Array.isArray(value)) {
          params[param] = value;
          continue;
        }
        const parts = value as Part[];
        const only = parts.length === 1 && 'ref' in parts[0]! ? parts[0] : undefined;
        if (only && 'ref' in only && only.filters.length === 0 && !only.table) {
          if (fields[only.ref] !== undefined) params[param] = fields[only.ref];
          continue;
        }
        if (parts.some((p) => 'ref' in p && fields[p.ref] === undefined)) {
          if (parts.every((p) => !('ref' in p) || fields[p.ref] === undefined)) continue;
          fail(`param "${param}" needs field ${parts.filter((p): p is Extract<Part, { ref: string }> => 'ref' in p && fields[p.ref] === undefined).map((p) => `"${p.ref}"`).join(', ')}, which the message lacks`);
        }
        params[param] = parts.map((p) => ('text' in p ? p.text : render(p, fields, config.tables))).join('');
      }
      return params;
    },
  };
}

function checkField(field: string, value: unknown, check: FieldCheck, tables: RouteConfig['tables']): string | undefined {
  if (value === undefined || value === null) return check.required ? `field "${field}" is required` : undefined;
  switch (check.type) {
    case 'string':
      if (typeof value !== 'string') return `field "${field}" must be a string, not ${JSON.stringify(value)}`;
      break;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) return `field "${field}" must be a number, not ${JSON.stringify(value)}`;
      break;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) return `field "${field}" must be an integer, not ${JSON.stringify(value)}`;
      break;
    case 'boolean':
      if (typeof value !== 'boolean') return `field "${field}" must be true or false, not ${JSON.stringify(value)}`;
      break;
    case 'date': {
      if (typeof value !== 'string' || !isCalendarDate(value)) return `bad date: field "${field}" must be a date YYYY-MM-DD, not ${JSON.stringify(value)}`;
      if (check.today && value !== localToday()) return `bad date: field "${field}" must be today (${localToday()}), not ${value}`;
      break;
    }
  }
  if (check.oneOf && !check.oneOf.includes(value as string | number | boolean)) {
    return `unknown ${field} ${JSON.stringify(value)} (known: ${check.oneOf.map((v) => String(v)).join(', ')})`;
  }
  if (check.lookup) {
    const table = tables[check.lookup] ?? {};
    if (!Object.prototype.hasOwnProperty.call(table, String(value))) {
      return `unknown ${field} ${JSON.stringify(value)} (known: ${Object.keys(table).join(', ') || 'none'})`;
    }
  }
  if (check.pattern && !new RegExp(check.pattern).test(String(value))) {
    return `field "${field}" ${JSON.stringify(value)} does not match ${check.pattern}`;
  }
  return undefined;
}

/** "YYYY-MM-DD" that names a real day. */
export function isCalendarDate(text: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(y, mo - 1, d));
  return date.getUTCFullYear() === y && date.getUTCMonth() === mo - 1 && date.getUTCDate() === d;
}

function localToday(now = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

function parseTemplate(text: string, route: string, param: string): Part[] | string {
  if (!text.includes('{') && !text.includes('}')) return text;
  const parts: Part[] = [];
  let literal = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '{' && text[i + 1] === '{') { literal += '{'; i++; continue; }
    if (c === '}' && text[i + 1] === '}') { literal += '}'; i++; continue; }
    if (c === '}') throw new Error(`route ${route}: param "${param}": unmatched "}" in ${JSON.stringify(text)} (write }} for a brace)`);
    if (c !== '{') { literal += c; continue; }
    const end = text.indexOf('}', i);
    if (end === -1) throw new Error(`route ${route}: param "${param}": unclosed "{" in ${JSON.stringify(text)}`);
    const [refText, ...filters] = text.slice(i + 1, end).split('|').map((s) => s.trim());
    const m = /^([A-Za-z_][\w-]*)(?:\[([A-Za-z_][\w-]*)\])?$/.exec(refText ?? '');
    if (!m) throw new Error(`route ${route}: param "${param}": "{${text.slice(i + 1, end)}}" is not {field} or {table[field]}`);
    if (literal) parts.push({ text: literal });
    literal = '';
    parts.push(m[2] ? { table: m[1], ref: m[2], filters } : { ref: m[1]!, filters });
    i = end;
  }
  if (literal) parts.push({ text: literal });
  return parts;
}

function render(part: Extract<Part, { ref: string }>, fields: Record<string, unknown>, tables: RouteConfig['tables']): string {
  let value: unknown = fields[part.ref];
  if (part.table) value = tables[part.table]?.[String(value)];
  let text = typeof value === 'string' ? value : JSON.stringify(value);
  for (const filter of part.filters) {
    if (filter === 'lower') text = text.toLowerCase();
    else if (filter === 'upper') text = text.toUpperCase();
    else if (filter.startsWith('date:')) {
      const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(text);
      if (m) text = filter.slice(5).replace(/YYYY/g, m[1]!).replace(/MM/g, m[2]!).replace(/DD/g, m[3]!);
    }
  }
  return text;
}
