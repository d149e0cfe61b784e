/**
 * The totals `rsync --stats` prints at the end of a run, read into numbers. Numbers may
 * carry thousands separators (`1,234,567`); sluice never passes `-h`, so sizes are
 * plain bytes. Lines that are missing (an older rsync, a run that failed early) stay
 * undefined.
 *
 * @example
 * ```ts
 * const stats = new RsyncStatsParser();
 * for (const line of output) stats.line(line);
 * stats.result(); // { files: 5, regularFilesTransferred: 2, totalFileSize: 19, bytesReceived: 243, … }
 * ```
 */

export interface RsyncStats {
  /** Number of files (all kinds) */
  files?: number;
  createdFiles?: number;
  deletedFiles?: number;
  regularFilesTransferred?: number;
  totalFileSize?: number;
  totalTransferredFileSize?: number;
  literalData?: number;
  matchedData?: number;
  fileListSize?: number;
  bytesSent?: number;
  bytesReceived?: number;
  speedup?: number;
}

const FIELDS: ReadonlyArray<[RegExp, keyof RsyncStats]> = [
  [/^Number of files: ([\d,]+)/, 'files'],
  [/^Number of created files: ([\d,]+)/, 'createdFiles'],
  [/^Number of deleted files: ([\d,]+)/, 'deletedFiles'],
  [/^Number of (?:regular )?files transferred: ([\d,]+)/, 'regularFilesTransferred'],
  [/^Total file size: ([\d,]+)/, 'totalFileSize'],
  [/^Total transferred file size: ([\d,]+)/, 'totalTransferredFileSize'],
  [/^Literal data: ([\d,]+)/, 'literalData'],
  [/^Matched data: ([\d,]+)/, 'matchedData'],
  [/^File list size: ([\d,]+)/, 'fileListSize'],
  [/^Total bytes sent: ([\d,]+)/, 'bytesSent'],
  [/^Total bytes received: ([\d,]+)/, 'bytesReceived'],
  [/^total size is [\d,]+\s+speedup is ([\d.,]+)/, 'speedup'],
];

export class RsyncStatsParser {
  private readonly stats: RsyncStats = {};

  /** Feed one output line; true when it was a stats line. */
  line(text: string): boolean {
    for (const [re, key] of FIELDS) {
      const m = re.exec(text);
      if (m) {
        this.stats[key] = key === 'speedup' ? Number(m[1]!.replace(/,/g, '')) : Number(m[1]!.replace(/,/g, ''));
        return true;
      }
    }
    return false;
  }

  result(): RsyncStats {
    return { ...this.stats };
  }
}
