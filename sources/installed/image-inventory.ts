/**
 * Source: everything the ALT loaders record about one image — an ISO, a raw or
 * partitioned disk (`.img`, `.img.xz`), a qcow2, or a tar of a root file system — as
 * items of four kinds:
 *
 * - `progress`: the first pass, the image's sha256 and md5, in 64 MiB steps (no records;
 *   they carry the bytes, so the progress line shows bytes read of the outer image); the
 *   last one carries the sha256;
 * - `entry`: one file, directory, link … of any layer (the outer image and each nested
 *   image: squashfs `live`, `rescue`, `altinst` of an ISO; partitions of a disk), with
 *   the bytes read from the outer image since the previous item;
 * - `packages`: the installed packages of one layer, from its rpmdb (Berkeley DB or
 *   sqlite) or dpkg status;
 * - `summary`, last: the image's size, sha256, md5, kind, its layers (format, volume
 *   metadata, os-release, where the package list came from, or `files` when the layer
 *   has no database and its file inventory stands for it) and `.disk/info`.
 *
 * Entries are held (their `content()` readable) until their item is acknowledged.
 *
 * @example
 * ```ts
 * source: (ctx) => imageInventory(ctx, { path: ctx.params.path }),
 * ```
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { RunContext } from '../../runtime/context.ts';
import { PermanentError } from '../../runtime/errors.ts';
import { item, type TaggedItem } from '../../runtime/pipeline.ts';
import { archiveFileEntries } from '../archive/archive-entries.ts';
import type { ArchiveEntry } from '../archive/archive-entry.ts';
import { detectArchive } from '../archive/detect-archive.ts';
import { ByteReader } from '../decoders/byte-reader.ts';
import { DECODERS } from '../decoders/decompress.ts';
import { detectCompression } from '../decoders/detect.ts';
import { deviceStream, FileDevice, type BlockDevice } from '../images/block-device.ts';
import { detectImage, holdEntry, imageEntries } from '../images/image-entries.ts';
import type { ImageEntry, LayerInfo } from '../images/image-entry.ts';
import { DiskBudget, spool } from '../images/spool.ts';
import { installedKind, readInstalled, type InstalledPackage } from './installed-packages.ts';
import { parseOsRelease, type OsRelease } from './os-release.ts';

export type ImageKindName = 'iso' | 'img' | 'qcow2' | 'tar';

export interface LayerSummary {
  readonly layer: string;
  readonly format: string;
  readonly size: number;
  readonly info: Readonly<Record<string, unknown>>;
  osRelease?: OsRelease;
  /** where the layer's package list comes from: its database, or its file inventory when it has none */
  packages?: 'rpmdb-sqlite' | 'rpmdb-bdb' | 'dpkg-status' | 'files';
  packageCount?: number;
}

export interface ImageSummary {
  readonly path: string;
  readonly kind: ImageKindName;
  readonly size: number;
  readonly sha256: string;
  readonly md5: string;
  readonly layers: LayerSummary[];
  readonly diskInfo?: string;
}

export type InventoryItem =
  | { readonly kind: 'progress'; readonly sha256?: string }
  | { readonly kind: 'entry'; readonly entry: ImageEntry }
  | { readonly kind: 'packages'; readonly layer: string; readonly dbPath: string; readonly format: string; readonly packages: readonly InstalledPackage[] }
  | { readonly kind: 'summary'; readonly image: ImageSummary };

export interface ImageInventoryOptions {
  readonly path: string;
  /** what the image is; found from its bytes when unset */
  readonly kind?: ImageKindName;
  readonly tempDir?: string;
  readonly spoolBudget?: number;
  /** hash the whole image first (sha256, md5); default true */
  readonly hashImage?: boolean;
}

const STEP = 64 * 2 ** 20;

export async function* imageInventory(ctx: RunContext, options: ImageInventoryOptions): AsyncGenerator<TaggedItem<InventoryItem>, void, undefined> {
  const file = options.path;
  const device = await FileDevice.open(ctx, file);
  let sha256 = '';
  let md5 = '';
  let kind: ImageKindName;
  try {
    if (options.hashImage ?? true) {
      const s = createHash('sha256');
      const m = createHash('md5');
      let at = 0;
      while (at < device.size) {
        ctx.signal.throwIfAborted();
        const n = Math.min(4 * 2 ** 20, device.size - at);
        const chunk = await device.read(at, n);
        s.update(chunk);
        m.update(chunk);
        at += n;
        if (at % STEP === 0 && at < device.size) yield item(`${file}#hash@${at}`, { kind: 'progress' }, { bytes: STEP });
      }
      sha256 = s.digest('hex');
      md5 = m.digest('hex');
      yield item(`${file}#sha256`, { kind: 'progress', sha256 }, { bytes: device.size % STEP || (device.size ? STEP : 0) });
    }
    kind = options.kind ?? (await kindOf(device));
  } catch (err) {
    await device.close();
    throw err;
  }
  device.bytesRead = 0;

  const layers = new Map<string, LayerSummary>();
  const budget = new DiskBudget(options.spoolBudget);
  let diskInfo: string | undefined;
  let counted = 0;
  const delta = () => {
    const d = device.bytesRead - counted;
    counted = device.bytesRead;
    return d;
  };

  const installed = async function* (entry: ImageEntry, open: () => Promise<BlockDevice>): AsyncGenerator<TaggedItem<InventoryItem>> {
    const what = installedKind(entry.innerPath);
    if (!what || entry.type !== 'file' || entry.error) return;
    const layer = layers.get(entry.layer);
    const dev = await open();
    try {
      if (what === 'os-release') {
        if (layer && dev.size <= 65536) layer.osRelease = parseOsRelease((await dev.read(0, dev.size)).toString('utf8'));
        return;
      }
      const { packages } = await readInstalled(what, dev);
      if (layer && what !== 'rpmdb-ndb') {
        layer.packages = what;
        layer.packageCount = (layer.packageCount ?? 0) + packages.length;
      }
      yield item(`${file}!${entry.path}#packages`, { kind: 'packages', layer: entry.layer, dbPath: entry.innerPath, format: what, packages }, { bytes: delta() });
    } catch (err) {
      if (!(err instanceof PermanentError)) throw err;
      yield item(`${file}!${entry.path}#packages`, { kind: 'packages', layer: entry.layer, dbPath: entry.innerPath, format: what, packages: [] }, { error: err });
    } finally {
      await dev.close();
    }
  };

  if (kind === 'tar') {
    await device.close();
    layers.set('', { layer: '', format: 'tar', size: device.size, info: {} });
    for await (const a of archiveFileEntries(ctx, file, { name: file })) {
      const entry = fromArchive(a, file);
      const what = installedKind(entry.innerPath);
      if (what && entry.type === 'file' && !entry.error) {
        // read it once here (tar content can be read once), hand the same bytes on
        const spooled = await spool(a.content(), { name: `${file}!${entry.path}`, budget, ...(options.tempDir ? { tempDir: options.tempDir } : {}), signal: ctx.signal });
        yield* installed(entry, async () => ({ ...spooled, close: async () => {} }));
        const again: ImageEntry = { ...entry, content: () => deviceStream(spooled, [{ offset: 0, length: spooled.size }]) };
        const done = () => spooled.close();
        yield item(`${file}!${entry.path}`, { kind: 'entry', entry: again }, { bytes: entry.size, ack: done, nack: done });
        continue;
      }
      yield item(`${file}!${entry.path}`, { kind: 'entry', entry }, entry.error ? { error: entry.error } : { bytes: entry.type === 'file' ? entry.size : 0 });
    }
  } else {
    const entries = imageEntries(ctx, device, {
      name: file,
      path: file,
      ...(options.tempDir ? { tempDir: options.tempDir } : {}),
      ...(options.spoolBudget ? { spoolBudget: options.spoolBudget } : {}),
      signal: ctx.signal,
      onLayer: (l: LayerInfo) => {
        const previous = layers.get(l.layer);
        // a wrapper (qcow2, xz) is replaced by what it holds; keep the wrapper's own info
        layers.set(l.layer, { ...l, info: previous ? { ...l.info, container: { format: previous.format, ...previous.info } } : l.info });
      },
    });
    for await (const entry of entries) {
      if (entry.layer === '' && entry.innerPath === '.disk/info' && entry.type === 'file' && entry.size <= 65536 && !entry.error) {
        diskInfo = (await readAll(entry.content())).toString('utf8').trim();
      }
      yield* installed(entry, async () => entry.device?.() ?? (await spool(entry.content(), { name: `${file}!${entry.path}`, budget, ...(options.tempDir ? { tempDir: options.tempDir } : {}), signal: ctx.signal, expectedSize: entry.size })));
      if (entry.error) {
        yield item(`${file}!${entry.path}`, { kind: 'entry', entry }, { error: entry.error, bytes: delta() });
        continue;
      }
      const release = holdEntry(entry);
      yield item(`${file}!${entry.path}`, { kind: 'entry', entry }, { bytes: delta(), ack: release, nack: release });
    }
  }
  for (const l of layers.values()) if (!l.packages && isTreeFormat(l.format)) l.packages = 'files';
  const summary: ImageSummary = { path: file, kind, size: device.size, sha256, md5, layers: [...layers.values()], ...(diskInfo !== undefined ? { diskInfo } : {}) };
  yield item(`${file}#summary`, { kind: 'summary', image: summary }, { bytes: delta() });
}

function isTreeFormat(format: string): boolean {
  return ['iso9660', 'squashfs', 'ext2', 'ext3', 'ext4', 'tar'].includes(format);
}

async function kindOf(device: BlockDevice): Promise<ImageKindName> {
  const found = await detectImage(device);
  if (found === 'iso9660') return 'iso';
  if (found === 'qcow2') return 'qcow2';
  const head = await device.read(0, Math.min(512, device.size));
  if (found === 'compressed') {
    const compression = detectCompression(head)!;
    const inner = ByteReader.from(DECODERS[compression](deviceStream(device, [{ offset: 0, length: device.size }]), { name: device.name, chunkSize: 4096 }));
    const first = await inner.peek(512).catch(() => new Uint8Array());
    await inner.cancel();
    return detectArchive(first) === 'tar' ? 'tar' : 'img';
  }
  if (found) return 'img';
  if (detectArchive(head) === 'tar') return 'tar';
  return 'img';
}

function fromArchive(a: ArchiveEntry, file: string): ImageEntry {
  return {
    path: a.path,
    absolutePath: `${path.resolve(file)}!${a.path}`,
    type: a.type,
    size: a.size,
    mode: a.mode,
    mtime: a.mtime,
    ...(a.linkTarget !== undefined ? { linkTarget: a.linkTarget } : {}),
    image: file,
    layer: '',
    innerPath: a.path,
    format: 'tar',
    ...(a.uid !== undefined ? { uid: a.uid } : {}),
    ...(a.gid !== undefined ? { gid: a.gid } : {}),
    ...(a.error ? { error: a.error } : {}),
    ...(a.hardLinkTarget !== undefined ? { linkTarget: a.hardLinkTarget } : {}),
    content: a.content,
  };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream as unknown as AsyncIterable<Uint8Array>) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

