export { archive, type ArchiveOptions } from './archive.ts';
export { archiveEntries, archiveFileEntries, probeArchive, type ArchiveEntriesOptions } from './archive-entries.ts';
export type { ArchiveEntry, ArchiveFormat } from './archive-entry.ts';
export { releaseEntryContent } from './content-lease.ts';
export { descendArchive, type DescendOptions } from './descend-archive.ts';
export { detectArchive } from './detect-archive.ts';
export { normalizeEntryPath, safeJoin } from './entry-path.ts';
export { ArchiveLimitError, DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from './limits.ts';
