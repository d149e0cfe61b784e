/**
 * Command-line params: `--param key=value` (repeat a key for array params) and
 * `--params-json '{…}'`, coerced by the pipeline's zod schema, and the `--help` text
 * generated from the same schema — one source of truth, so flags, validation and help
 * never drift.
 */
import { z } from 'zod';
import type { ParamsSchema } from './pipeline.ts';
import { ParamsError } from './params-error.ts';

interface JsonSchemaProperty {
  type?: string | string[];
  default?: unknown;
  description?: string;
  enum?: unknown[];
  items?: JsonSchemaProperty;
  anyOf?: JsonSchemaProperty[];
}

export function describeParams(schema: ParamsSchema): { properties: Record<string, JsonSchemaProperty>; required: string[] } {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as {
    properties?: Record<string, JsonSchemaProperty>;
    required?: string[];
  };
  return { properties: json.properties ?? {}, required: json.required ?? [] };
}

function typeOf(property: JsonSchemaProperty | undefined): string {
  if (!property) return 'string';
  if (Array.isArray(property.type)) return property.type.find((t) => t !== 'null') ?? 'string';
  if (property.type) return property.type;
  const alternative = property.anyOf?.find((p) => p.type && p.type !== 'null');
  return alternative ? typeOf(alternative) : 'any';
}

function coerce(value: string, property: JsonSchemaProperty | undefined): unknown {
  switch (typeOf(property)) {
    case 'number':
    case 'integer': {
      const n = Number(value);
      return value.trim() === '' || Number.isNaN(n) ? value : n;
    }
    case 'boolean':
      if (/^(true|1|yes)$/i.test(value)) return true;
      if (/^(false|0|no)$/i.test(value)) return false;
      return value;
    case 'object':
      try {
        return JSON.parse(value);
      } catch {
        return value;
      }
    default:
      return value;
  }
}

/** Build raw params from `key=value` pairs and an optional JSON object (pairs win). */
export function paramsFromArgs(schema: ParamsSchema, pairs: readonly string[], json?: string): Record<string, unknown> {
  const { properties } = describeParams(schema);
  let params: Record<string, unknown> = {};
  if (json !== undefined) {
    try {
      params = JSON.parse(json) as Record<string, unknown>;
    } catch (err) {
      throw new ParamsError(`--params-json is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof params !== 'object' || params === null || Array.isArray(params)) {
      throw new ParamsError('--params-json must be a JSON object, e.g. \'{"root":"fixtures"}\'');
    }
  }
  const fromPairs: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ParamsError(`--param ${pair}: expected key=value`);
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    const property = properties[key];
    if (property && typeOf(property) === 'array') {
      const list = (fromPairs[key] as unknown[] | undefined) ?? [];
      list.push(coerce(value, property.items));
      fromPairs[key] = list;
    } else {
      fromPairs[key] = coerce(value, property);
    }
  }
  return { ...params, ...fromPairs };
}

/** The params section of `<pipeline> --help`. */
export function formatParamsHelp(schema: ParamsSchema): string {
  const { properties, required } = describeParams(schema);
  const names = Object.keys(properties);
  if (names.length === 0) return '  (no params)';
  const rows = names.map((name) => {
    const p = properties[name]!;
    let type = typeOf(p);
    if (p.enum) type = p.enum.map((v) => JSON.stringify(v)).join('|');
    if (type === 'array') type = `${typeOf(p.items)}[] (repeat --param ${name}=…)`;
    const notes: string[] = [];
    if (required.includes(name) && p.default === undefined) notes.push('required');
    if (p.default !== undefined) notes.push(`default ${JSON.stringify(p.default)}`);
    return { left: `--param ${name}=<${type}>`, right: [p.description, notes.length ? `(${notes.join(', ')})` : ''].filter(Boolean).join(' ') };
  });
  const width = Math.max(...rows.map((r) => r.left.length));
  return rows.map((r) => `  ${r.left.padEnd(width)}  ${r.right}`).join('\n');
}
