import { describe, expect, it } from 'vitest';
import { classifyError, describeError } from '../../runtime/errors.ts';
import { parseManifest } from '../../sources/http/cvmfs/manifest.ts';
import { parseGeoAnswer } from '../../sources/http/cvmfs/scrape-server.ts';
import { checkDistinctLabels, parseServerAddress } from '../../sources/http/cvmfs/server-address.ts';
import { parseCvmfsDate, parseStatusFile } from '../../sources/http/cvmfs/status-file.ts';
import { dateUtc, hash40, manifestOf, SIGNATURE } from '../servers/cvmfs-stratum.ts';

const URL = 'http://s1.example.org/cvmfs/repo.example.org/.cvmfspublished';

describe('parseManifest', () => {
  it('reads every field, the hash line and the binary signature', () => {
    const m = parseManifest(manifestOf({ name: 'repo.example.org', revision: 4711, timestamp: 1_700_000_123, rootSize: 1234, ttl: 900 }), URL);
    expect(m).toMatchObject({
      rootCatalogHash: hash40('repo.example.org/4711/catalog'),
      rootCatalogSize: 1234,
      alternativeName: false,
      rootPathHash: 'd41d8cd98f00b204e9800998ecf8427e',
      ttlSeconds: 900,
      revision: 4711,
      garbageCollectable: true,
      timestamp: 1_700_000_123,
      repositoryName: 'repo.example.org',
      metadataHash: `${hash40('repo.example.org/meta')}-rmd160`,
      channelTips: [],
    });
    expect(Buffer.from(m.signature, 'base64')).toEqual(SIGNATURE);
    expect(m.hash).toMatch(/^[0-9a-f]{40}$/);
    expect(Object.keys(m.fields).sort()).toEqual(['A', 'B', 'C', 'D', 'G', 'H', 'M', 'N', 'R', 'S', 'T', 'X', 'Y']);
  });

  it('accepts L, repeated Z, unknown keys, suffixed hashes, empty lines and CRLF; only C, R, D, S are required', () => {
    const text = 'Cabc123-shake128\r\n\r\nRd41d8cd98f00b204e9800998ecf8427e\nD240\nS7\nLmicro\nZtip1\nZtip2\nQfuture-key\n--\nfeedface\n';
    const m = parseManifest(Buffer.from(text), URL);
    expect(m.rootCatalogHash).toBe('abc123-shake128');
    expect(m.revision).toBe(7);
    expect(m.microCatalogs).toBe('micro');
    expect(m.channelTips).toEqual(['tip1', 'tip2']);
    expect(m.fields.Q).toBe('future-key');
    expect(m.rootCatalogSize).toBeUndefined();
    expect(m.timestamp).toBeUndefined();
    expect(m.hash).toBe('feedface');
    expect(m.signature).toBe('');
  });

  it('a manifest without a required field is a permanent error naming the URL and the missing keys', () => {
    let error: unknown;
    try {
      parseManifest(Buffer.from('Cabc\nD240\n--\nhash\n'), URL);
    } catch (err) {
      error = err;
    }
    expect(classifyError(error)).toBe('permanent');
    expect((error as Error).message).toBe(`${URL}: manifest lacks the required fields R, S (fields present: CD)`);
  });

  it('an HTML page instead of a manifest is refused clearly', () => {
    expect(() => parseManifest(Buffer.from('<html><body>Not here</body></html>'), URL)).toThrow(/lacks the required fields C, R, D, S .*no "--" signature separator/);
  });

  it('a revision that is not a number is refused', () => {
    expect(() => parseManifest(Buffer.from('Cabc\nRr\nD1\nSseven\n--\n'), URL)).toThrow(`${URL}: manifest revision S is not an integer: "seven"`);
  });
});

describe('status files and dates', () => {
  it('reads date --utc strings with the padded day', () => {
    expect(parseCvmfsDate('Sat Feb  5 00:00:03 UTC 2022')).toBe(Date.UTC(2022, 1, 5, 0, 0, 3) / 1000);
    expect(parseCvmfsDate('Mon Nov 13 22:13:20 UTC 2023')).toBe(1_699_913_600);
    expect(parseCvmfsDate(dateUtc(1_644_019_203))).toBe(1_644_019_203);
    expect(parseCvmfsDate('2022-02-05T00:00:03Z')).toBe(Date.UTC(2022, 1, 5, 0, 0, 3) / 1000);
    expect(parseCvmfsDate('yesterday')).toBeUndefined();
  });

  it('every key is optional; an unreadable date keeps its text', () => {
    expect(parseStatusFile({})).toEqual({ fields: {} });
    const s = parseStatusFile({ last_gc: 'Sat Feb  5 00:00:03 UTC 2022', last_snapshot: 'soon', check_status: 'succeeded', extra: 1 });
    expect(s.lastGc).toEqual({ raw: 'Sat Feb  5 00:00:03 UTC 2022', unix: 1_644_019_203 });
    expect(s.lastSnapshot).toEqual({ raw: 'soon' });
    expect(s.checkStatus).toBe('succeeded');
    expect(s.fields.extra).toBe(1);
    expect(parseStatusFile([1, 2])).toEqual({ fields: {} });
  });
});

describe('server addresses', () => {
  it('takes hosts, ports, schemes and IPv6, labelling like the old exporter', () => {
    expect(parseServerAddress('rug-nl.stratum1.cvmfs.eessi-infra.org')).toMatchObject({
      base: 'http://rug-nl.stratum1.cvmfs.eessi-infra.org', hostPort: 'rug-nl.stratum1.cvmfs.eessi-infra.org:80', label: 'rug-nl.stratum1',
    });
    expect(parseServerAddress('https://s1.example.org:8443')).toMatchObject({ base: 'https://s1.example.org:8443', hostPort: 's1.example.org:8443', label: 's1.example:8443' });
    expect(parseServerAddress('https://s1.example.org')).toMatchObject({ hostPort: 's1.example.org:443', label: 's1.example' });
    expect(parseServerAddress('127.0.0.1:8000')).toMatchObject({ base: 'http://127.0.0.1:8000', label: '127.0.0.1:8000' });
    expect(parseServerAddress('[::1]:8000')).toMatchObject({ base: 'http://[::1]:8000', hostPort: '[::1]:8000', label: '::1:8000' });
    expect(parseServerAddress('s1.example.org', 'host').label).toBe('s1.example.org');
  });

  it('refuses paths and other schemes, and servers whose labels would collide', () => {
    expect(() => parseServerAddress('http://s1.example.org/cvmfs')).toThrow(/not a path/);
    expect(() => parseServerAddress('ftp://s1.example.org')).toThrow(/not http or https/);
    let error: unknown;
    try {
      checkDistinctLabels([parseServerAddress('a.b.one.org'), parseServerAddress('a.b.two.org')]);
    } catch (err) {
      error = err;
    }
    expect(describeError(error)).toMatch(/a\.b\.one\.org and a\.b\.two\.org would both be labelled server="a\.b" \(use --param serverLabel=host/);
  });
});

describe('GeoAPI answers', () => {
  it('takes a permutation of 1..n and nothing else', () => {
    expect(parseGeoAnswer('2,1,3\n', 3)).toEqual([2, 1, 3]);
    expect(parseGeoAnswer('2,1\n', 3)).toBeUndefined();
    expect(parseGeoAnswer('1,1,3', 3)).toBeUndefined();
    expect(parseGeoAnswer('<html>', 3)).toBeUndefined();
  });
});
