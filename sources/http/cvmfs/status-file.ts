/**
 * `.cvmfs_status.json` and the `date --utc` strings CVMFS writes into it and into
 * `repositories.json` (`"Sat Feb  5 00:00:03 UTC 2022"`, note the padded day).
 *
 * Every key is optional: a server that never ran garbage collection has no `last_gc`,
 * a Stratum 0 has no `last_snapshot`. A date that cannot be read keeps its text and has
 * no `unix` value, rather than failing the repository.
 *
 * @example
 * ```ts
 * parseCvmfsDate('Sat Feb  5 00:00:03 UTC 2022'); // 1644019203
 * parseStatusFile({ last_gc: 'Sat Feb  5 00:00:03 UTC 2022' }).lastGc?.unix; // 1644019203
 * ```
 */

export interface CvmfsDate {
  /** as the server wrote it */
  raw: string;
  /** seconds since the epoch, when the text could be read */
  unix?: number;
}

export interface CvmfsStatusFile {
  lastSnapshot?: CvmfsDate;
  lastGc?: CvmfsDate;
  lastCheck?: CvmfsDate;
  checkStatus?: string;
  /** every key of the file as published */
  fields: Record<string, unknown>;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DATE_UTC = /^(?:[A-Za-z]{3},?\s+)?([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})\s+(UTC|GMT|Z)\s+(\d{4})$/;

/** Seconds since the epoch of a `date --utc` string (or an ISO 8601 one), or undefined. */
export function parseCvmfsDate(text: string): number | undefined {
  const t = text.trim();
  const m = DATE_UTC.exec(t);
  if (m) {
    const month = MONTHS.indexOf(m[1]!.toLowerCase());
    if (month < 0) return undefined;
    const ms = Date.UTC(Number(m[7]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]));
    return Number.isNaN(ms) ? undefined : ms / 1000;
  }
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(t)) {
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
  }
  return undefined;
}

export function cvmfsDate(value: unknown): CvmfsDate | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const unix = parseCvmfsDate(value);
  return unix === undefined ? { raw: value } : { raw: value, unix };
}

/** Read the parsed JSON of a status file; anything that is not an object reads as no fields. */
export function parseStatusFile(json: unknown): CvmfsStatusFile {
  const fields = json && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : {};
  const status: CvmfsStatusFile = { fields };
  const lastSnapshot = cvmfsDate(fields.last_snapshot);
  if (lastSnapshot) status.lastSnapshot = lastSnapshot;
  const lastGc = cvmfsDate(fields.last_gc);
  if (lastGc) status.lastGc = lastGc;
  const lastCheck = cvmfsDate(fields.last_check);
  if (lastCheck) status.lastCheck = lastCheck;
  if (typeof fields.check_status === 'string') status.checkStatus = fields.check_status;
  return status;
}
