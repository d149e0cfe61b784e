/**
 * When a schedule is due: cron expressions, read by croner (a well-kept cron library;
 * sluice never computes calendar times itself), in two forms.
 *
 * - **A cron string**: 5 fields (`minute hour day month day-of-week`) or 6 (`second`
 *   first), croner's syntax: `*`, `a-b`, `*\/n`, `a-b/n`, `x,y`, names (`jan`, `mon`),
 *   `L` (last day of the month), `5#L` (last Friday), nicknames (`@daily`). Day of
 *   month and day of week combine with OR, as in Vixie cron. Day of week: 0 = Sunday.
 * - **Named fields**, the old mirror-sync tool's form: `{year, month, day, week,
 *   day_of_week, hour, minute, second}`, each a number or an expression (`*`, `*\/n`,
 *   `a-b`, `a-b/n`, `x,y`; `last` for the day; `mon-fri` for the day of week, where
 *   0 = Monday as in the old tool). Its defaulting rule: fields more significant than
 *   the least significant one given are `*`; less significant ones take their minimum
 *   (month 1, day 1, hour 0, minute 0, second 0), except `week` and `day_of_week`,
 *   which stay `*`. So `{minute: '*\/5', hour: '2-4'}` is every five minutes from 02:00
 *   to 04:55 at second 0, and `{hour: 3}` is 03:00:00 every day. All fields must match
 *   (AND). A schedule with no fields is an error — the old tool fired it every second.
 *
 * Times are computed in the schedule's IANA time zone (default UTC).
 *
 * @example
 * ```ts
 * const cron = compileCron({ minute: '*\/5', hour: '2-4' }, 'Europe/Zurich');
 * cron.expression;                       // '0 *\/5 2-4 * * * *'
 * cron.next(new Date('2024-05-01T00:00:00Z')); // 2024-05-01T00:00:00Z (02:00 in Zurich)
 * compileCron('30 2 * * 1-5').next(new Date()); // 02:30 UTC on the next weekday
 * ```
 */
import { Cron } from 'croner';

/** The named-field form. */
export interface CronFields {
  year?: string | number;
  month?: string | number;
  day?: string | number;
  week?: string | number;
  day_of_week?: string | number;
  hour?: string | number;
  minute?: string | number;
  second?: string | number;
}

export type CronSpec = string | CronFields;

/** A cron spec that cannot be used: the message names the field and what is wrong. */
export class CronError extends Error {
  override name = 'CronError';
}

export const FIELD_ORDER = ['year', 'month', 'day', 'week', 'day_of_week', 'hour', 'minute', 'second'] as const;
type FieldName = (typeof FIELD_ORDER)[number];

const MINIMUM: Readonly<Record<FieldName, string>> = { year: '*', month: '1', day: '1', week: '*', day_of_week: '*', hour: '0', minute: '0', second: '0' };
const RANGES: Readonly<Record<FieldName, [number, number]>> = {
  year: [1970, 2199], month: [1, 12], day: [1, 31], week: [1, 53], day_of_week: [0, 6], hour: [0, 23], minute: [0, 59], second: [0, 59],
};
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
/** the old tool's day names, 0 = Monday */
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

export interface CompiledCron {
  /** the croner pattern actually used (6 fields, or 7 with the year) */
  readonly expression: string;
  readonly timezone: string;
  /** the first due time strictly after `after`, or undefined when there is none */
  next(after: Date): Date | undefined;
}

/** Check that `tz` is an IANA time zone this runtime knows. */
export function checkTimezone(tz: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new CronError(`timezone "${tz}" is not an IANA time zone (e.g. UTC, Europe/Zurich, America/Chicago)`);
  }
}

/** Compile a cron spec; a CronError naming the problem when it cannot be used. */
export function compileCron(spec: CronSpec, timezone = 'UTC'): CompiledCron {
  checkTimezone(timezone);
  if (typeof spec === 'string') return compileString(spec, timezone);
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new CronError('cron must be a cron string or an object of named fields');
  return compileFields(spec, timezone);
}

function compileString(text: string, timezone: string): CompiledCron {
  const trimmed = text.trim().replace(/\s+/g, ' ');
  if (!trimmed) throw new CronError('the cron expression is empty');
  const parts = trimmed.startsWith('@') ? 0 : trimmed.split(' ').length;
  if (parts !== 0 && parts !== 5 && parts !== 6) {
    throw new CronError(`cron "${text}" has ${parts} fields; give 5 (minute hour day month day-of-week) or 6 (second first)`);
  }
  let cron: Cron;
  try {
    cron = new Cron(trimmed, { timezone, mode: '5-or-6-parts' });
  } catch (err) {
    throw new CronError(`cron "${text}": ${cleanCronerMessage(err)}`);
  }
  return wrap(cron, parts === 5 ? `0 ${trimmed}` : trimmed, timezone);
}

function compileFields(fields: CronFields, timezone: string): CompiledCron {
  const unknown = Object.keys(fields).filter((k) => !(FIELD_ORDER as readonly string[]).includes(k));
  if (unknown.length) throw new CronError(`unknown cron field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')} (fields: ${FIELD_ORDER.join(', ')})`);
  const given = FIELD_ORDER.filter((f) => fields[f] !== undefined && fields[f] !== null && String(fields[f]).trim() !== '');
  if (given.length === 0) {
    throw new CronError(`a schedule needs at least one cron field (${FIELD_ORDER.join(', ')}); with none it would fire every second`);
  }
  // the old tool's rule: fields before the least significant given one are '*', after it their minimum
  const last = FIELD_ORDER.indexOf(given[given.length - 1]!);
  const value = (f: FieldName): string => {
    const v = fields[f];
    if (v !== undefined && v !== null && String(v).trim() !== '') return String(v).trim().toLowerCase();
    return FIELD_ORDER.indexOf(f) < last ? '*' : MINIMUM[f];
  };
  const out: Record<FieldName, string> = {} as Record<FieldName, string>;
  for (const f of FIELD_ORDER) out[f] = value(f);
  for (const f of ['year', 'month', 'hour', 'minute', 'second', 'day'] as const) checkExpression(f, out[f]);
  const weeks = out.week === '*' ? undefined : expand('week', out.week);
  const dow = out.day_of_week === '*' ? '*' : toCronerWeekdays(expand('day_of_week', out.day_of_week));
  const day = out.day === 'last' ? 'L' : out.day;
  const month = out.month.replace(/[a-z]{3}/g, (m) => String(MONTHS.indexOf(m) + 1));
  const expression = `${out.second} ${out.minute} ${out.hour} ${day} ${month} ${dow} ${out.year}`;
  let cron: Cron;
  try {
    cron = new Cron(expression, { timezone, domAndDow: true, mode: '7-part' });
  } catch (err) {
    throw new CronError(`cron ${JSON.stringify(fields)}: ${cleanCronerMessage(err)}`);
  }
  const compiled = wrap(cron, expression, timezone);
  if (!weeks) return compiled;
  return {
    expression: `${expression} (ISO weeks ${[...weeks].join(',')})`,
    timezone,
    next(after) {
      let t: Date | undefined = after;
      for (let i = 0; i < 100_000 && t; i++) {
        t = compiled.next(t);
        if (t && weeks.has(isoWeek(t, timezone))) return t;
      }
      return undefined;
    },
  };
}

function wrap(cron: Cron, expression: string, timezone: string): CompiledCron {
  return {
    expression,
    timezone,
    next(after) {
      return cron.nextRun(after) ?? undefined;
    },
  };
}

const TOKEN = /^(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:\/(\d+))?$/;

/** A field's expression: `*`, `*\/n`, `a-b`, `a-b/n`, `x,y`, numbers in range (names for months, `last` for days). */
function checkExpression(field: FieldName, expr: string): void {
  for (const part of expr.split(',')) {
    if (field === 'day' && part === 'last') continue;
    const m = TOKEN.exec(part);
    if (!m) throw new CronError(`cron field ${field}: "${expr}" is not an expression (*, */n, a-b, a-b/n, x,y)`);
    for (const v of [m[1], m[2]]) {
      if (v === undefined || v === '*') continue;
      const n = field === 'month' && MONTHS.includes(v) ? MONTHS.indexOf(v) + 1 : Number(v);
      const [lo, hi] = RANGES[field];
      if (!Number.isInteger(n) || n < lo || n > hi) throw new CronError(`cron field ${field}: "${v}" is not in ${lo}-${hi}`);
    }
    if (m[3] !== undefined && Number(m[3]) < 1) throw new CronError(`cron field ${field}: a step must be at least 1`);
  }
}

/** The values of an expression over a field's range (for `week` and `day_of_week`, which croner reads differently). */
function expand(field: 'week' | 'day_of_week', expr: string): Set<number> {
  const [lo, hi] = RANGES[field];
  const out = new Set<number>();
  const num = (v: string): number => {
    const n = field === 'day_of_week' && DAYS.includes(v) ? DAYS.indexOf(v) : Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) {
      throw new CronError(`cron field ${field}: "${v}" is not ${field === 'day_of_week' ? 'a day (0-6, 0 = Monday, or mon-sun)' : `in ${lo}-${hi}`}`);
    }
    return n;
  };
  for (const part of expr.split(',')) {
    const m = TOKEN.exec(part);
    if (!m) throw new CronError(`cron field ${field}: "${expr}" is not an expression (*, */n, a-b, a-b/n, x,y)`);
    const step = m[3] === undefined ? 1 : Number(m[3]);
    if (step < 1) throw new CronError(`cron field ${field}: a step must be at least 1`);
    const from = m[1] === '*' ? lo : num(m[1]!);
    const to = m[1] === '*' ? hi : m[2] !== undefined ? num(m[2]) : m[3] !== undefined ? hi : from;
    if (to < from) throw new CronError(`cron field ${field}: the range "${part}" runs backwards`);
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

/** Old-tool weekdays (0 = Monday) as croner's (0 = Sunday), listed. */
function toCronerWeekdays(days: Set<number>): string {
  if (days.size === 7) return '*';
  return [...days].map((d) => (d + 1) % 7).sort((a, b) => a - b).join(',');
}

/** ISO 8601 week number of the date in the time zone. */
export function isoWeek(date: Date, timezone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone: timezone, year: 'numeric', month: 'numeric', day: 'numeric' }).formatToParts(date);
  const get = (t: string) => Number(parts.find((p) => p.type === t)!.value);
  const d = new Date(Date.UTC(get('year'), get('month') - 1, get('day')));
  const day = (d.getUTCDay() + 6) % 7; // Monday 0
  d.setUTCDate(d.getUTCDate() - day + 3); // the Thursday of this week decides the year
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  return Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7);
}

function cleanCronerMessage(err: unknown): string {
  return ((err as Error)?.message ?? String(err)).replace(/^CronPattern: /, '');
}
