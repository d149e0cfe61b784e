/**
 * The human side of a run: a one-line progress report (redrawn on a TTY) and the
 * summary every run ends with.
 */
import type { RunCounts, RunRecord } from './run-record.ts';

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function formatRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(1)}M/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)}k/s`;
  return `${perSecond.toFixed(0)}/s`;
}

function errorTotal(counts: RunCounts): number {
  return counts.errors.permanent + counts.errors.fatal + counts.errors.transient;
}

export function formatProgress(counts: Readonly<RunCounts>, inFlight: number, elapsedMs: number): string {
  const seconds = Math.max(elapsedMs / 1000, 0.001);
  return [
    `items ${counts.itemsDone}/${counts.items}`,
    `records ${counts.records}`,
    formatBytes(counts.bytes),
    `${formatRate(counts.records / seconds)} records`,
    `${formatBytes(counts.bytes / seconds)}/s`,
    `in flight ${inFlight}`,
    `errors ${errorTotal(counts)}`,
  ].join(' · ');
}

export function formatSummary(record: RunRecord): string {
  const c = record.counts;
  const seconds = (record.durationMs ?? 0) / 1000;
  const lines = [
    `${record.pipeline} ${record.status} in ${seconds.toFixed(2)} s (run ${record.id})`,
    `  items ${c.items} (${c.itemsDone} done, ${c.skipped} skipped, ${c.deadLettered} dead-lettered) · ${formatBytes(c.bytes)} · records ${c.records}`,
  ];
  const sinks = Object.entries(c.recordsBySink);
  lines.push(`  sinks: ${sinks.length ? sinks.map(([name, n]) => `${name} ${n}`).join(' · ') : '(no records written)'}`);
  const kinds = Object.entries(c.errors).filter(([, n]) => n > 0);
  lines.push(`  errors: ${kinds.length ? kinds.map(([k, n]) => `${n} ${k}`).join(' · ') : 'none'}${c.retries ? ` (${c.retries} retries)` : ''}`);
  for (const e of record.errors.slice(0, 5)) lines.push(`    ${e.kind} in ${e.component}: ${e.message}`);
  if (record.errors.length > 5) lines.push(`    … ${record.errors.length - 5} more in the run record`);
  return lines.join('\n');
}
