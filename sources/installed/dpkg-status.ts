/**
 * dpkg's `/var/lib/dpkg/status`: one stanza per package (RFC 822-style fields,
 * continuation lines start with a space), separated by blank lines. Only packages whose
 * `Status` ends in `installed` are returned (a removed package keeps a stanza with
 * `deinstall ok config-files`, which is not installed). The version is split Debian's
 * way: `[epoch:]upstream[-revision]`.
 *
 * @example
 * ```ts
 * for (const p of parseDpkgStatus(text)) console.log(p.name, p.version, p.arch);
 * ```
 */
export interface DpkgPackage {
  readonly name: string;
  /** the epoch, when the version has one */
  readonly epoch?: number;
  /** the upstream version (without epoch and revision) */
  readonly version: string;
  /** the Debian revision ('' for a native package) */
  readonly release: string;
  readonly arch: string;
  /** the source package's name, when it differs from the binary's */
  readonly source?: string;
  readonly status: string;
  /** every field of the stanza as it stands */
  readonly fields: Readonly<Record<string, string>>;
}

export function parseDpkgStatus(text: string, options: { all?: boolean } = {}): DpkgPackage[] {
  const out: DpkgPackage[] = [];
  for (const stanza of text.split(/\r?\n(?:[ \t]*\r?\n)+/)) {
    const fields: Record<string, string> = {};
    let last: string | undefined;
    for (const line of stanza.split(/\r?\n/)) {
      if (!line) continue;
      if ((line.startsWith(' ') || line.startsWith('\t')) && last) {
        fields[last] += `\n${line.slice(1)}`;
        continue;
      }
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      last = line.slice(0, colon).trim();
      fields[last] = line.slice(colon + 1).trim();
    }
    const name = fields.Package;
    if (!name) continue;
    const status = fields.Status ?? '';
    if (!options.all && !/\sinstalled$/.test(status)) continue;
    const full = fields.Version ?? '';
    const colon = full.indexOf(':');
    const epoch = colon > 0 && /^\d+$/.test(full.slice(0, colon)) ? Number(full.slice(0, colon)) : undefined;
    const rest = epoch === undefined ? full : full.slice(colon + 1);
    const dash = rest.lastIndexOf('-');
    const source = fields.Source?.replace(/\s*\(.*\)$/, '');
    out.push({
      name,
      ...(epoch !== undefined ? { epoch } : {}),
      version: dash > 0 ? rest.slice(0, dash) : rest,
      release: dash > 0 ? rest.slice(dash + 1) : '',
      arch: fields.Architecture ?? '',
      ...(source && source !== name ? { source } : {}),
      status,
      fields,
    });
  }
  return out;
}
