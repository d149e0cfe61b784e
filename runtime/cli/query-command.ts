/**
 * `sluice query "SELECT …"`: run SQL against the store sluice uses (embedded chDB
 * under the state directory, or the server of SLUICE_CLICKHOUSE_URL / --clickhouse-url)
 * and print the result: a table (default), `json` (an array of objects), `ndjson` (one
 * object a line) or `csv` (with a header). Unqualified table names mean the store's
 * database (`sluice`). Errors are one line on stderr, exit code 1.
 *
 * @example
 * ```sh
 * npm run query -- "SELECT pipeline, status, started_at FROM sluice_runs FINAL ORDER BY started_at DESC LIMIT 5"
 * npm run query -- "SELECT count() FROM files" --format json
 * ```
 */
import path from 'node:path';
import { describeError } from '../errors.ts';
import { storeConfigFromEnv } from '../clickhouse/open-store.ts';
import { openStoreOrDaemon } from '../daemon/query-client.ts';
import type { ClickHouseStore } from '../clickhouse/store.ts';
import { flagString, parseArgs, UsageError } from './args.ts';

const FORMATS = ['table', 'json', 'ndjson', 'csv'] as const;
type Format = (typeof FORMATS)[number];

const USAGE = `usage: npm run query -- "SQL" [--format table|json|ndjson|csv] [--clickhouse-url URL] [--state-dir DIR]

  SQL                      one statement; unqualified tables are in the store's database (sluice); "-" reads it from stdin
  --format F               table (default), json (array of objects), ndjson (one object a line), csv (with a header)
  --clickhouse-url URL     a ClickHouse server (default: $SLUICE_CLICKHOUSE_URL, else embedded chDB under the state directory)
  --state-dir DIR          where the embedded store lives (default .sluice, or $SLUICE_STATE_DIR)

Environment: SLUICE_CLICKHOUSE_URL, SLUICE_CLICKHOUSE_USER, SLUICE_CLICKHOUSE_PASSWORD, SLUICE_CLICKHOUSE_DATABASE.
`;

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { help: {}, format: { value: true }, 'clickhouse-url': { value: true }, 'state-dir': { value: true } });
  if (args.flags.has('help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.positional.length === 0) throw new UsageError('query needs the SQL to run, e.g. npm run query -- "SELECT 1"');
  if (args.positional.length > 1) throw new UsageError(`query takes one SQL argument (quote it); got ${args.positional.length}`);
  const format = (flagString(args, 'format') ?? 'table') as Format;
  if (!FORMATS.includes(format)) throw new UsageError(`--format must be ${FORMATS.join(', ')}, not "${format}"`);
  let sql = args.positional[0]!;
  if (sql === '-') sql = await readStdin();
  sql = sql.trim().replace(/;\s*$/, '');
  if (!sql) throw new UsageError('the SQL is empty');

  const stateDir = path.resolve(flagString(args, 'state-dir') ?? process.env.SLUICE_STATE_DIR ?? '.sluice');
  let store: ClickHouseStore | undefined;
  try {
    // while a daemon holds the embedded store, its read-only query endpoint answers instead
    store = await openStoreOrDaemon(storeConfigFromEnv(process.env, { url: flagString(args, 'clickhouse-url') }), { stateDir });
    process.stdout.write(await run(store, sql, format));
    return 0;
  } catch (err) {
    process.stderr.write(`sluice: ${describeError(err).replace(/\s*\n\s*/g, ' ')}\n`);
    return 1;
  } finally {
    await store?.close().catch(() => undefined);
  }
}

async function run(store: ClickHouseStore, sql: string, format: Format): Promise<string> {
  switch (format) {
    case 'ndjson':
      return store.queryText(sql, 'JSONEachRow');
    case 'csv':
      return store.queryText(sql, 'CSVWithNames');
    case 'json':
    case 'table': {
      const text = await store.queryText(sql, 'JSONCompact');
      if (!text.trim()) return ''; // a statement without a result (CREATE, INSERT …)
      const result = JSON.parse(text) as { meta: { name: string; type: string }[]; data: unknown[][] };
      if (format === 'table') return renderTable(result.meta, result.data);
      const rows = result.data.map((values) => Object.fromEntries(result.meta.map((m, i) => [m.name, values[i]])));
      return JSON.stringify(rows, null, 2) + '\n';
    }
  }
}

/** A box table like ClickHouse's PrettyCompact (numbers and their names right-aligned, NULL for null), the same on every server. */
export function renderTable(meta: readonly { name: string; type: string }[], data: readonly unknown[][]): string {
  const cells = data.map((row) => row.map(cellText));
  const widths = meta.map((m, i) => Math.max(width(m.name), ...cells.map((row) => width(row[i]!))));
  const right = meta.map((m) => /^(Nullable\()?(LowCardinality\()?(U?Int|Float|Decimal)/.test(m.type));
  const pad = (text: string, i: number) => {
    const fill = ' '.repeat(widths[i]! - width(text));
    return right[i] ? fill + text : text + fill;
  };
  const lines = [
    '┌─' + meta.map((m, i) => (right[i] ? '─'.repeat(widths[i]! - width(m.name)) + m.name : m.name + '─'.repeat(widths[i]! - width(m.name)))).join('─┬─') + '─┐',
    ...cells.map((row) => '│ ' + row.map(pad).join(' │ ') + ' │'),
    '└─' + widths.map((w) => '─'.repeat(w)).join('─┴─') + '─┘',
  ];
  return lines.join('\n') + '\n';
}

function cellText(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\t/g, '\\t');
}

function width(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
