/**
 * The package reader against rpm itself: every field of the fixture packages (made by
 * rpmbuild, fixtures/rpm/make.sh) compared with what `rpm -qp --queryformat`,
 * `--changelog`, `--requires`, `--provides` and `--dump` printed when the fixtures
 * were made, and the one-pass file digests with md5sum/sha1sum/sha256sum/b2sum.
 */
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { TAG } from '../../sources/rpm/header.ts';
import { pkgHash, readPackage, type Dependency, type DependencyKind, type RpmPackage } from '../../sources/rpm/package.ts';
import { fixtureBytes, fixtureStream, golden, qfRows, qfSections, RPMS, sums, text } from './support.ts';

const packages = new Map<string, RpmPackage>();
async function pkg(name: string): Promise<RpmPackage> {
  let p = packages.get(name);
  if (!p) {
    p = await readPackage(fixtureStream(name), { source: name, verify: true });
    packages.set(name, p);
  }
  return p;
}

const NONE = '(none)';
const orNone = (v: string | number | undefined) => (v === undefined || v === '' ? NONE : String(v));

const FLAG_LETTERS: Record<string, string> = {
  doc: 'd', config: 'c', specfile: 's', missingok: 'm', noreplace: 'n', ghost: 'g', license: 'l', readme: 'r', artifact: 'a',
};

/** rpm's `depflags` format: ` < `, ` >= ` …, or nothing. */
const depflags = (d: Dependency) => (d.op ? d.op : '');

/** `--requires`/`--provides` line */
const depLine = (d: Dependency) => (d.op ? `${d.name} ${d.op} ${d.version}` : d.name);

/** `%{CHANGELOGTIME:day}`: "Tue Nov 14 2023" in UTC (make.sh ran rpm with TZ=UTC) */
function day(seconds: number): string {
  const d = new Date(seconds * 1000);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, '0')} ${d.getUTCFullYear()}`;
}

describe.each(RPMS)('%s', (name) => {
  const qf = qfSections(name);
  const field = (tag: string) => text(qf.get(tag)!);

  it('scalar fields match rpm --queryformat', async () => {
    const p = await pkg(name);
    expect(p.name).toBe(field('NAME'));
    expect(orNone(p.epoch)).toBe(field('EPOCH'));
    expect(p.version).toBe(field('VERSION'));
    expect(p.release).toBe(field('RELEASE'));
    expect(p.arch).toBe(field('ARCH'));
    expect(p.summary).toBe(field('SUMMARY'));
    expect(p.description).toBe(field('DESCRIPTION'));
    expect(p.license).toBe(field('LICENSE'));
    expect(p.group).toBe(field('GROUP'));
    expect(orNone(p.url)).toBe(field('URL'));
    expect(String(p.buildtime)).toBe(field('BUILDTIME'));
    expect(p.buildhost).toBe(field('BUILDHOST'));
    expect(orNone(p.sourcerpm)).toBe(field('SOURCERPM'));
    expect(p.isSource).toBe(field('SOURCEPACKAGE') !== NONE);
    expect(p.isSource).toBe(name.endsWith('.src.rpm'));
    expect(String(p.size)).toBe(field('SIZE'));
    expect(orNone(p.packager)).toBe(field('PACKAGER'));
    expect(orNone(p.vendor)).toBe(field('VENDOR'));
    expect(orNone(p.disttag)).toBe(field('DISTTAG'));
    expect(p.sha1header).toBe(field('SHA1HEADER'));
    expect(p.sha256header).toBe(field('SHA256HEADER'));
    expect(p.sigmd5?.toString('hex')).toBe(field('SIGMD5'));
    expect(orNone(p.siggpg?.toString('hex'))).toBe(field('SIGGPG'));
    expect(p.payloadFormat).toBe(field('PAYLOADFORMAT'));
    expect(p.payloadCompressor).toBe(field('PAYLOADCOMPRESSOR'));
    expect(p.payloadFlags).toBe(field('PAYLOADFLAGS'));
    const algo = field('FILEDIGESTALGO');
    expect(p.fileDigestAlgorithm).toBe(algo === NONE || algo === '1' ? 'md5' : algo === '8' ? 'sha256' : `?${algo}`);
  });

  it.each(['REQUIRES', 'PROVIDES', 'CONFLICTS', 'OBSOLETES', 'RECOMMENDS', 'SUGGESTS', 'SUPPLEMENTS', 'ENHANCES'])(
    '%s: names, raw flags, decoded flags and versions match rpm',
    async (section) => {
      const p = await pkg(name);
      const kind = section.toLowerCase() as DependencyKind;
      const ours = p.dependencies(kind).map((d) => [d.name, String(d.flags), d.types.length ? d.types.join(',') : 'manual', depflags(d), d.version]);
      const theirs = qfRows(qf, section).map(([n, flags, deptype, dflags, version]) => [n, flags, deptype, dflags!.trim(), version]);
      expect(ours).toEqual(theirs);
    },
  );

  it('requires and provides match rpm --requires / --provides', async () => {
    const p = await pkg(name);
    expect(p.requires.map(depLine).join('\n') + '\n').toBe(text(golden(name, 'requires')));
    expect(p.provides.map(depLine).join('\n') + '\n').toBe(text(golden(name, 'provides')));
  });

  it('files match the query format: path, size, mode, digest, link, flags, owner, mtime', async () => {
    const p = await pkg(name);
    const ours = p.files.map((f) => [
      f.path,
      String(f.size),
      String(f.mode),
      f.digest,
      f.linkTarget,
      String(f.flags),
      f.flagNames.map((n) => FLAG_LETTERS[n]).join(''),
      f.user,
      f.group,
      String(f.mtime),
    ]);
    expect(ours).toEqual(qfRows(qf, 'FILES'));
    expect(ours.length).toBeGreaterThan(0);
  });

  it('files match rpm --dump', async () => {
    const p = await pkg(name);
    const zeros = '0'.repeat(p.fileDigestAlgorithm === 'md5' ? 32 : 64);
    const ours = p.files.map((f) =>
      [
        f.path,
        f.size,
        f.mtime,
        f.digest || zeros,
        '0' + f.mode.toString(8),
        f.user,
        f.group,
        f.flagNames.includes('config') ? 1 : 0,
        f.flagNames.includes('doc') ? 1 : 0,
        f.rdev,
        f.linkTarget || 'X',
      ].join(' '),
    );
    expect(ours.join('\n') + '\n').toBe(text(golden(name, 'dump')));
  });

  it('changelog matches rpm --changelog', async () => {
    const p = await pkg(name);
    const rendered = p.changelog.map((c) => `* ${day(c.time)} ${c.name}\n${c.text}\n\n`).join('');
    expect(rendered).toBe(text(golden(name, 'changelog')));
    expect(p.changelog.map((c) => [String(c.time), c.name])).toEqual(qfRows(qf, 'CHANGELOG'));
  });

  it('the one-pass digests match md5sum, sha1sum, sha256sum and b2sum', async () => {
    const p = await pkg(name);
    expect(p.digests).toEqual({
      md5: sums('MD5SUMS').get(name),
      sha1: sums('SHA1SUMS').get(name),
      sha256: sums('SHA256SUMS').get(name),
      blake2b: sums('B2SUMS').get(name),
    });
    expect(p.byteLength).toBe(fixtureBytes(name).length);
  });

  it('reads the same from a web stream, from one big chunk and from 1-byte chunks', async () => {
    const bytes = fixtureBytes(name);
    const oneChunk = await readPackage([bytes], { source: name });
    const web = await readPackage(new Blob([bytes]).stream(), { source: name });
    async function* bytewise() {
      for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
    }
    const tiny = await readPackage(bytewise(), { source: name });
    const p = await pkg(name);
    for (const other of [oneChunk, web, tiny]) {
      expect(other.digests).toEqual(p.digests);
      expect(other.files).toEqual(p.files);
      expect(other.header.bytes.equals(p.header.bytes)).toBe(true);
    }
  });

  it('pkgHash equals the same formula computed by ClickHouse (chDB) from the golden values', async () => {
    const p = await pkg(name);
    const { query } = await import('chdb');
    const buildtime = Number(field('BUILDTIME'));
    const sha1 = field('SHA1HEADER');
    const md5 = field('SIGMD5');
    const gpg = field('SIGGPG') === NONE ? '' : field('SIGGPG');
    const sql =
      `SELECT bitOr(bitShiftLeft(toUInt64(${buildtime} - 1000000000), 32), ` +
      `toUInt64(murmurHash3_32(concat(unhex('${sha1}'), unhex('${md5}'), unhex('${gpg}')))))`;
    expect(pkgHash(p)).toBe(BigInt(query(sql, 'CSV').trim()));
  });
});

describe('pkgHash', () => {
  it('hashes SHA1HEADER as its 20 binary bytes (bytes.fromhex), then SIGMD5 and SIGGPG as stored', async () => {
    const { murmurHash3_32 } = await import('../../sources/rpm/murmur3.ts');
    const sha1header = '00112233445566778899aabbccddeeff00112233';
    const sigmd5 = Buffer.from('a9bc5a41f7dea83bbbffe033bef54acb', 'hex');
    const siggpg = Buffer.from('deadbeef', 'hex');
    const lo = murmurHash3_32(Buffer.concat([Buffer.from(sha1header, 'hex'), sigmd5, siggpg]));
    expect(pkgHash({ buildtime: 1_700_000_000, sha1header, sigmd5, siggpg })).toBe((700_000_000n << 32n) | BigInt(lo));
    // not the ASCII of the hex string
    const ascii = murmurHash3_32(Buffer.concat([Buffer.from(sha1header), sigmd5, siggpg]));
    expect(pkgHash({ buildtime: 1_700_000_000, sha1header, sigmd5, siggpg }) & 0xffffffffn).not.toBe(BigInt(ascii));
  });

  it('a missing value contributes nothing; an all-missing package hashes the empty input', () => {
    expect(pkgHash({ buildtime: 1_000_000_001 })).toBe((1n << 32n) | 0n); // murmur3_32('') with seed 0 is 0
    const sigmd5 = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
    expect(pkgHash({ buildtime: 1_000_000_001, sigmd5 })).toBe(pkgHash({ buildtime: 1_000_000_001, sha1header: '', sigmd5, siggpg: Buffer.alloc(0) }));
  });

  it('a build time before 2001-09-09 wraps to the 64-bit two’s complement, as a UInt64 column would store it', () => {
    expect(pkgHash({ buildtime: 999_999_999 })).toBe(BigInt.asUintN(64, -1n << 32n));
  });

  it('a SHA1HEADER that is not hex is a PermanentError', () => {
    expect(() => pkgHash({ buildtime: 1_700_000_000, sha1header: 'not hex' })).toThrow(PermanentError);
  });
});

describe('text encoding', () => {
  const latin1 = 'sluice-latin1-1.0-alt0.1.noarch.rpm';
  const utf8 = 'sluice-gz-1.2.3-alt1.x86_64.rpm';

  it('latin-1 texts (not valid UTF-8) decode as latin-1, byte for byte', async () => {
    const p = await pkg(latin1);
    expect(p.summary).toBe('Paquet de test: données françaises, Größe');
    expect(p.packager).toBe('François Gérard <fg@example.org>');
    expect(p.description).toBe('Description en latin-1: éàçù ÄÖÜß ñ ¿¡ «guillemets» ° ± µ.');
    expect(p.changelog[0]!.text).toBe('- Première version, encodée en ISO-8859-1: «élève», Übergröße.');
    // the raw bytes are latin-1 (one byte per character), and the string gives them back
    const raw = p.header.rawStrings(TAG.SUMMARY)[0]!;
    expect(raw.length).toBe(p.summary.length);
    expect(Buffer.from(p.summary, 'latin1').equals(raw)).toBe(true);
    expect(qfSections(latin1).get('SUMMARY')!.equals(raw)).toBe(true);
  });

  it('valid UTF-8 texts decode as UTF-8 (not as latin-1 mojibake like the old loader)', async () => {
    const p = await pkg(utf8);
    expect(p.changelog[0]!.text).toContain('Новая версия 1.2.3');
    expect(p.changelog[1]!.name).toBe('José Müller <jose@example.org> 2:1.2.2-alt1');
    expect(p.changelog[1]!.text).toContain('日本語, emoji 🚀');
    expect(p.files.some((f) => f.path === '/usr/share/sluice-gz/données-ñ.txt')).toBe(true);
  });
});

describe('what the fixtures cover', () => {
  it('an epoch, a source package, symlinks, hard links, %config, %ghost, weak deps, both digest algorithms', async () => {
    const gz = await pkg('sluice-gz-1.2.3-alt1.x86_64.rpm');
    expect(gz.epoch).toBe(2);
    expect(gz.files.filter((f) => f.type === 'symlink').length).toBe(3);
    expect(gz.files.filter((f) => f.flagNames.includes('config')).map((f) => f.path)).toEqual([
      '/etc/sluice-gz/conf.d/extra.conf',
      '/etc/sluice-gz/main.conf',
    ]);
    expect(gz.files.find((f) => f.path.endsWith('state.db'))!.flagNames).toEqual(['ghost']);
    expect(gz.requires.find((d) => d.name === 'glibc')).toMatchObject({ op: '>=', version: '2.17', types: [] });
    expect(gz.requires.find((d) => d.name === '/usr/sbin/useradd')!.types).toEqual(['pre']);
    expect(gz.recommends.map((d) => d.name)).toEqual(['sluice-extras']);
    expect(gz.fileDigestAlgorithm).toBe('md5');
    expect((await pkg('sluice-xz-0.9-1.noarch.rpm')).fileDigestAlgorithm).toBe('sha256');
    const src = await pkg('sluice-gz-1.2.3-alt1.src.rpm');
    expect(src.isSource).toBe(true);
    expect(src.lead.type).toBe(1);
    expect(gz.lead.type).toBe(0);
    expect(gz.changelog.length).toBe(3);
    expect(gz.changelog[0]!.text.length).toBeGreaterThan(500);
  });
});
