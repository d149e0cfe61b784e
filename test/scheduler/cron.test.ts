/**
 * Cron specs: 5- and 6-field strings, the old tool's named fields and its defaulting
 * rule, days of the week counted from Monday, `last`, ISO weeks, time zones, and the
 * errors (no fields at all is one, not "every second").
 */
import { describe, expect, it } from 'vitest';
import { compileCron, CronError } from '../../runtime/scheduler/cron.ts';
import { scheduleInputSchema } from '../../runtime/scheduler/schedule.ts';

const at = (s: string) => new Date(s);
function next(spec: Parameters<typeof compileCron>[0], after: string, tz = 'UTC', count = 3): string[] {
  const cron = compileCron(spec, tz);
  const out: string[] = [];
  let t = at(after);
  for (let i = 0; i < count; i++) {
    const n = cron.next(t);
    if (!n) break;
    out.push(n.toISOString());
    t = n;
  }
  return out;
}

describe('cron strings', () => {
  it('5 fields: minute precision, second 0', () => {
    expect(next('*/15 2 * * *', '2024-05-01T00:00:00Z')).toEqual(['2024-05-01T02:00:00.000Z', '2024-05-01T02:15:00.000Z', '2024-05-01T02:30:00.000Z']);
    expect(compileCron('*/15 2 * * *').expression).toBe('0 */15 2 * * *');
  });

  it('6 fields: seconds first', () => {
    expect(next('*/20 * * * * *', '2024-05-01T00:00:05Z')).toEqual(['2024-05-01T00:00:20.000Z', '2024-05-01T00:00:40.000Z', '2024-05-01T00:01:00.000Z']);
  });

  it('day of week 0 = Sunday, and a time zone', () => {
    // 2024-05-04 is a Saturday; next Sunday 03:00 in Zurich (CEST, UTC+2) is 01:00 UTC on the 5th
    expect(next('0 3 * * 0', '2024-05-04T00:00:00Z', 'Europe/Zurich', 1)).toEqual(['2024-05-05T01:00:00.000Z']);
  });

  it('refuses other field counts and nonsense, naming the problem', () => {
    expect(() => compileCron('* * *')).toThrow(/has 3 fields; give 5 .* or 6/);
    expect(() => compileCron('* * * * * * *')).toThrow(/has 7 fields/);
    expect(() => compileCron('61 * * * *')).toThrow(CronError);
    expect(() => compileCron('')).toThrow(/empty/);
    expect(() => compileCron('* * * * *', 'Mars/Olympus')).toThrow(/timezone "Mars\/Olympus" is not an IANA time zone/);
  });
});

describe('named fields (the old tool\'s form)', () => {
  it('fields after the least significant given one take their minimum, before it *', () => {
    expect(compileCron({ minute: '*/5', hour: '2-4' }).expression).toBe('0 */5 2-4 * * * *');
    expect(compileCron({ hour: 3 }).expression).toBe('0 0 3 * * * *');
    expect(compileCron({ day: 1 }).expression).toBe('0 0 0 1 * * *');
    expect(compileCron({ month: 6 }).expression).toBe('0 0 0 1 6 * *');
    expect(compileCron({ second: '*/10' }).expression).toBe('*/10 * * * * * *');
    expect(compileCron({ year: 2030 }).expression).toBe('0 0 0 1 1 * 2030');
    expect(next({ minute: '*/5', hour: '2-4' }, '2024-05-01T04:52:00Z')).toEqual(['2024-05-01T04:55:00.000Z', '2024-05-02T02:00:00.000Z', '2024-05-02T02:05:00.000Z']);
  });

  it('week and day_of_week stay * when less significant ones are given', () => {
    expect(compileCron({ day_of_week: 'mon-fri', hour: 6 }).expression).toBe('0 0 6 * * 1,2,3,4,5 *');
  });

  it('day_of_week counts from Monday = 0, names mon..sun, ranges across the weekend listed', () => {
    expect(compileCron({ day_of_week: 0 }).expression).toBe('0 0 0 * * 1 *');
    expect(compileCron({ day_of_week: '5-6' }).expression).toBe('0 0 0 * * 0,6 *');
    expect(compileCron({ day_of_week: 'sat,sun', hour: 12 }).expression).toBe('0 0 12 * * 0,6 *');
    // 2024-05-01 is a Wednesday: next Saturday noon and Sunday noon
    expect(next({ day_of_week: 'sat,sun', hour: 12 }, '2024-05-01T00:00:00Z', 'UTC', 2)).toEqual(['2024-05-04T12:00:00.000Z', '2024-05-05T12:00:00.000Z']);
  });

  it('day and day_of_week must both match (AND), and "last" is the last day of the month', () => {
    // the 13th that is a Friday (day_of_week 4 = Friday): 2024-09-13
    expect(next({ day: 13, day_of_week: 'fri' }, '2024-05-01T00:00:00Z', 'UTC', 1)).toEqual(['2024-09-13T00:00:00.000Z']);
    expect(next({ day: 'last', hour: 23 }, '2024-02-01T00:00:00Z', 'UTC', 2)).toEqual(['2024-02-29T23:00:00.000Z', '2024-03-31T23:00:00.000Z']);
  });

  it('ISO weeks', () => {
    // ISO week 1 of 2025 starts Monday 2024-12-30
    expect(next({ week: 1, day_of_week: 0, hour: 8 }, '2024-06-01T00:00:00Z', 'UTC', 2)).toEqual(['2024-12-30T08:00:00.000Z', '2025-12-29T08:00:00.000Z']);
  });

  it('no fields at all is an error, not "every second"', () => {
    expect(() => compileCron({})).toThrow(/needs at least one cron field .* every second/);
    const r = scheduleInputSchema.safeParse({ id: 's', pipeline: 'p', cron: {}, start: '2024-01-01T00:00:00Z' });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path).toEqual(['cron']);
  });

  it('bad fields are named', () => {
    expect(() => compileCron({ hour: 24 })).toThrow(/cron field hour: "24" is not in 0-23/);
    expect(() => compileCron({ minutes: 5 } as never)).toThrow(/unknown cron field "minutes"/);
    expect(() => compileCron({ day_of_week: 'funday' })).toThrow(/cron field day_of_week: "funday" is not a day/);
    expect(() => compileCron({ minute: '5-1' })).toThrow(CronError);
  });
});

describe('the schedule schema', () => {
  it('fills defaults and checks start < end', () => {
    const s = scheduleInputSchema.parse({ id: 'nightly', pipeline: 'inventory', cron: '0 3 * * *' });
    expect(s).toEqual({ id: 'nightly', pipeline: 'inventory', params: {}, cron: '0 3 * * *', timezone: 'UTC', jitter: 0, enabled: true, overlap: 'skip', missed: 'run-once' });
    const bad = scheduleInputSchema.safeParse({ id: 'x', pipeline: 'p', cron: '* * * * *', start: '2025-01-02T00:00:00Z', end: '2025-01-01T00:00:00Z' });
    expect(bad.error?.issues[0]).toMatchObject({ path: ['end'], message: 'end must be after start' });
    expect(scheduleInputSchema.safeParse({ id: '../x', pipeline: 'p', cron: '* * * * *' }).error?.issues[0]?.path).toEqual(['id']);
  });
});
