/**
 * A small argument reader for the CLI: `--flag=value`, `--flag value` for flags that
 * take a value, bare `--flag` for switches and for `--allow-*` (which means "all"),
 * repeatable flags collected into lists. Unknown flags are an error naming the valid ones.
 */
export interface FlagSpec {
  /** takes a value */
  value?: boolean;
  /** may be given more than once */
  repeat?: boolean;
  /** value is optional (`--allow-net` alone means everything) */
  optionalValue?: boolean;
}

export interface ParsedArgs {
  positional: string[];
  flags: Map<string, (string | true)[]>;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseArgs(argv: readonly string[], spec: Record<string, FlagSpec>): ParsedArgs {
  const positional: string[] = [];
  const flags = new Map<string, (string | true)[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--') || arg === '-') {
      if (arg === '-h') {
        flags.set('help', [true]);
        continue;
      }
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const flag = spec[name];
    if (!flag) {
      throw new UsageError(`unknown flag --${name}; valid flags: ${Object.keys(spec).map((f) => `--${f}`).join(', ')}`);
    }
    let value: string | true = true;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (flag.value && !flag.optionalValue) {
      const next = argv[i + 1];
      if (next === undefined) throw new UsageError(`--${name} needs a value`);
      value = next;
      i++;
    }
    if (!flag.value && value !== true) throw new UsageError(`--${name} takes no value`);
    const list = flags.get(name) ?? [];
    if (list.length && !flag.repeat) throw new UsageError(`--${name} given twice`);
    list.push(value);
    flags.set(name, list);
  }
  return { positional, flags };
}

export function flagString(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name)?.[0];
  return typeof v === 'string' ? v : undefined;
}

export function flagNumber(args: ParsedArgs, name: string): number | undefined {
  const v = flagString(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || v.trim() === '') throw new UsageError(`--${name} must be a number, not "${v}"`);
  return n;
}

export function flagStrings(args: ParsedArgs, name: string): string[] {
  return (args.flags.get(name) ?? []).filter((v): v is string => typeof v === 'string');
}
