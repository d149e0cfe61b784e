/**
 * `<arch>/base/release` of an ALT repository snapshot: apt-rpm's release file, in the
 * Debian style. `Key: value` lines (`Origin`, `Label`, `Suite`, `Architectures`,
 * `Components` …), and checksum sections, a key with no value followed by indented
 * lines ` <hex digest> <size> <path>`: `MD5Sum:` always, `BLAKE2b:` where ALT publishes
 * blake2b sums. The paths are relative to the arch directory (`base/pkglist.classic.xz`).
 *
 * The loader takes the components from `Components:` and checks each package list it
 * reads against its sum here (BLAKE2b when there is one, else MD5), so a list that
 * changed or broke after the release was written is not loaded.
 *
 * @example
 * ```ts
 * const release = parseRelease(await ctx.fs.readFile('x86_64/base/release').then(String));
 * release.components; // ['classic', 'gostcrypto', 'debuginfo', 'checkinstall']
 * release.sums.get('base/pkglist.classic.xz'); // { md5: '…', blake2b: '…', size: 3519800 }
 * ```
 */

export interface ReleaseSums {
  md5?: string;
  blake2b?: string;
  sha256?: string;
  size?: number;
}

export interface Release {
  /** every `Key: value` field, by key as written */
  readonly fields: ReadonlyMap<string, string>;
  /** from `Components:`; empty when the file has none */
  readonly components: readonly string[];
  /** checksums by path relative to the arch directory */
  readonly sums: ReadonlyMap<string, ReleaseSums>;
}

/** Section names (lower case) and the sum each holds. */
const SECTIONS: Readonly<Record<string, keyof ReleaseSums>> = {
  md5sum: 'md5',
  blake2b: 'blake2b',
  sha256: 'sha256',
};

export function parseRelease(text: string): Release {
  const fields = new Map<string, string>();
  const sums = new Map<string, ReleaseSums>();
  let section: keyof ReleaseSums | undefined;
  for (const raw of text.split(/\r?\n/)) {
    if (!raw.trim()) continue;
    if (/^\s/.test(raw)) {
      if (!section) continue; // a continuation of a multi-line field (Description): not needed
      const [digest, size, file] = raw.trim().split(/\s+/);
      if (!digest || !file || !/^[0-9a-fA-F]+$/.test(digest)) continue;
      const entry = sums.get(file) ?? {};
      (entry as Record<string, string>)[section] = digest.toLowerCase();
      if (size && /^\d+$/.test(size)) entry.size = Number(size);
      sums.set(file, entry);
      continue;
    }
    const colon = raw.indexOf(':');
    if (colon <= 0) {
      section = undefined;
      continue;
    }
    const key = raw.slice(0, colon).trim();
    const value = raw.slice(colon + 1).trim();
    fields.set(key, value);
    section = value === '' ? SECTIONS[key.toLowerCase()] : undefined;
  }
  const components = (fields.get('Components') ?? '').split(/\s+/).filter(Boolean);
  return { fields, components, sums };
}
