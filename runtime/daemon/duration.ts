/**
 * Durations as people write them in config files, flags and environment variables:
 * `250ms`, `30s`, `5m`, `1h`, or a bare number of milliseconds.
 *
 * @example
 * ```ts
 * parseDuration('30s'); // 30000
 * parseDuration(1500);  // 1500
 * ```
 */
export function parseDuration(value: string | number, what = 'duration'): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) return value;
    throw new Error(`${what} must be a number of milliseconds ≥ 0, not ${value}`);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (!m) throw new Error(`${what} must be a duration like 500ms, 30s, 5m or 1h (a bare number is milliseconds), not "${value}"`);
  const unit = (m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h';
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit];
}

/** `1500` → `1.5s`, `90000` → `90s`: for messages. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return `${+(ms / 1000).toFixed(1)}s`;
}
