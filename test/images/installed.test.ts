/**
 * What is installed: the rpmdbs inside the squashfs layers (Berkeley DB in `live`,
 * sqlite in `altinst`) against `rpm -qa`, dpkg status and os-release; then the
 * altrepo-iso and altrepo-image pipelines end to end through the runner into a memory
 * sink: the three tables' rows for the live ISO, a qcow2 and a tar.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createLogger } from '../../runtime/log.ts';
import { definePipeline, type Sink } from '../../runtime/pipeline.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { BufferDevice } from '../../sources/images/block-device.ts';
import { parseDpkgStatus } from '../../sources/installed/dpkg-status.ts';
import { readInstalled } from '../../sources/installed/installed-packages.ts';
import { parseOsRelease } from '../../sources/installed/os-release.ts';
import { altrepoSource, altrepoTransform, imageParams, type AltrepoRecord } from '../../pipelines/altrepo-iso.ts';
import { fileOf, fixture, FIXTURES, golden } from './golden.ts';

const temp = mkdtempSync(path.join(os.tmpdir(), 'sluice-installed-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** rpm -qa --qf '%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SHA1HEADER}' as rows */
const rpmQa = () =>
  golden('rpmdb.qa')
    .trim()
    .split('\n')
    .map((l) => l.split('\t'))
    .map(([name, epoch, version, release, arch, sha1]) => ({ name, epoch: epoch === '(none)' ? undefined : +epoch!, version, release, arch, sha1header: sha1 }));

describe('installed packages', () => {
  for (const [layer, db, kind] of [
    ['live', 'var/lib/rpm/Packages', 'rpmdb-bdb'],
    ['altinst', 'var/lib/rpm/rpmdb.sqlite', 'rpmdb-sqlite'],
  ] as const) {
    it(`${layer}: the ${kind} rpmdb lists what rpm -qa lists`, async () => {
      const bytes = await fileOf('live.iso', `${layer}!${db}`);
      const { packages, bad } = await readInstalled(kind, new BufferDevice(db, bytes));
      expect(bad).toEqual([]);
      const got = packages.map((p) => ({ name: p.name, epoch: p.epoch, version: p.version, release: p.release, arch: p.arch, sha1header: p.sha1header })).sort((a, b) => a.name.localeCompare(b.name));
      expect(got).toEqual(rpmQa());
      expect(packages.every((p) => typeof p.pkgHash === 'bigint')).toBe(true);
    });
  }

  it('the Berkeley DB holds as many records as db_dump printed', async () => {
    // db_dump -p lines: one key and one value line per record
    expect(+golden('Packages.db_dump-lines').trim()).toBe(2 * (rpmQa().length + 1));
  });

  it('dpkg status: installed packages only, versions split', async () => {
    const text = (await fileOf('ext4.img.xz', 'var/lib/dpkg/status')).toString();
    const pkgs = parseDpkgStatus(text);
    expect(pkgs.map((p) => [p.name, p.epoch, p.version, p.release, p.arch, p.source])).toEqual([
      ['base-files', undefined, '12.4+deb12u5', '', 'amd64', undefined],
      ['libc6', undefined, '2.36', '9+deb12u4', 'amd64', 'glibc'],
      ['zlib1g', 1, '1.2.13.dfsg', '1', 'amd64', 'zlib'],
    ]);
  });

  it('os-release: quotes, escapes, comments', () => {
    expect(parseOsRelease('# c\nID=altlinux\nNAME="ALT \\"Work\\"station"\nX=\'single\'\n\nbad line\n')).toEqual({ ID: 'altlinux', NAME: 'ALT "Work"station', X: 'single' });
  });
});

async function runAltrepo(file: string, kind?: 'iso' | 'img' | 'qcow2' | 'tar'): Promise<AltrepoRecord[]> {
  const records: AltrepoRecord[] = [];
  const sink: Sink<AltrepoRecord> = { name: 'memory', kind: 'memory', write: (rs) => void records.push(...rs) };
  const pipeline = definePipeline({
    name: 'altrepo-test',
    description: 'altrepo source and transform into memory',
    params: z.object(imageParams),
    permissions: { read: [FIXTURES, temp], write: [temp] },
    onError: 'skip',
    source: (ctx) => altrepoSource(ctx, kind),
    transform: (ctx) => altrepoTransform(ctx),
    sinks: () => [sink],
  });
  const run = await runPipeline({ pipeline, params: { path: file, edition: 'workstation', version: '10.1', branch: 'p10' }, stateDir: path.join(temp, 'state'), log: createLogger({ level: 'silent' }) });
  expect(run.status).toBe('succeeded');
  return records;
}

describe('altrepo pipelines', () => {
  it('altrepo-iso: image row, files of every layer, RPMs of ALTLinux/RPMS.main, rpmdb packages per layer', async () => {
    const records = await runAltrepo(fixture('live.iso'), 'iso');
    const images = records.filter((r) => r.table === 'images').map((r) => r.row);
    expect(images).toHaveLength(1);
    const image = images[0] as Extract<AltrepoRecord, { table: 'images' }>['row'];
    expect(image).toMatchObject({ kind: 'iso', volume_id: 'ALT_LIVE_10.1', publisher: 'ALT LINUX TEAM', edition: 'workstation', version: '10.1', branch: 'p10', os_id: 'altlinux', os_version: '10.1', disk_info: 'ALT Workstation 10.1 x86_64 build 2023-11-14' });
    expect(image.sha256).toBe(execFileSync('sha256sum', [fixture('live.iso')]).toString().split(' ')[0]);
    const layers = JSON.parse(image.layers) as Array<{ layer: string; format: string; packages?: string }>;
    expect(layers.map((l) => [l.layer, l.format, l.packages])).toEqual([
      ['', 'iso9660', 'files'],
      ['altinst', 'squashfs', 'rpmdb-sqlite'],
      ['live', 'squashfs', 'rpmdb-bdb'],
      ['rescue', 'squashfs', 'files'],
    ]);
    const files = records.filter((r) => r.table === 'image_files').map((r) => r.row as Extract<AltrepoRecord, { table: 'image_files' }>['row']);
    expect(new Set(files.map((f) => f.image_id))).toEqual(new Set([image.sha256]));
    expect(files.find((f) => f.layer === 'rescue' && f.path === 'usr/share/doc/big.txt')).toMatchObject({ type: 'file', size: 19136, md5: expect.stringMatching(/^[0-9a-f]{32}$/) });
    const pkgs = records.filter((r) => r.table === 'image_packages').map((r) => r.row as Extract<AltrepoRecord, { table: 'image_packages' }>['row']);
    const summary = pkgs.map((p) => `${p.layer}|${p.source}|${p.name}`).sort();
    expect(summary).toEqual([
      'altinst|db|sluice-gz',
      'altinst|db|sluice-latin1',
      'altinst|db|sluice-xz',
      'live|db|sluice-gz',
      'live|db|sluice-latin1',
      'live|db|sluice-xz',
      '|file|sluice-latin1',
      '|file|sluice-xz',
    ]);
    // the same package has the same pkg_hash from its file and from an rpmdb
    const byName = (layer: string, source: string) => pkgs.find((p) => p.layer === layer && p.source === source && p.name === 'sluice-xz')!.pkg_hash;
    expect(byName('', 'file')).toBe(byName('live', 'db'));
  });

  it('altrepo-image: a qcow2 overlay (partitions, ext2) and a tar of a root file system', async () => {
    const records = await runAltrepo(fixture('overlay.qcow2'));
    const image = records.find((r) => r.table === 'images')!.row as Extract<AltrepoRecord, { table: 'images' }>['row'];
    expect(image).toMatchObject({ kind: 'qcow2', volume_id: '', os_id: 'altlinux' });
    expect(records.some((r) => r.table === 'image_files' && r.row.layer === 'p1' && r.row.path === 'etc/os-release')).toBe(true);

    const tar = path.join(temp, 'rootfs.tar');
    execFileSync('tar', ['-C', temp, '-cf', tar, '--owner=0', '--group=0', '-T', '/dev/null']);
    const root = path.join(temp, 'root');
    execFileSync('mkdir', ['-p', path.join(root, 'etc'), path.join(root, 'var/lib/dpkg')]);
    execFileSync('cp', [path.join(FIXTURES, 'golden', 'rpmdb.qa'), path.join(root, 'etc/notes')]);
    execFileSync('sh', ['-c', `printf 'ID=debian\\nVERSION_ID="12"\\n' > ${root}/etc/os-release; printf 'Package: a\\nStatus: install ok installed\\nVersion: 1:2-3\\nArchitecture: all\\n' > ${root}/var/lib/dpkg/status`]);
    execFileSync('tar', ['-C', root, '-cf', tar, '.']);
    const t = await runAltrepo(tar);
    const timage = t.find((r) => r.table === 'images')!.row as Extract<AltrepoRecord, { table: 'images' }>['row'];
    expect(timage).toMatchObject({ kind: 'tar', os_id: 'debian', os_version: '12' });
    expect(t.filter((r) => r.table === 'image_packages').map((r) => r.row)).toMatchObject([{ source: 'db', name: 'a', epoch: 1, version: '2', release: '3', arch: 'all', pkg_hash: null }]);
    expect(t.find((r) => r.table === 'image_files' && r.row.path === 'var/lib/dpkg/status')!.row).toMatchObject({ size: expect.any(Number), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });
});
