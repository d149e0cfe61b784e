/**
 * The rsync flags a mirror-sync run may be given, as an allow-list: the flags are
 * passed to rsync as separate arguments (never through a shell), in the order given,
 * duplicates kept, and anything not listed is refused with the flag named. Refused on
 * purpose: flags that run programs (`-e/--rsh`, `--rsync-path`), read or write local
 * files other than the destination (`--files-from`, `--exclude-from`, `--log-file`,
 * `--password-file`, `--temp-dir`, `--backup-dir`, `--write-batch` …), change what
 * rsync prints (`-v`, `-q`, `-h`, `--info`, `--out-format`: sluice reads the output),
 * delete (the `delete` param chooses the one delete mode) and anything that is not a
 * flag at all (an extra source or destination).
 *
 * Value flags are written as one argument, `--name=value`.
 *
 * @example
 * ```ts
 * checkRsyncOptions(['-avH', '--exclude=*.tmp']); // error: -v: sluice sets rsync's verbosity itself
 * checkRsyncOptions(['-aH', '--bwlimit=10m', '--exclude=*.tmp']); // undefined (all allowed)
 * ```
 */

/** Single-letter flags allowed alone or bundled (`-rlptH`). */
export const ALLOWED_SHORT = new Set(['a', 'r', 'l', 'p', 't', 'g', 'o', 'D', 'H', 'S', 'z', 'x', 'm', 'c', 'K', 'k', 'E', 'A', 'X', 'O', 'J', 'U', 'W', 'y']);

/** Long flags without a value. */
export const ALLOWED_SWITCHES = new Set([
  'archive', 'recursive', 'links', 'copy-links', 'copy-unsafe-links', 'safe-links', 'hard-links', 'perms', 'executability',
  'acls', 'xattrs', 'owner', 'group', 'devices', 'specials', 'times', 'omit-dir-times', 'omit-link-times', 'atimes', 'crtimes',
  'sparse', 'preallocate', 'whole-file', 'no-whole-file', 'one-file-system', 'numeric-ids', 'compress', 'checksum',
  'partial', 'delay-updates', 'prune-empty-dirs', 'fuzzy', 'keep-dirlinks', 'copy-dirlinks', 'ignore-times', 'size-only',
  'update', 'inplace', 'append', 'append-verify', 'existing', 'ignore-existing', 'ignore-errors', 'force', 'delete-excluded',
  'no-perms', 'no-owner', 'no-group', 'no-times', 'no-devices', 'no-specials', 'ipv4', 'ipv6', 'fake-super',
]);

/** Long flags that take a value (`--name=value`), with a check of the value. */
export const ALLOWED_VALUES: Readonly<Record<string, RegExp>> = {
  exclude: /^[^\0\n]+$/,
  include: /^[^\0\n]+$/,
  filter: /^[-+!PRHS.:] ?[^\0\n]*$/,
  'max-size': /^\d+(\.\d+)?[KMGTkmgt]?[Bb]?$/,
  'min-size': /^\d+(\.\d+)?[KMGTkmgt]?[Bb]?$/,
  'max-delete': /^\d+$/,
  bwlimit: /^\d+(\.\d+)?[KMGTkmgt]?$/,
  timeout: /^\d+$/,
  contimeout: /^\d+$/,
  'modify-window': /^-?\d+$/,
  'compress-level': /^\d$/,
  'compress-choice': /^[a-z0-9]+$/,
  chmod: /^[ugoaDFrwxXst+\-=,0-7]+$/,
  'partial-dir': /^(?!\/)(?!.*(^|\/)\.\.(\/|$))[A-Za-z0-9._\-/]+$/,
  'skip-compress': /^[A-Za-z0-9/]+$/,
};

/** The delete modes (the `delete` param): one of rsync's mutually exclusive delete flags, or none. */
export const DELETE_MODES = ['none', 'delete', 'delete-before', 'delete-during', 'delete-delay', 'delete-after'] as const;
export type DeleteMode = (typeof DELETE_MODES)[number];

const WHY_NOT: Readonly<Record<string, string>> = {
  v: 'sluice sets rsync\'s verbosity itself', verbose: 'sluice sets rsync\'s verbosity itself',
  q: 'sluice reads rsync\'s output', quiet: 'sluice reads rsync\'s output',
  h: 'sluice reads sizes in bytes', 'human-readable': 'sluice reads sizes in bytes',
  i: 'sluice passes --itemize-changes itself', 'itemize-changes': 'sluice passes it itself', 'out-format': 'sluice reads rsync\'s output', info: 'sluice reads rsync\'s output', stats: 'sluice passes it itself',
  e: 'it runs a program', rsh: 'it runs a program', 'rsync-path': 'it runs a program on the server',
  'password-file': 'the password goes in the environment of rsync only', 'files-from': 'it reads a local file', 'exclude-from': 'it reads a local file', 'include-from': 'it reads a local file',
  'log-file': 'it writes a local file', 'temp-dir': 'it writes outside the destination', 'backup-dir': 'it writes outside the destination', 'write-batch': 'it writes a local file', 'only-write-batch': 'it writes a local file', 'read-batch': 'it reads a local file',
  'compare-dest': 'it reads outside the destination', 'copy-dest': 'it reads outside the destination', 'link-dest': 'it reads outside the destination',
  delete: 'use the delete param', 'delete-before': 'use the delete param', 'delete-during': 'use the delete param', 'delete-delay': 'use the delete param', 'delete-after': 'use the delete param', del: 'use the delete param',
  'remove-source-files': 'a mirror never removes upstream files', daemon: 'not a client flag', server: 'not a client flag', sender: 'not a client flag', config: 'not a client flag', port: 'use the host param (host:port)',
  'dry-run': 'a dry run is not a sync', n: 'a dry run is not a sync', 'list-only': 'a listing is not a sync',
};

/** Why `option` is refused, or undefined when it is allowed. */
export function refuseRsyncOption(option: string): string | undefined {
  if (option.startsWith('--')) {
    const eq = option.indexOf('=');
    const name = eq === -1 ? option.slice(2) : option.slice(2, eq);
    if (WHY_NOT[name]) return `${option}: not allowed (${WHY_NOT[name]})`;
    if (eq === -1) {
      if (ALLOWED_SWITCHES.has(name)) return undefined;
      if (ALLOWED_VALUES[name]) return `${option}: needs a value, written --${name}=VALUE`;
      return `${option}: not an allowed rsync flag`;
    }
    const check = ALLOWED_VALUES[name];
    if (!check) return ALLOWED_SWITCHES.has(name) ? `${option}: --${name} takes no value` : `${option}: not an allowed rsync flag`;
    const value = option.slice(eq + 1);
    if (!check.test(value)) return `${option}: "${value}" is not a valid value for --${name}`;
    return undefined;
  }
  if (/^-[A-Za-z]+$/.test(option)) {
    for (const letter of option.slice(1)) {
      if (WHY_NOT[letter]) return `${option}: -${letter} is not allowed (${WHY_NOT[letter]})`;
      if (!ALLOWED_SHORT.has(letter)) return `${option}: -${letter} is not an allowed rsync flag`;
    }
    return undefined;
  }
  return `${JSON.stringify(option)}: not a flag (sources and destinations come from the params)`;
}

/** The first refusal among `options`, or undefined when all are allowed. */
export function checkRsyncOptions(options: readonly string[]): string | undefined {
  for (const option of options) {
    const why = refuseRsyncOption(option);
    if (why) return why;
  }
  return undefined;
}
