/**
 * The packages an rpm database says are installed: rpm ≥ 4.16's `rpmdb.sqlite` (table
 * `Packages`) and Berkeley DB `Packages` (rpm < 4.16, ALT). Each row is one package's
 * header blob as rpm stores it (the header without its 8-byte magic), parsed by
 * `sources/rpm`'s header reader, so `pkg_hash` and every tag are available as for an
 * `.rpm` file. ndb (`Packages.db`, SUSE) is refused with a clear error.
 *
 * A blob that is not a valid header is reported through `onBadBlob` (the database's
 * other packages are read); a database that is corrupt as a whole throws an
 * `ImageError` naming it and the offset.
 *
 * @example
 * ```ts
 * for await (const pkg of rpmdbPackages(device)) console.log(pkg.name, pkg.version, pkgHash(pkg));
 * ```
 */
import { PermanentError } from '../../runtime/errors.ts';
import type { BlockDevice } from '../images/block-device.ts';
import { ImageError } from '../images/image-error.ts';
import { parseHeader } from '../rpm/header.ts';
import { PackageHeader } from '../rpm/package.ts';
import { bdbHashValues, isBdbHash } from './bdb-hash.ts';
import { isSqlite, sqliteRows } from './sqlite-table.ts';

export type RpmdbFormat = 'sqlite' | 'bdb';

/** Which rpmdb a path inside a tree is, if any (paths relative to the tree's root). */
export function rpmdbAt(innerPath: string): RpmdbFormat | 'ndb' | undefined {
  if (/^(var\/lib\/rpm|usr\/lib\/sysimage\/rpm)\/rpmdb\.sqlite$/.test(innerPath)) return 'sqlite';
  if (/^(var\/lib\/rpm|usr\/lib\/sysimage\/rpm)\/Packages$/.test(innerPath)) return 'bdb';
  if (/^(var\/lib\/rpm|usr\/lib\/sysimage\/rpm)\/Packages\.db$/.test(innerPath)) return 'ndb';
  return undefined;
}

const MAGIC = Buffer.from([0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0]);

export async function* rpmdbPackages(
  device: BlockDevice,
  options: { onBadBlob?: (error: PermanentError) => void } = {},
): AsyncGenerator<PackageHeader, void, undefined> {
  const blobs = (await isSqlite(device)) ? sqliteBlobs(device) : (await isBdbHash(device)) ? bdbBlobs(device) : undefined;
  if (!blobs) throw new ImageError(device.name, 'rpmdb', 'neither an SQLite nor a Berkeley DB hash rpmdb', 0, { hint: 'rpm\'s ndb format (Packages.db) is not read; convert with rpmdb --rebuilddb --define "_db_backend sqlite"' });
  for await (const { id, blob } of blobs) {
    try {
      const header = parseHeader(Buffer.concat([MAGIC, blob]), { source: `${device.name} (package ${id})` });
      yield new PackageHeader(header);
    } catch (err) {
      if (!(err instanceof PermanentError)) throw err;
      if (options.onBadBlob) options.onBadBlob(err);
      else throw err;
    }
  }
}

async function* sqliteBlobs(device: BlockDevice): AsyncGenerator<{ id: string; blob: Buffer }> {
  for await (const row of sqliteRows(device, 'Packages')) {
    const blob = row.values.find((v): v is Buffer => Buffer.isBuffer(v));
    if (blob) yield { id: String(row.rowid), blob };
  }
}

async function* bdbBlobs(device: BlockDevice): AsyncGenerator<{ id: string; blob: Buffer }> {
  for await (const { key, value } of bdbHashValues(device)) {
    // key 0 holds the next header number (4 bytes), not a header
    if (key.length === 4 && key.readUInt32LE(0) === 0) continue;
    if (value.length < 8) continue;
    yield { id: String(key.length === 4 ? key.readUInt32LE(0) : key.toString('hex')), blob: value };
  }
}
