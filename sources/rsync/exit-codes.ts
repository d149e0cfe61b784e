/**
 * rsync's exit codes (rsync(1), "EXIT VALUES"), what each means, and whether another
 * attempt may succeed. 0 is success; 24 ("some source files vanished") is what a
 * mirror sync of a live upstream meets every day and counts as a success with a
 * warning, as mirror operators' own scripts treat it.
 *
 * @example
 * ```ts
 * rsyncExit(5).meaning; // 'error starting client-server protocol'
 * rsyncExit(10).kind;   // 'transient'
 * ```
 */
import type { ErrorKind } from '../../runtime/errors.ts';

export interface RsyncExit {
  code: number;
  meaning: string;
  /** the sync did what was asked (0, or 24: files vanished on the source meanwhile) */
  ok: boolean;
  /** for failures: may another attempt succeed (transient) or not (permanent) */
  kind?: Exclude<ErrorKind, 'fatal'>;
}

const MEANINGS: Readonly<Record<number, [string, Exclude<ErrorKind, 'fatal'> | 'ok']>> = {
  0: ['success', 'ok'],
  1: ['syntax or usage error', 'permanent'],
  2: ['protocol incompatibility', 'permanent'],
  3: ['errors selecting input/output files, dirs', 'permanent'],
  4: ['requested action not supported', 'permanent'],
  5: ['error starting client-server protocol', 'permanent'],
  6: ['daemon unable to append to log-file', 'permanent'],
  10: ['error in socket I/O', 'transient'],
  11: ['error in file I/O', 'permanent'],
  12: ['error in rsync protocol data stream', 'transient'],
  13: ['errors with program diagnostics', 'permanent'],
  14: ['error in IPC code', 'transient'],
  20: ['received SIGUSR1 or SIGINT', 'transient'],
  21: ['some error returned by waitpid()', 'transient'],
  22: ['error allocating core memory buffers', 'transient'],
  23: ['partial transfer due to error', 'permanent'],
  24: ['partial transfer due to vanished source files', 'ok'],
  25: ['the --max-delete limit stopped deletions', 'permanent'],
  30: ['timeout in data send/receive', 'transient'],
  35: ['timeout waiting for daemon connection', 'transient'],
};

/** What an exit code means; `signal` when rsync was killed instead. */
export function rsyncExit(code: number | null, signal?: NodeJS.Signals | null): RsyncExit {
  if (code === null) {
    return { code: -1, meaning: `killed by ${signal ?? 'a signal'}`, ok: false, kind: 'transient' };
  }
  const known = MEANINGS[code];
  if (!known) return { code, meaning: `unknown exit code ${code}`, ok: false, kind: 'permanent' };
  const [meaning, kind] = known;
  return kind === 'ok' ? { code, meaning, ok: true } : { code, meaning, ok: false, kind };
}
