/**
 * Logging on stderr. `json` is pino's machine-readable lines; `text` is one short human
 * line per event. Both share this interface so components never care which is on.
 */
import { pino } from 'pino';

export type LogFormat = 'text' | 'json';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(bindings: LogFields): Logger;
}

export interface LoggerOptions {
  format?: LogFormat;
  level?: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** where text lines go (default stderr); tests pass a collector */
  write?: (line: string) => void;
}

const LEVELS = { debug: 20, info: 30, warn: 40, error: 50, silent: 100 } as const;

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? ((process.env.SLUICE_LOG_LEVEL as LoggerOptions['level']) || 'info');
  if (options.format === 'json') {
    const base = pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
    const wrap = (p: pino.Logger): Logger => ({
      debug: (msg, fields) => p.debug(fields ?? {}, msg),
      info: (msg, fields) => p.info(fields ?? {}, msg),
      warn: (msg, fields) => p.warn(fields ?? {}, msg),
      error: (msg, fields) => p.error(fields ?? {}, msg),
      child: (bindings) => wrap(p.child(bindings)),
    });
    return wrap(base);
  }
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const threshold = LEVELS[level];
  const make = (bindings: LogFields): Logger => {
    const emit = (lvl: keyof typeof LEVELS, msg: string, fields?: LogFields) => {
      if (LEVELS[lvl] < threshold) return;
      const all = { ...bindings, ...fields };
      const extra = Object.entries(all)
        .filter(([k]) => k !== 'pipeline' && k !== 'runId')
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      write(`${lvl === 'info' ? '' : lvl + ': '}${msg}${extra ? '  ' + extra : ''}`);
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      child: (b) => make({ ...bindings, ...b }),
    };
  };
  return make({});
}
