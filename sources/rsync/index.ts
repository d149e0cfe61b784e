/**
 * The `rsync` source and its parts. See rsync.ts.
 *
 * @example
 * ```ts
 * import { rsync } from '../sources/rsync/index.ts';
 * source: (ctx) => rsync(ctx, { host: 'mirror.example.org', module: 'debian', dest: '/srv/mirror/debian' }),
 * ```
 */
export { rsync, rsyncArgs, rsyncUrl, checkRsyncTarget, type RsyncRecord, type RsyncFileRecord, type RsyncSummaryRecord, type RsyncSourceOptions } from './rsync.ts';
export { rsyncExit, type RsyncExit } from './exit-codes.ts';
export { parseItemizeLine, unescapeName, type ItemizedChange, type RsyncChange, type RsyncFileType } from './itemize.ts';
export { RsyncStatsParser, type RsyncStats } from './stats.ts';
export { checkRsyncOptions, refuseRsyncOption, DELETE_MODES, type DeleteMode } from './options.ts';
