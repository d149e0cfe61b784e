import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseStore, StoreFeatures } from '../../runtime/clickhouse/store.ts';
import { featuresFor, parseVersion, versionAtLeast } from '../../runtime/clickhouse/version.ts';
import { BACKENDS, openBackend, type Backend } from './backends.ts';

describe('parseVersion', () => {
  it('reads the forms ClickHouse prints', () => {
    expect(parseVersion('18.16.1')).toEqual({ major: 18, minor: 16, patch: 1, text: '18.16.1' });
    expect(parseVersion('26.7.2.1\n')).toEqual({ major: 26, minor: 7, patch: 2, text: '26.7.2.1' });
    expect(parseVersion('ClickHouse 18.16.1')).toMatchObject({ major: 18, minor: 16, patch: 1 });
    expect(parseVersion('v24.3.1.2672-lts')).toMatchObject({ major: 24, minor: 3, patch: 1 });
    expect(() => parseVersion('nonsense')).toThrow(/cannot read a ClickHouse version from "nonsense"/);
    expect(versionAtLeast(parseVersion('19.1.0'), 19, 1)).toBe(true);
    expect(versionAtLeast(parseVersion('18.16.1'), 19, 1)).toBe(false);
    expect(versionAtLeast(parseVersion('20.0.0'), 19, 6)).toBe(true);
  });

  it('18.16 has none of the newer features, 26.7 has all', () => {
    expect(Object.values(featuresFor(parseVersion('18.16.1'))).every((v) => v === false)).toBe(true);
    expect(Object.values(featuresFor(parseVersion('26.7.2.1'))).every((v) => v === true)).toBe(true);
    expect(featuresFor(parseVersion('21.8.1'))).toMatchObject({ lowCardinality: true, dateTime64: true, ttl: true, wideIntegers: true, bool: false, map: false });
  });
});

/** A statement that succeeds exactly when the server has the feature. */
const PROBES: Record<keyof StoreFeatures, (store: ClickHouseStore) => Promise<unknown>> = {
  lowCardinality: (s) => s.command('CREATE TABLE probe_lc (a LowCardinality(String)) ENGINE = Memory'),
  dateTime64: (s) => s.command('CREATE TABLE probe_dt64 (a DateTime64(3)) ENGINE = Memory'),
  insertDeduplicationToken: (s) => s.command('INSERT INTO probe_base (a) VALUES (1)', { insert_deduplication_token: 'probe' }),
  nonReplicatedDeduplication: (s) =>
    s.command('CREATE TABLE probe_dedup (a UInt8) ENGINE = MergeTree ORDER BY a SETTINGS non_replicated_deduplication_window = 10'),
  addColumnIfNotExists: (s) => s.command('ALTER TABLE probe_base ADD COLUMN IF NOT EXISTS b UInt8'),
  bool: (s) => s.command('CREATE TABLE probe_bool (a Bool) ENGINE = Memory'),
  map: (s) => s.command('CREATE TABLE probe_map (a Map(String, UInt8)) ENGINE = Memory'),
  wideIntegers: (s) => s.command('CREATE TABLE probe_u128 (a UInt128) ENGINE = Memory'),
  ttl: (s) => s.command('CREATE TABLE probe_ttl (d Date) ENGINE = MergeTree ORDER BY d TTL d + INTERVAL 1 DAY'),
};

describe.each(BACKENDS)('features of the real %s', (kind) => {
  let backend: Backend;
  let features: StoreFeatures;
  beforeAll(async () => {
    backend = await openBackend(kind, 'version');
    features = await backend.store.features();
    await backend.store.command('CREATE TABLE probe_base (a UInt8) ENGINE = MergeTree ORDER BY a');
  });
  afterAll(async () => {
    await backend?.cleanup();
  });

  it(kind === 'server' ? 'is ClickHouse 18.16 without any of them' : 'is ClickHouse 26 with all of them', async () => {
    const version = await backend.store.version();
    if (kind === 'server') {
      expect(version).toMatchObject({ major: 18, minor: 16 });
      expect(Object.values(features).every((v) => v === false)).toBe(true);
    } else {
      expect(version.major).toBeGreaterThanOrEqual(26);
      expect(Object.values(features).every((v) => v === true)).toBe(true);
    }
  });

  it.each(Object.keys(PROBES) as (keyof StoreFeatures)[])('%s: the server agrees with featuresFor', async (feature) => {
    const outcome = await PROBES[feature](backend.store).then(
      () => 'works',
      (err: Error) => `fails: ${err.message}`,
    );
    if (features[feature]) expect(outcome).toBe('works');
    else expect(outcome).toMatch(/^fails: /);
  });
});
