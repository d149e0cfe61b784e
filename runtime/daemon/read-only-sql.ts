/**
 * The statements the daemon's query endpoint runs: one read-only statement (SELECT,
 * WITH … SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN), without `INTO OUTFILE`, run with
 * `SETTINGS readonly = 1` appended, so ClickHouse itself refuses writes and the table
 * functions that reach outside the store (`file`, `url`, …).
 *
 * The checks look at the statement with its string literals, quoted identifiers and
 * comments blanked out, so `SELECT 'INTO OUTFILE'` is fine and `SELECT 1 /*` (which
 * would swallow the appended setting) is refused.
 *
 * @example
 * ```ts
 * readOnlyStatement('SELECT count() FROM sluice_runs FINAL');
 * // 'SELECT count() FROM sluice_runs FINAL\nSETTINGS readonly = 1'
 * readOnlyStatement('DROP TABLE x'); // throws ReadOnlyViolation
 * ```
 */
export class ReadOnlyViolation extends Error {
  override name = 'ReadOnlyViolation';
}

const READ_KEYWORDS = new Set(['SELECT', 'WITH', 'SHOW', 'DESCRIBE', 'DESC', 'EXISTS', 'EXPLAIN']);

/** The statement, checked and with `SETTINGS readonly = 1` appended; throws ReadOnlyViolation. */
export function readOnlyStatement(sql: string): string {
  const code = blankOut(sql).trim();
  const trimmed = sql.trim().replace(/;\s*$/, '');
  const body = code.replace(/;\s*$/, '');
  if (!body) throw new ReadOnlyViolation('the statement is empty');
  if (body.includes(';')) throw new ReadOnlyViolation('one statement at a time');
  const first = /^[(\s]*([A-Za-z]+)/.exec(body)?.[1]?.toUpperCase();
  if (!first || !READ_KEYWORDS.has(first)) {
    throw new ReadOnlyViolation(`only read-only statements (${[...READ_KEYWORDS].join(', ')}) go through the daemon, not ${first ?? 'this'}`);
  }
  if (/\bINTO\s+OUTFILE\b/i.test(body)) throw new ReadOnlyViolation('INTO OUTFILE is not allowed through the daemon');
  if (/\bSETTINGS\b/i.test(body)) throw new ReadOnlyViolation('a SETTINGS clause is not allowed through the daemon');
  return `${trimmed}\nSETTINGS readonly = 1`;
}

/** `sql` with literals, quoted names and comments replaced by spaces; throws on an unterminated one. */
function blankOut(sql: string): string {
  let out = '';
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      for (; j < sql.length; j++) {
        if (sql[j] === '\\') { j++; continue; }
        if (sql[j] === c) {
          if (sql[j + 1] === c) { j++; continue; } // doubled quote
          break;
        }
      }
      if (j >= sql.length) throw new ReadOnlyViolation(`unterminated ${c === "'" ? 'string' : 'quoted name'} in the statement`);
      out += ' '.repeat(j - i + 1);
      i = j;
      continue;
    }
    if ((c === '-' && next === '-') || c === '#') {
      const end = sql.indexOf('\n', i);
      const stop = end === -1 ? sql.length : end;
      out += ' '.repeat(stop - i);
      i = stop - 1;
      continue;
    }
    if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      if (end === -1) throw new ReadOnlyViolation('unterminated /* comment in the statement');
      out += ' '.repeat(end + 2 - i);
      i = end + 1;
      continue;
    }
    out += c;
  }
  return out;
}
