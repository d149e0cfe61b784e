/**
 * ClickHouse versions and what each can do. Stores report `SELECT version()`; the SQL
 * sluice writes (table definitions, INSERT settings, ALTERs) adapts to the answer, so
 * the same pipeline runs on embedded chDB (ClickHouse 26.x) and on an old server.
 *
 * The thresholds are the releases that made each feature usable without an
 * experimental flag. Where the exact release was uncertain the later one was taken:
 * a feature wrongly thought missing only means plainer SQL, a feature wrongly thought
 * present means failing SQL. test/clickhouse/version.test.ts runs every probe against
 * both real engines and checks it agrees with `featuresFor`:
 *
 * | feature                      | since | 18.16.1 (Debian) | chDB 26.7 |
 * | ---------------------------- | ----- | ---------------- | --------- |
 * | LowCardinality(T)            | 19.1  | experimental only (code 44 without the flag) | yes |
 * | DateTime64(p)                | 20.1  | no: Unknown data type family (code 50) | yes |
 * | insert_deduplication_token   | 22.2  | no: Unknown setting (code 115) | yes |
 * | non_replicated_deduplication_window | 21.1 | no: Unknown setting for storage MergeTree (code 36) | yes |
 * | ALTER … ADD COLUMN IF NOT EXISTS | 19.6 | no: syntax error (code 62) | yes |
 * | Bool                         | 21.12 | no (code 50): stored as UInt8 | yes |
 * | Map(K, V)                    | 22.1  | no (code 50)     | yes |
 * | Int128/UInt128/Int256/UInt256 | 21.8 | no (code 50)     | yes |
 * | TTL on MergeTree             | 19.6  | no: syntax error (code 62) | yes |
 *
 * @example
 * ```ts
 * const v = parseVersion('18.16.1');        // { major: 18, minor: 16, patch: 1, text: '18.16.1' }
 * featuresFor(v).lowCardinality;            // false
 * ```
 */
import type { ServerVersion, StoreFeatures } from './store.ts';

/** Read a version as ClickHouse prints it: "18.16.1", "26.7.2.1", "v24.3.1.2672-lts", "ClickHouse 18.16.1". */
export function parseVersion(text: string): ServerVersion {
  const trimmed = text.trim();
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(trimmed);
  if (!m) throw new Error(`cannot read a ClickHouse version from "${trimmed.slice(0, 80)}"`);
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0), text: trimmed };
}

/** True when `version` is `major.minor` or later. */
export function versionAtLeast(version: ServerVersion, major: number, minor = 0): boolean {
  return version.major > major || (version.major === major && version.minor >= minor);
}

/** The release (major, minor) from which each feature works without experimental settings. */
export const FEATURE_SINCE: Readonly<Record<keyof StoreFeatures, readonly [number, number]>> = {
  lowCardinality: [19, 1],
  dateTime64: [20, 1],
  insertDeduplicationToken: [22, 2],
  nonReplicatedDeduplication: [21, 1],
  addColumnIfNotExists: [19, 6],
  bool: [21, 12],
  map: [22, 1],
  wideIntegers: [21, 8],
  ttl: [19, 6],
};

/** What a server of this version can do. */
export function featuresFor(version: ServerVersion): StoreFeatures {
  const features = {} as Record<keyof StoreFeatures, boolean>;
  for (const [name, [major, minor]] of Object.entries(FEATURE_SINCE) as [keyof StoreFeatures, readonly [number, number]][]) {
    features[name] = versionAtLeast(version, major, minor);
  }
  return features;
}
