/**
 * The daemon's configuration: a JSON file (`--config`, `$SLUICE_DAEMON_CONFIG`, or
 * `sluice-daemon.json` in the working directory when it exists), then environment
 * variables, then command-line flags, each overriding the one before. The zod schema
 * below is the one source of truth; docs/daemon.md describes every key.
 *
 * @example
 * ```json
 * {
 *   "amqp": { "url": "amqps://sluice:secret@mq.example.org:5671/loaders", "tls": { "ca": "/etc/ssl/mq-ca.pem" } },
 *   "exchange": "sluice.triggers",
 *   "queue": "sluice.triggers",
 *   "concurrency": 4,
 *   "pipelines": ["inventory", "altrepo-repo"],
 *   "retry": { "maxAttempts": 3, "delay": "30s" },
 *   "http": { "port": 9465 }
 * }
 * ```
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_AMQP_URL } from '../amqp/connection.ts';
import { FatalError } from '../errors.ts';
import { parseDuration } from './duration.ts';

const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const permissionSpec = z.object({
  net: z.array(z.string()).optional(),
  read: z.array(z.string()).optional(),
  write: z.array(z.string()).optional(),
  run: z.array(z.string()).optional(),
}).strict();

/** A check of one field of a routed message's body. */
export const fieldCheckSchema = z.object({
  type: z.enum(['string', 'number', 'integer', 'boolean', 'date']).default('string')
    .describe('the JSON type; `date` is a "YYYY-MM-DD" string that must be a real calendar date'),
  required: z.boolean().default(true),
  oneOf: z.array(z.union([z.string(), z.number(), z.boolean()])).optional().describe('the allowed values'),
  lookup: z.string().optional().describe('the value must be a key of this table (see `tables`)'),
  pattern: z.string().optional().describe('a regular expression a string must match'),
  today: z.boolean().default(false).describe('a date must be today (in the daemon\'s time zone)'),
}).strict();

export const routeSchema = z.object({
  name: z.string().optional().describe('for logs, metrics and notifications; default "<exchange>/<routingKey>"'),
  exchange: z.string().min(1),
  exchangeType: z.enum(['topic', 'direct', 'fanout', 'headers']).default('topic'),
  declareExchange: z.boolean().default(true).describe('false: the exchange must exist already (it belongs to another system)'),
  routingKey: z.string().describe('binding pattern (`*` one word, `#` any) on a topic exchange'),
  pipeline: z.string().min(1),
  fields: z.record(z.string(), fieldCheckSchema).default({}).describe('checks of the message body, by field'),
  strict: z.boolean().default(true).describe('reject bodies with fields not listed in `fields`'),
  tables: z.record(z.string(), z.record(z.string(), z.unknown())).default({}).describe('lookup tables, e.g. branch → directory'),
  params: z.record(z.string(), z.unknown()).default({}).describe('pipeline params: literal values, or templates like "{branches[branch]}/date/{date|date:YYYY/MM/DD}"'),
  maxRedeliveries: z.number().int().min(0).optional().describe('reject when redelivered more often (x-delivery-count or x-sluice-redeliveries; default: the daemon\'s)'),
  notifyType: z.string().optional().describe('`type` of failure notifications (default the route name)'),
  done: z.object({ exchange: z.string(), routingKey: z.string(), exchangeType: z.enum(['topic', 'direct', 'fanout']).default('topic') })
    .strict().optional().describe('republish the message here after a successful run (the old "uploaded" exchange)'),
}).strict();

export type RouteConfig = z.infer<typeof routeSchema>;
export type FieldCheck = z.infer<typeof fieldCheckSchema>;

export const daemonConfigSchema = z.object({
  amqp: z.object({
    url: z.string().default(DEFAULT_AMQP_URL),
    heartbeat: duration.default(15_000).describe('AMQP heartbeat interval (rounded to seconds)'),
    tls: z.object({
      ca: z.string().optional(),
      cert: z.string().optional(),
      key: z.string().optional(),
      rejectUnauthorized: z.boolean().optional(),
      servername: z.string().optional(),
    }).strict().optional(),
  }).strict().default({ url: DEFAULT_AMQP_URL, heartbeat: 15_000 }),
  exchange: z.string().min(1).default('sluice.triggers').describe('topic exchange that `fire` publishes to'),
  queue: z.string().min(1).default('sluice.triggers').describe('the queue every daemon consumes (competing consumers)'),
  queueType: z.enum(['classic', 'quorum']).default('classic')
    .describe('classic (lowest latency; the daemon counts redeliveries itself) or quorum (replicated; the broker counts them)'),
  routingKeys: z.array(z.string()).default(['run.#']).describe('bindings of the queue to the trigger exchange'),
  retryQueue: z.string().optional().describe('default "<queue>.retry"'),
  deadLetterExchange: z.string().optional().describe('default "<queue>.dlx"'),
  deadLetterQueue: z.string().optional().describe('default "<queue>.dead"'),
  concurrency: z.number().int().min(1).max(1000).default(4).describe('runs at once in this daemon (= prefetch)'),
  pipelines: z.union([z.literal('*'), z.array(z.string())]).default('*').describe('pipelines that messages may trigger'),
  allow: z.record(z.string(), permissionSpec).default({}).describe('extra permissions per pipeline, granted by the operator (never by a message)'),
  retry: z.object({
    maxAttempts: z.number().int().min(1).default(3).describe('runs per message, the first included'),
    delay: duration.default(5_000).describe('wait before the second attempt'),
    factor: z.number().min(1).default(2),
    maxDelay: duration.default(600_000),
  }).strict().default({ maxAttempts: 3, delay: 5_000, factor: 2, maxDelay: 600_000 }),
  maxRedeliveries: z.number().int().min(0).default(5).describe('a message redelivered more often than this (a run of it keeps dying) is dead-lettered'),
  grace: duration.default(30_000).describe('on SIGTERM, how long running runs may take to finish before they are handed back'),
  http: z.object({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(9465).describe('/metrics, /healthz and the query endpoint; 0 = any free port'),
  }).strict().default({ host: '127.0.0.1', port: 9465 }),
  notify: z.object({
    exchange: z.string().min(1),
    exchangeType: z.enum(['topic', 'direct', 'fanout']).default('topic'),
    declareExchange: z.boolean().default(true),
    type: z.string().default('sluice').describe('default `type` of notifications (routes set their own)'),
    retries: z.boolean().default(false).describe('also notify (severity warning) when a failed run is scheduled for a retry'),
  }).strict().optional().describe('failures are also published here, routing key "<type>.<severity>"'),
  routes: z.array(routeSchema).default([]),
}).strict();

export type DaemonConfig = z.infer<typeof daemonConfigSchema>;

/** Queue and exchange names with the derived ones filled in. */
export interface TopologyNames {
  exchange: string;
  queue: string;
  retryQueue: string;
  deadLetterExchange: string;
  deadLetterQueue: string;
}

export function topologyNames(config: DaemonConfig): TopologyNames {
  return {
    exchange: config.exchange,
    queue: config.queue,
    retryQueue: config.retryQueue ?? `${config.queue}.retry`,
    deadLetterExchange: config.deadLetterExchange ?? `${config.queue}.dlx`,
    deadLetterQueue: config.deadLetterQueue ?? `${config.queue}.dead`,
  };
}

/** The environment variables the daemon (and `fire`) read, and the config key each sets. */
export const DAEMON_ENV: ReadonlyArray<{ name: string; key: string; what: string }> = [
  { name: 'SLUICE_DAEMON_CONFIG', key: '(file)', what: 'path of the JSON config file' },
  { name: 'SLUICE_AMQP_URL', key: 'amqp.url', what: 'broker URL, amqp:// or amqps://' },
  { name: 'SLUICE_AMQP_HEARTBEAT', key: 'amqp.heartbeat', what: 'heartbeat interval, e.g. 15s' },
  { name: 'SLUICE_AMQP_CA', key: 'amqp.tls.ca', what: 'CA file for amqps://' },
  { name: 'SLUICE_AMQP_CERT', key: 'amqp.tls.cert', what: 'client certificate file for amqps://' },
  { name: 'SLUICE_AMQP_KEY', key: 'amqp.tls.key', what: 'client key file for amqps://' },
  { name: 'SLUICE_DAEMON_EXCHANGE', key: 'exchange', what: 'trigger exchange' },
  { name: 'SLUICE_DAEMON_QUEUE', key: 'queue', what: 'trigger queue' },
  { name: 'SLUICE_DAEMON_ROUTING_KEYS', key: 'routingKeys', what: 'comma-separated binding keys' },
  { name: 'SLUICE_DAEMON_CONCURRENCY', key: 'concurrency', what: 'runs at once (= prefetch)' },
  { name: 'SLUICE_DAEMON_PIPELINES', key: 'pipelines', what: 'comma-separated pipelines that may be triggered, or *' },
  { name: 'SLUICE_DAEMON_MAX_ATTEMPTS', key: 'retry.maxAttempts', what: 'runs per message' },
  { name: 'SLUICE_DAEMON_MAX_REDELIVERIES', key: 'maxRedeliveries', what: 'redeliveries before a message is dead-lettered' },
  { name: 'SLUICE_DAEMON_RETRY_DELAY', key: 'retry.delay', what: 'delay before the first retry' },
  { name: 'SLUICE_DAEMON_GRACE', key: 'grace', what: 'SIGTERM grace period' },
  { name: 'SLUICE_DAEMON_HTTP_HOST', key: 'http.host', what: 'address of /metrics, /healthz, /query' },
  { name: 'SLUICE_DAEMON_HTTP_PORT', key: 'http.port', what: 'port of /metrics, /healthz, /query (0 = any)' },
];

type Json = Record<string, unknown>;

function setPath(target: Json, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    if (typeof node[part] !== 'object' || node[part] === null) node[part] = {};
    node = node[part] as Json;
  }
  node[parts[parts.length - 1]!] = value;
}

function numberFrom(name: string, text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) throw new FatalError(`${name} must be a number, not "${text}"`);
  return n;
}

/** Values from the environment, as a partial raw config. */
export function configFromEnv(env: NodeJS.ProcessEnv): Json {
  const raw: Json = {};
  const str = (name: string, key: string) => {
    const v = env[name]?.trim();
    if (v) setPath(raw, key, v);
  };
  str('SLUICE_AMQP_URL', 'amqp.url');
  str('SLUICE_AMQP_HEARTBEAT', 'amqp.heartbeat');
  str('SLUICE_AMQP_CA', 'amqp.tls.ca');
  str('SLUICE_AMQP_CERT', 'amqp.tls.cert');
  str('SLUICE_AMQP_KEY', 'amqp.tls.key');
  str('SLUICE_DAEMON_EXCHANGE', 'exchange');
  str('SLUICE_DAEMON_QUEUE', 'queue');
  str('SLUICE_DAEMON_RETRY_DELAY', 'retry.delay');
  str('SLUICE_DAEMON_GRACE', 'grace');
  str('SLUICE_DAEMON_HTTP_HOST', 'http.host');
  const list = (name: string) => env[name]?.split(',').map((s) => s.trim()).filter(Boolean);
  const keys = list('SLUICE_DAEMON_ROUTING_KEYS');
  if (keys?.length) raw.routingKeys = keys;
  const pipelines = list('SLUICE_DAEMON_PIPELINES');
  if (pipelines?.length) raw.pipelines = pipelines.length === 1 && pipelines[0] === '*' ? '*' : pipelines;
  for (const [name, key] of [['SLUICE_DAEMON_CONCURRENCY', 'concurrency'], ['SLUICE_DAEMON_MAX_ATTEMPTS', 'retry.maxAttempts'], ['SLUICE_DAEMON_MAX_REDELIVERIES', 'maxRedeliveries'], ['SLUICE_DAEMON_HTTP_PORT', 'http.port']] as const) {
    const v = env[name]?.trim();
    if (v) setPath(raw, key, numberFrom(name, v));
  }
  return raw;
}

/** Deep merge of plain objects; arrays and scalars of `over` replace. */
export function mergeConfig(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? mergeConfig(b, v) : v;
  }
  return out;
}

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Which file the config comes from: the flag, `$SLUICE_DAEMON_CONFIG`, or `./sluice-daemon.json` if present. */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = flag ?? env.SLUICE_DAEMON_CONFIG?.trim();
  if (given) return path.resolve(given);
  const local = path.resolve('sluice-daemon.json');
  return existsSync(local) ? local : undefined;
}

/** Read and check the config file, the environment and flag overrides; one-line FatalError naming the key on error. */
export function loadDaemonConfig(options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Json } = {}): { config: DaemonConfig; file?: string } {
  const env = options.env ?? process.env;
  let fromFile: Json = {};
  const file = options.file;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new FatalError(`cannot read the daemon config ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      fromFile = JSON.parse(text) as Json;
    } catch (err) {
      throw new FatalError(`the daemon config ${file} is not valid JSON: ${(err as Error).message}`);
    }
    if (!isPlainObject(fromFile)) throw new FatalError(`the daemon config ${file} must be a JSON object`);
  }
  const raw = mergeConfig(mergeConfig(fromFile, configFromEnv(env)), options.overrides ?? {});
  return { config: parseDaemonConfig(raw, file), file };
}

export function parseDaemonConfig(raw: unknown, source = 'the daemon config'): DaemonConfig {
  const result = daemonConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.length ? issue.path.join('.') : '(top level)';
    const message = issue.code === 'unrecognized_keys' ? `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}` : issue.message;
    throw new FatalError(`${source}: ${where}: ${message}`, { hint: 'see docs/daemon.md for the keys and their types' });
  }
  const config = result.data;
  const names = new Set<string>();
  for (const route of config.routes) {
    const name = route.name ?? `${route.exchange}/${route.routingKey}`;
    if (names.has(name)) throw new FatalError(`${source}: routes: two routes are named "${name}"`);
    names.add(name);
    for (const [field, check] of Object.entries(route.fields)) {
      if (check.lookup && !(check.lookup in route.tables)) {
        throw new FatalError(`${source}: route ${name}: field "${field}" looks up table "${check.lookup}", which is not in its tables (${Object.keys(route.tables).join(', ') || 'none'})`);
      }
      if (check.pattern) {
        try {
          new RegExp(check.pattern);
        } catch (err) {
          throw new FatalError(`${source}: route ${name}: field "${field}": pattern is not a regular expression: ${(err as Error).message}`);
        }
      }
    }
  }
  return config;
}
