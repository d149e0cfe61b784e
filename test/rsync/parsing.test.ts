/**
 * The parts of the rsync source that read rsync's output and check its options:
 * itemized lines, --stats totals, exit codes, the option allow-list, the argument
 * array, and mirror-sync's params.
 */
import { describe, expect, it } from 'vitest';
import mirrorSync, { passwordVariable, splitHost } from '../../pipelines/mirror-sync.ts';
import { parseParams } from '../../runtime/runner.ts';
import { checkRsyncOptions, parseItemizeLine, rsyncArgs, rsyncExit, RsyncStatsParser, unescapeName } from '../../sources/rsync/index.ts';

describe('itemized lines', () => {
  it('reads new files, updates, attribute-only changes, deletions, symlinks, hard links', () => {
    expect(parseItemizeLine('>f+++++++++ 6 a.txt')).toEqual({ path: 'a.txt', change: 'created', type: 'file', size: 6, transferred: true, itemize: '>f+++++++++' });
    expect(parseItemizeLine('>f.st...... 8 sub/b.txt')).toMatchObject({ path: 'sub/b.txt', change: 'updated', type: 'file', size: 8, transferred: true });
    expect(parseItemizeLine('.d..t...... 4096 sub/')).toMatchObject({ path: 'sub/', change: 'attributes', type: 'dir', transferred: false });
    expect(parseItemizeLine('cd+++++++++ 4096 new dir/')).toMatchObject({ path: 'new dir/', change: 'created', type: 'dir' });
    expect(parseItemizeLine('*deleting   0 old/c.txt')).toEqual({ path: 'old/c.txt', change: 'deleted', type: 'unknown', size: 0, transferred: false, itemize: '*deleting' });
    expect(parseItemizeLine('*deleting   0 old/')).toMatchObject({ change: 'deleted', type: 'dir' });
    expect(parseItemizeLine('cL+++++++++ 5 link -> a.txt')).toMatchObject({ path: 'link', target: 'a.txt', type: 'symlink', change: 'created' });
    expect(parseItemizeLine('hf+++++++++ 6 copy => a.txt')).toMatchObject({ path: 'copy', target: 'a.txt', change: 'hardlink' });
  });

  it('leaves other output alone and decodes escaped names', () => {
    for (const line of ['created directory /srv/x', '', 'Number of files: 5 (reg: 2, dir: 2, link: 1)', 'receiving incremental file list', 'sent 76 bytes  received 243 bytes  638.00 bytes/sec']) {
      expect(parseItemizeLine(line)).toBeUndefined();
    }
    expect(unescapeName('a\\#012b')).toBe('a\nb');
    expect(unescapeName('caf\\#303\\#251.txt')).toBe('café.txt');
    expect(parseItemizeLine('>f+++++++++ 1 caf\\#303\\#251.txt')?.path).toBe('café.txt');
  });
});

describe('--stats', () => {
  it('reads the totals, with thousands separators', () => {
    const parser = new RsyncStatsParser();
    for (const line of [
      'Number of files: 1,234,567 (reg: 2, dir: 2, link: 1)', 'Number of created files: 5 (reg: 2, dir: 2, link: 1)', 'Number of deleted files: 1 (reg: 1)',
      'Number of regular files transferred: 2', 'Total file size: 12,345,678,901 bytes', 'Total transferred file size: 14 bytes', 'Literal data: 14 bytes',
      'Matched data: 0 bytes', 'File list size: 114', 'Total bytes sent: 76', 'Total bytes received: 243', 'total size is 19  speedup is 0.06',
    ]) parser.line(line);
    expect(parser.result()).toEqual({
      files: 1234567, createdFiles: 5, deletedFiles: 1, regularFilesTransferred: 2, totalFileSize: 12345678901, totalTransferredFileSize: 14,
      literalData: 14, matchedData: 0, fileListSize: 114, bytesSent: 76, bytesReceived: 243, speedup: 0.06,
    });
  });
});

describe('exit codes', () => {
  it('says what each means and whether another attempt may help', () => {
    expect(rsyncExit(0)).toEqual({ code: 0, meaning: 'success', ok: true });
    expect(rsyncExit(24)).toMatchObject({ ok: true, meaning: 'partial transfer due to vanished source files' });
    expect(rsyncExit(5)).toMatchObject({ ok: false, kind: 'permanent', meaning: 'error starting client-server protocol' });
    expect(rsyncExit(10)).toMatchObject({ ok: false, kind: 'transient' });
    expect(rsyncExit(35)).toMatchObject({ ok: false, kind: 'transient', meaning: 'timeout waiting for daemon connection' });
    expect(rsyncExit(99)).toMatchObject({ ok: false, meaning: 'unknown exit code 99' });
    expect(rsyncExit(null, 'SIGKILL')).toMatchObject({ ok: false, meaning: 'killed by SIGKILL' });
  });
});

describe('the option allow-list', () => {
  it('allows mirror flags, bundled short flags and checked values', () => {
    expect(checkRsyncOptions(['-rlptH', '--safe-links', '--exclude=*.tmp', '--bwlimit=10m', '--timeout=60', '-aHz', '--partial-dir=.partial'])).toBeUndefined();
  });

  it('refuses what runs programs, touches other files, changes the output or is not a flag, naming it', () => {
    expect(checkRsyncOptions(['-a', '-e', 'sh -c id'])).toMatch(/^-e: -e is not allowed \(it runs a program\)/);
    expect(checkRsyncOptions(['--rsh=ssh'])).toMatch(/--rsh=ssh: not allowed \(it runs a program\)/);
    expect(checkRsyncOptions(['--rsync-path=evil'])).toMatch(/not allowed/);
    expect(checkRsyncOptions(['-avH'])).toMatch(/-v is not allowed \(sluice sets rsync's verbosity itself\)/);
    expect(checkRsyncOptions(['--password-file=/etc/shadow'])).toMatch(/not allowed/);
    expect(checkRsyncOptions(['--delete'])).toMatch(/use the delete param/);
    expect(checkRsyncOptions(['; rm -rf /'])).toMatch(/not a flag/);
    expect(checkRsyncOptions(['/etc/'])).toMatch(/not a flag/);
    expect(checkRsyncOptions(['--partial-dir=../../etc'])).toMatch(/not a valid value/);
    expect(checkRsyncOptions(['--exclude'])).toMatch(/needs a value/);
    expect(checkRsyncOptions(['--frobnicate'])).toMatch(/not an allowed rsync flag/);
  });
});

describe('the argument array', () => {
  it('keeps the options in order (duplicates too), adds the delete mode, the output flags, then -- source dest', () => {
    const args = rsyncArgs({ host: 'mirror.example.org', port: 8873, module: 'fedora/linux', user: 'fedora', dest: '/srv/m', options: ['-rlptH', '--exclude=b', '--exclude=a', '--exclude=b'], delete: 'delete-delay' }, '/srv/m/fedora');
    expect(args.slice(0, 5)).toEqual(['-rlptH', '--exclude=b', '--exclude=a', '--exclude=b', '--delete-delay']);
    expect(args).toContain('--itemize-changes');
    expect(args).toContain('--stats');
    expect(args.slice(-3)).toEqual(['--', 'rsync://fedora@mirror.example.org:8873/fedora/linux/', '/srv/m/fedora/']);
  });
});

describe('mirror-sync params', () => {
  it('take project, host, module, dest, options, delete; refuse bad options with the flag named', () => {
    const p = parseParams(mirrorSync.params, { project: 'fedora', host: 'rsync.example.org:8873', module: 'fedora-enchilada', dest: '/srv/mirror' });
    expect(p).toMatchObject({ options: ['-rlptH', '--safe-links'], delete: 'none' });
    expect(() => parseParams(mirrorSync.params, { project: 'fedora', host: 'h', module: 'm', dest: '/d', options: ['-a', '--rsh=sh'] })).toThrow(/invalid param "options": --rsh=sh: not allowed \(it runs a program\)/);
    expect(() => parseParams(mirrorSync.params, { project: '../etc', host: 'h', module: 'm', dest: '/d' })).toThrow(/invalid param "project"/);
    expect(() => parseParams(mirrorSync.params, { project: 'p', host: '-oProxyCommand=x', module: 'm', dest: '/d' })).toThrow(/invalid param "host"/);
    expect(() => parseParams(mirrorSync.params, { project: 'p', host: 'h', module: 'm/../../x', dest: '/d' })).toThrow(/invalid param "module"/);
    expect(() => parseParams(mirrorSync.params, { project: 'p', host: 'h', module: 'm', dest: '/d', delete: 'yes' })).toThrow(/invalid param "delete"/);
    expect(() => parseParams(mirrorSync.params, { project: 'p', host: 'h', module: 'm', dest: '/d', password: 'x' })).toThrow(/unknown param "password"/);
  });

  it('the run permission covers rsync only', () => {
    const p = parseParams(mirrorSync.params, { project: 'fedora', host: '[::1]:8873', module: 'm', dest: '/srv/mirror' });
    const spec = typeof mirrorSync.permissions === 'function' ? mirrorSync.permissions({ params: p }) : mirrorSync.permissions;
    expect(spec).toEqual({ run: ['rsync'], net: ['[::1]:8873'], write: ['/srv/mirror/fedora'] });
    expect(splitHost('example.org')).toEqual({ host: 'example.org', port: 873 });
    expect(passwordVariable('my-project.x')).toBe('SLUICE_RSYNC_PASSWORD_MY_PROJECT_X');
  });
});
