/**
 * The members of a tar stream (already decompressed), read with `tar-stream`.
 *
 * `tar-stream` parses ustar, GNU (long names and links) and PAX (long names, sizes,
 * global headers) headers. On top of it this reader:
 * - makes each member a `FileEntry` (see archive-entry.ts for the fields) whose
 *   `content()` follows the lease rule of content-lease.ts: it is read while the
 *   generator waits, and what the consumer leaves unread is skipped before the next
 *   header is read;
 * - expands PAX sparse members (sparse.ts);
 * - reports members it cannot read as error entries naming the member, and goes on
 *   with the next one: an entry type `tar-stream` does not know (most likely an old-GNU
 *   sparse file, type `S`, which `tar --sparse` writes by default; also volume labels and
 *   multi-volume continuations) and PAX 0.0 sparse members. An old-GNU sparse member
 *   with more than four holes also has extension headers that `tar-stream` takes for
 *   data, so the archive cannot be read past it: that is an archive error, after the
 *   member's own error entry;
 * - turns a malformed header or an early end into a `PermanentError` naming the archive,
 *   the member before it and the offset of the header in the tar stream (the
 *   decompressed one, for a compressed tar).
 */
import { once } from 'node:events';
import tar from 'tar-stream';
import { PermanentError, SluiceError } from '../../runtime/errors.ts';
import { ByteReader } from '../decoders/byte-reader.ts';
import { byteStream } from '../decoders/decompress.ts';
import type { EntryType } from '../entry.ts';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, type ArchiveEntry } from './archive-entry.ts';
import type { ArchiveLevel } from './archive-level.ts';
import { attachLease, ContentLease } from './content-lease.ts';
import { normalizeEntryPath } from './entry-path.ts';
import { expandSparse, sparseMember } from './sparse.ts';

/** What tar-stream gives per member (its type definitions leave out `pax` and `offset`). */
interface TarHeader {
  name: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: Date;
  linkname?: string | null;
  type?: string | null;
  pax?: Record<string, string> | null;
}
interface TarMember extends AsyncIterable<Buffer> {
  header: TarHeader;
  /** offset of the member's header in the tar stream */
  offset: number;
}

export async function* tarEntries(input: ByteReader, level: ArchiveLevel): AsyncGenerator<ArchiveEntry, void, undefined> {
  const extract = tar.extract();
  let fed = 0;
  let feedError: unknown;
  let lastHeader = 0;
  let lastMember: string | undefined;

  // feed the tar bytes at the pace tar-stream takes them
  const feeding = (async () => {
    try {
      for (;;) {
        const chunk = await input.read();
        if (!chunk) break;
        fed += chunk.length;
        if (extract.destroyed) return;
        if (!extract.write(chunk)) await once(extract, 'drain');
      }
      extract.end(() => undefined);
    } catch (err) {
      if (feedError === undefined && !extract.destroyed) {
        feedError = err;
        extract.destroy(err as Error);
      }
    }
  })();

  const tarError = (err: unknown): unknown => {
    if (feedError !== undefined) return feedError;
    if (err instanceof SluiceError) return err;
    const message = err instanceof Error ? err.message : String(err);
    const after = lastMember === undefined ? 'at its start' : `after member ${JSON.stringify(lastMember)} (header at byte ${lastHeader})`;
    return new PermanentError(`${level.name}: not a readable tar ${after}: ${message} (${fed} bytes of tar read)`, {
      item: level.name,
      hint: /end of data/i.test(message) ? 'the archive is truncated: fetch it again' : 'the archive is damaged, or not a tar',
      cause: err,
    });
  };

  const members = extract[Symbol.asyncIterator]() as AsyncIterator<TarMember>;
  let finished = false;
  try {
    for (;;) {
      let next: IteratorResult<TarMember>;
      try {
        next = await members.next();
      } catch (err) {
        throw tarError(err);
      }
      if (next.done) break;
      const member = next.value;
      lastHeader = member.offset;
      lastMember = member.header.name;
      level.member = member.header.name;
      const bytes = member[Symbol.asyncIterator]();
      const made = makeEntry(member, bytes, level, tarError);
      if (made) {
        yield made.entry;
        await made.lease.release(level.signal);
      }
      level.budget.check();
      // skip what is left of the member's bytes (all of them if nobody read it)
      try {
        for (;;) if ((await bytes.next()).done) break;
      } catch (err) {
        throw tarError(err);
      }
    }
    await feeding;
    if (feedError !== undefined) throw feedError;
    finished = true;
  } finally {
    if (!finished) {
      extract.destroy();
      await input.cancel();
    }
  }
}

const TYPES: Record<string, { type: EntryType; bits: number }> = {
  file: { type: 'file', bits: S_IFREG },
  'contiguous-file': { type: 'file', bits: S_IFREG },
  link: { type: 'file', bits: S_IFREG },
  directory: { type: 'directory', bits: S_IFDIR },
  symlink: { type: 'symlink', bits: S_IFLNK },
  'character-device': { type: 'other', bits: S_IFCHR },
  'block-device': { type: 'other', bits: S_IFBLK },
  fifo: { type: 'other', bits: S_IFIFO },
};

function makeEntry(
  member: TarMember,
  bytes: AsyncIterator<Buffer>,
  level: ArchiveLevel,
  tarError: (err: unknown) => unknown,
): { entry: ArchiveEntry; lease: ContentLease } | undefined {
  const header = member.header;
  const sparse = sparseMember(header.pax);
  const rawPath = typeof sparse === 'object' && sparse.name ? sparse.name : header.name;
  const rel = normalizeEntryPath(rawPath);
  if (rel === '') return undefined; // the root directory itself ("./")
  const what = `${level.name}!${rel}`;
  const known = header.type ? TYPES[header.type] : undefined;
  const type: EntryType = known?.type ?? 'other';
  const linkname = header.linkname ?? undefined;

  let error: PermanentError | undefined;
  if (!known) {
    error = new PermanentError(
      `${what}: its tar entry type cannot be read (it is not a file, link, symlink, device, directory or FIFO); most likely a GNU sparse file in the old GNU format (type flag S, what \`tar --sparse\` writes by default), else a volume label or a multi-volume part`,
      { item: what, hint: 're-create the archive with `tar --format=pax --sparse`, or extract it with GNU tar' },
    );
  } else if (typeof sparse === 'string') {
    error = new PermanentError(`${what}: ${sparse}`, { item: what, hint: 'extract it with GNU tar, or re-create the archive with `tar --format=pax --sparse`' });
  }

  // the member's bytes as an async iterable that a cancel does not destroy (that would
  // destroy the whole tar stream): what is left is skipped by the loop above instead
  const stored: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      next: () =>
        bytes.next().catch((err: unknown) => {
          throw tarError(err);
        }),
      return: async () => ({ done: true, value: undefined }),
    }),
  };
  const open = (): ReadableStream<Uint8Array> => {
    if (error) throw error;
    if (header.type === 'link') {
      throw new PermanentError(`${what} is a hard link to ${linkname}; its content is that member's, earlier in the archive`, {
        item: what,
        hint: 'check entry.hardLinkTarget and use the content of that entry',
      });
    }
    if (type === 'directory') throw new PermanentError(`${what} is a directory and has no content`, { item: what });
    if (type === 'symlink') throw new PermanentError(`${what} is a symlink to ${linkname}; an archive stores no content for it`, { item: what });
    if (type === 'other') throw new PermanentError(`${what} is a device or FIFO and has no content in the archive`, { item: what });
    const reader = ByteReader.from(stored);
    if (typeof sparse === 'object') {
      return expandSparse(reader, sparse, what, (n) => level.budget.addProduced(n, level.name, rel));
    }
    return byteStream(reader);
  };
  const lease = new ContentLease(what, open);

  const size = type === 'symlink' ? Buffer.byteLength(linkname ?? '') : header.type === 'link' || type !== 'file' ? 0 : typeof sparse === 'object' ? sparse.realSize : header.size ?? 0;
  const mtime = paxTime(header.pax?.mtime) ?? header.mtime ?? new Date(0);
  const entry: ArchiveEntry = {
    path: level.pathPrefix + rel,
    absolutePath: level.absolutePrefix + rel,
    type,
    size,
    mode: ((header.mode ?? 0) & 0o7777) | (known?.bits ?? 0),
    mtime,
    ...(type === 'symlink' && linkname !== undefined ? { linkTarget: linkname } : {}),
    ...(header.type === 'link' && linkname !== undefined ? { hardLinkTarget: level.pathPrefix + normalizeEntryPath(linkname) } : {}),
    archive: level.name,
    format: 'tar',
    rawPath,
    ...(header.uid === undefined ? {} : { uid: header.uid }),
    ...(header.gid === undefined ? {} : { gid: header.gid }),
    ...(error ? { error } : {}),
    content: lease.content,
  };
  return { entry: attachLease(entry, lease), lease };
}

/** PAX times are decimal seconds with an optional fraction. */
function paxTime(text: string | undefined): Date | undefined {
  if (text === undefined || !/^-?\d+(\.\d+)?$/.test(text)) return undefined;
  const ms = Math.round(Number(text) * 1000);
  return Number.isFinite(ms) ? new Date(ms) : undefined;
}
