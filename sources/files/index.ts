export { files, type FilesOptions } from './files.ts';
export { hashStream } from './hash-stream.ts';
export type { EntryType, FileEntry } from '../entry.ts';
