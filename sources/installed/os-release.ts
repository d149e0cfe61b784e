/**
 * `/etc/os-release` (or `/usr/lib/os-release`): the OS identity, parsed as
 * os-release(5) says: `KEY=value` lines, values optionally in double or single
 * quotes with `\`-escapes in double quotes, `#` comments and blank lines ignored.
 *
 * @example
 * ```ts
 * const os = parseOsRelease('ID=altlinux\nVERSION_ID=10.1\nPRETTY_NAME="ALT Workstation 10.1"\n');
 * os.ID; // 'altlinux'
 * ```
 */
export type OsRelease = Readonly<Record<string, string>>;

/** Where an image keeps it, in the order systemd looks. */
export const OS_RELEASE_PATHS = ['etc/os-release', 'usr/lib/os-release'] as const;

export function parseOsRelease(text: string): OsRelease {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!;
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1).replace(/\\([\\"$`])/g, '$1');
    else if (value.startsWith("'") && value.endsWith("'") && value.length >= 2) value = value.slice(1, -1);
    out[m[1]!] = value;
  }
  return out;
}
