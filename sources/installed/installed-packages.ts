/**
 * What is installed in a tree of files, from the files that say so: rpm databases
 * (rpmdb.ts), dpkg's status file (dpkg-status.ts) and the OS identity (os-release.ts).
 * `installedKind(innerPath)` says whether a path (relative to the tree's root) is one
 * of them; `readInstalled` reads it into package rows of one shape for both package
 * managers.
 *
 * @example
 * ```ts
 * const kind = installedKind(entry.innerPath);
 * if (kind === 'rpmdb-sqlite' || kind === 'rpmdb-bdb') {
 *   const packages = await readInstalled(kind, device);
 * }
 * ```
 */
import { PermanentError } from '../../runtime/errors.ts';
import type { BlockDevice } from '../images/block-device.ts';
import { ImageError } from '../images/image-error.ts';
import { pkgHash } from '../rpm/package.ts';
import { parseDpkgStatus } from './dpkg-status.ts';
import { rpmdbAt, rpmdbPackages } from './rpmdb.ts';

export type InstalledKind = 'rpmdb-sqlite' | 'rpmdb-bdb' | 'rpmdb-ndb' | 'dpkg-status' | 'os-release';

export interface InstalledPackage {
  readonly name: string;
  readonly epoch?: number;
  readonly version: string;
  readonly release: string;
  readonly arch: string;
  /** ALT's pkg_hash (rpm only) */
  readonly pkgHash?: bigint;
  /** rpm's SHA1HEADER (hex), when there is one */
  readonly sha1header?: string;
  /** the source package (rpm: SOURCERPM, dpkg: Source) */
  readonly sourcePackage?: string;
}

export function installedKind(innerPath: string): InstalledKind | undefined {
  const db = rpmdbAt(innerPath);
  if (db) return `rpmdb-${db}`;
  if (innerPath === 'var/lib/dpkg/status') return 'dpkg-status';
  if (innerPath === 'etc/os-release' || innerPath === 'usr/lib/os-release') return 'os-release';
  return undefined;
}

/** The packages of an rpmdb or dpkg status file on `device`. Bad headers are skipped and counted in `bad`. */
export async function readInstalled(kind: 'rpmdb-sqlite' | 'rpmdb-bdb' | 'rpmdb-ndb' | 'dpkg-status', device: BlockDevice): Promise<{ packages: InstalledPackage[]; bad: PermanentError[] }> {
  const bad: PermanentError[] = [];
  if (kind === 'rpmdb-ndb') {
    throw new ImageError(device.name, 'rpmdb', 'rpm\'s ndb database (Packages.db) is not read', 0);
  }
  if (kind === 'dpkg-status') {
    if (device.size > 256 * 2 ** 20) throw new ImageError(device.name, 'dpkg', `status file of ${device.size} bytes is larger than allowed`, 0);
    const text = (await device.read(0, device.size)).toString('utf8');
    return {
      packages: parseDpkgStatus(text).map((p) => ({
        name: p.name,
        ...(p.epoch !== undefined ? { epoch: p.epoch } : {}),
        version: p.version,
        release: p.release,
        arch: p.arch,
        ...(p.source ? { sourcePackage: p.source } : {}),
      })),
      bad,
    };
  }
  const packages: InstalledPackage[] = [];
  for await (const h of rpmdbPackages(device, { onBadBlob: (e) => bad.push(e) })) {
    let hash: bigint | undefined;
    try {
      hash = pkgHash(h);
    } catch {
      hash = undefined;
    }
    packages.push({
      name: h.name,
      ...(h.epoch !== undefined ? { epoch: h.epoch } : {}),
      version: h.version,
      release: h.release,
      arch: h.arch,
      ...(hash !== undefined ? { pkgHash: hash } : {}),
      ...(h.sha1header ? { sha1header: h.sha1header } : {}),
      ...(h.sourcerpm ? { sourcePackage: h.sourcerpm } : {}),
    });
  }
  return { packages, bad };
}
