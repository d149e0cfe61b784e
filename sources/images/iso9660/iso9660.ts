/**
 * ISO9660 reader (ECMA-119) with Rock Ridge, Joliet, El Torito and multi-extent files,
 * over a random-access `BlockDevice`: nothing is mounted, nothing is extracted.
 *
 * Which tree is listed (`prefer`, default `'rockridge'`): the primary volume with Rock
 * Ridge when the ISO has it (POSIX names, modes, owners, symlinks, times, deep
 * directories relocated by CL/RE put back in place), else the Joliet tree (UCS-2
 * names), else the plain ISO9660 names (`;1` versions and a trailing `.` dropped, as
 * mount and 7-Zip show them). `'joliet'` and `'iso9660'` ask for those trees.
 *
 * Entries: directories and files in depth-first order as stored; a multi-extent file
 * (records flagged 0x80 followed by one more record of the same name) is one entry
 * whose content is its extents in order. A file stored in one extent offers `device()`,
 * a slice of the ISO, so a squashfs inside the ISO is read in place. Rock Ridge's
 * `rr_moved` directory stays listed (empty) as Linux shows it; the relocated
 * directories appear at their real place.
 *
 * Bad input: a descriptor set without a primary volume, a root outside the image: an
 * `ImageError` from `openIso9660`. A directory that is corrupt, loops back to one being
 * read, or lies past the end of the image: one error entry with the directory's path
 * (its other entries are read); a file extent past the end: an error entry for that
 * file. Limits (`ImageLimits`) bound depth, entry count and directory size.
 *
 * @example
 * ```ts
 * const iso = await openIso9660(device);
 * console.log(iso.info.volumeId, iso.info.boot);
 * for await (const node of iso.entries()) console.log(node.path, node.size);
 * ```
 */
import { PermanentError } from '../../../runtime/errors.ts';
import { deviceStream, sliceDevice, type BlockDevice, type ByteRange } from '../block-device.ts';
import { ImageError } from '../image-error.ts';
import { DEFAULT_IMAGE_LIMITS, S_IFDIR, S_IFREG, typeOfMode, type ImageLimits, type TreeNode } from '../tree-node.ts';
import { decDate, parseSusp, recordDate, type RockRidge } from './rock-ridge.ts';

const SECTOR = 2048;
const FIRST_DESCRIPTOR = 16;
const MAX_DESCRIPTORS = 64;

export interface BootEntry {
  /** 0 x86 BIOS, 1 PowerPC, 2 Mac, 0xef EFI */
  readonly platform: number;
  readonly bootable: boolean;
  /** 0 no emulation, 1–3 floppy, 4 hard disk */
  readonly media: number;
  readonly loadRba: number;
  readonly sectorCount: number;
}

export interface IsoInfo {
  readonly format: 'iso9660';
  readonly systemId: string;
  readonly volumeId: string;
  readonly volumeSetId: string;
  readonly publisher: string;
  readonly preparer: string;
  readonly application: string;
  readonly copyrightFile: string;
  readonly abstractFile: string;
  readonly bibliographicFile: string;
  readonly created?: Date;
  readonly modified?: Date;
  readonly expires?: Date;
  readonly effective?: Date;
  readonly blockSize: number;
  /** volume space size × block size: what the ISO says it is */
  readonly volumeBytes: number;
  readonly rockRidge: boolean;
  readonly joliet: boolean;
  /** the tree that is listed */
  readonly tree: 'rockridge' | 'joliet' | 'iso9660';
  /** the El Torito boot catalog's entries (empty when not bootable) */
  readonly boot: readonly BootEntry[];
}

export interface Iso9660Options {
  readonly prefer?: 'rockridge' | 'joliet' | 'iso9660';
  readonly limits?: Partial<ImageLimits>;
}

export interface Iso9660 {
  readonly info: IsoInfo;
  entries(): AsyncGenerator<TreeNode, void, undefined>;
}

interface Descriptor {
  readonly type: number;
  readonly at: number;
  readonly bytes: Buffer;
}

/** Whether the device holds an ISO9660 volume (`CD001` in the first descriptor). */
export async function isIso9660(device: BlockDevice): Promise<boolean> {
  if (device.size < FIRST_DESCRIPTOR * SECTOR + 6) return false;
  const head = await device.read(FIRST_DESCRIPTOR * SECTOR, 6);
  return head.toString('latin1', 1, 6) === 'CD001';
}

export async function openIso9660(device: BlockDevice, options: Iso9660Options = {}): Promise<Iso9660> {
  const limits: ImageLimits = { ...DEFAULT_IMAGE_LIMITS, ...options.limits };
  const fail = (problem: string, at?: number) => new ImageError(device.name, 'iso9660', problem, at);
  const descriptors: Descriptor[] = [];
  for (let i = 0; ; i++) {
    if (i >= MAX_DESCRIPTORS) throw fail(`no volume descriptor set terminator within ${MAX_DESCRIPTORS} descriptors`, (FIRST_DESCRIPTOR + i) * SECTOR);
    const at = (FIRST_DESCRIPTOR + i) * SECTOR;
    if (at + SECTOR > device.size) throw fail('the image ends inside the volume descriptors (truncated?)', at);
    const bytes = await device.read(at, SECTOR);
    if (bytes.toString('latin1', 1, 6) !== 'CD001') throw fail(`volume descriptor ${i} has no CD001 signature`, at + 1);
    const type = bytes[0]!;
    if (type === 255) break;
    descriptors.push({ type, at, bytes });
  }
  const pvd = descriptors.find((d) => d.type === 1);
  if (!pvd) throw fail('no primary volume descriptor');
  const joliet = descriptors.find((d) => d.type === 2 && isJolietEscape(d.bytes));
  const blockSize = pvd.bytes.readUInt16LE(128);
  if (blockSize !== 512 && blockSize !== 1024 && blockSize !== 2048) throw fail(`logical block size ${blockSize} is not 512, 1024 or 2048`, pvd.at + 128);
  const volumeBlocks = pvd.bytes.readUInt32LE(80);

  const text = (d: Descriptor, from: number, to: number, ucs2: boolean) => (ucs2 ? ucs2Text(d.bytes.subarray(from, to)) : d.bytes.toString('latin1', from, to)).replace(/[\s\0]+$/, '');
  const boot = await readBootCatalog(device, descriptors, blockSize);

  const pvdRoot = parseRecord(pvd.bytes, 156, pvd.at, device.name);
  // Rock Ridge: the SP entry in the root's "." record
  let rockRidge = false;
  let spSkip = 0;
  {
    const dotSector = await readExtent(device, pvdRoot.extent * blockSize, Math.min(pvdRoot.size, blockSize), 'root directory');
    if (dotSector.length >= 34 && dotSector[0]! >= 34) {
      const dot = parseRecord(dotSector, 0, pvdRoot.extent * blockSize, device.name);
      if (dot.susp.length >= 7 && dot.susp.toString('latin1', 0, 2) === 'SP') {
        const rr = await parseSusp(dot.susp, device, blockSize, dot.suspAt).catch(() => ({}) as RockRidge);
        if (rr.spSkip !== undefined) {
          spSkip = rr.spSkip;
          rockRidge = rr.rockRidge === true;
        }
      }
    }
  }
  const prefer = options.prefer ?? 'rockridge';
  const tree: IsoInfo['tree'] =
    prefer === 'iso9660' ? 'iso9660'
    : prefer === 'joliet' ? (joliet ? 'joliet' : rockRidge ? 'rockridge' : 'iso9660')
    : rockRidge ? 'rockridge' : joliet ? 'joliet' : 'iso9660';
  const root = tree === 'joliet' ? parseRecord(joliet!.bytes, 156, joliet!.at, device.name) : pvdRoot;

  const info: IsoInfo = {
    format: 'iso9660',
    systemId: text(pvd, 8, 40, false),
    volumeId: text(pvd, 40, 72, false),
    volumeSetId: text(pvd, 190, 318, false),
    publisher: text(pvd, 318, 446, false),
    preparer: text(pvd, 446, 574, false),
    application: text(pvd, 574, 702, false),
    copyrightFile: text(pvd, 702, 739, false),
    abstractFile: text(pvd, 739, 776, false),
    bibliographicFile: text(pvd, 776, 813, false),
    ...optionalDate('created', decDate(pvd.bytes.subarray(813, 830))),
    ...optionalDate('modified', decDate(pvd.bytes.subarray(830, 847))),
    ...optionalDate('expires', decDate(pvd.bytes.subarray(847, 864))),
    ...optionalDate('effective', decDate(pvd.bytes.subarray(864, 881))),
    blockSize,
    volumeBytes: volumeBlocks * blockSize,
    rockRidge,
    joliet: joliet !== undefined,
    tree,
    boot,
  };
  const walker = new Walker(device, blockSize, tree, tree === 'rockridge' ? spSkip : -1, limits);
  return { info, entries: () => walker.walk(root) };
}

function optionalDate<K extends string>(key: K, date: Date | undefined): { [P in K]?: Date } {
  return (date ? { [key]: date } : {}) as { [P in K]?: Date };
}

function isJolietEscape(b: Buffer): boolean {
  // escape sequences at 88: %/@ (level 1), %/C (2), %/E (3)
  return b[88] === 0x25 && b[89] === 0x2f && (b[90] === 0x40 || b[90] === 0x43 || b[90] === 0x45);
}

function ucs2Text(b: Uint8Array): string {
  const n = b.length & ~1;
  const swapped = Buffer.alloc(n);
  for (let i = 0; i < n; i += 2) {
    swapped[i] = b[i + 1]!;
    swapped[i + 1] = b[i]!;
  }
  return swapped.toString('utf16le');
}

interface DirRecord {
  readonly length: number;
  readonly extent: number;
  readonly size: number;
  readonly date: Date;
  readonly flags: number;
  readonly name: Buffer;
  readonly susp: Buffer;
  readonly suspAt: number;
}

function parseRecord(buf: Buffer, pos: number, base: number, image: string): DirRecord {
  const length = buf[pos]!;
  const nameLength = buf[pos + 32] ?? 0;
  if (length < 34 || pos + length > buf.length || 33 + nameLength > length) {
    throw new ImageError(image, 'iso9660', `malformed directory record (length ${length}, name length ${nameLength})`, base + pos);
  }
  const suspStart = 33 + nameLength + (nameLength % 2 === 0 ? 1 : 0);
  return {
    length,
    extent: buf.readUInt32LE(pos + 2),
    size: buf.readUInt32LE(pos + 10),
    date: recordDate(buf.subarray(pos + 18, pos + 25)),
    flags: buf[pos + 25]!,
    name: buf.subarray(pos + 33, pos + 33 + nameLength),
    susp: buf.subarray(pos + Math.min(suspStart, length), pos + length),
    suspAt: base + pos + Math.min(suspStart, length),
  };
}

async function readExtent(device: BlockDevice, at: number, size: number, what: string): Promise<Buffer> {
  if (at + size > device.size) {
    throw new ImageError(device.name, 'iso9660', `${what} (${size} bytes) lies past the end of the ${device.size}-byte image (truncated?)`, at);
  }
  return device.read(at, size);
}

async function readBootCatalog(device: BlockDevice, descriptors: Descriptor[], blockSize: number): Promise<BootEntry[]> {
  const record = descriptors.find((d) => d.type === 0 && d.bytes.toString('latin1', 7, 30).startsWith('EL TORITO SPECIFICATION'));
  if (!record) return [];
  const at = record.bytes.readUInt32LE(0x47) * blockSize;
  const catalog = await readExtent(device, at, SECTOR, 'El Torito boot catalog');
  if (catalog[0] !== 1 || catalog[30] !== 0x55 || catalog[31] !== 0xaa) {
    throw new ImageError(device.name, 'iso9660', 'El Torito boot catalog has no valid validation entry', at);
  }
  let sum = 0;
  for (let i = 0; i < 32; i += 2) sum = (sum + catalog.readUInt16LE(i)) & 0xffff;
  if (sum !== 0) throw new ImageError(device.name, 'iso9660', 'El Torito validation entry checksum does not add up to 0', at);
  const entries: BootEntry[] = [];
  const entry = (p: number, platform: number): BootEntry => ({
    platform,
    bootable: catalog[p] === 0x88,
    media: catalog[p + 1]! & 0x0f,
    sectorCount: catalog.readUInt16LE(p + 6),
    loadRba: catalog.readUInt32LE(p + 8),
  });
  entries.push(entry(32, catalog[1]!));
  // section headers (0x90 more follow, 0x91 last), each followed by its entries
  let p = 64;
  while (p + 32 <= catalog.length && (catalog[p] === 0x90 || catalog[p] === 0x91)) {
    const last = catalog[p] === 0x91;
    const platform = catalog[p + 1]!;
    const count = catalog.readUInt16LE(p + 2);
    p += 32;
    for (let i = 0; i < count && p + 32 <= catalog.length; i++, p += 32) {
      if (catalog[p] === 0x88 || catalog[p] === 0x00) entries.push(entry(p, platform));
    }
    if (last) break;
  }
  return entries;
}

interface PendingDir {
  readonly path: string;
  readonly extent: number;
  readonly size: number;
  readonly depth: number;
}

class Walker {
  private count = 0;
  constructor(
    private readonly device: BlockDevice,
    private readonly blockSize: number,
    private readonly tree: IsoInfo['tree'],
    /** SUSP bytes to skip in each record's system use area; -1: do not read SUSP */
    private readonly spSkip: number,
    private readonly limits: ImageLimits,
  ) {}

  async *walk(root: DirRecord): AsyncGenerator<TreeNode, void, undefined> {
    const stack: PendingDir[] = [{ path: '', extent: root.extent, size: root.size, depth: 0 }];
    const seen = new Set<number>();
    while (stack.length > 0) {
      const dir = stack.pop()!;
      if (seen.has(dir.extent)) {
        yield this.errorNode(dir.path, new ImageError(this.device.name, 'iso9660', `directory ${dir.path || '/'} loops back to a directory already listed`, dir.extent * this.blockSize));
        continue;
      }
      seen.add(dir.extent);
      let children: TreeNode[];
      let subdirs: PendingDir[];
      try {
        ({ children, subdirs } = await this.readDirectory(dir));
      } catch (err) {
        if (!(err instanceof PermanentError)) throw err;
        yield this.errorNode(dir.path, err);
        continue;
      }
      for (const child of children) {
        if (++this.count > this.limits.maxEntries) {
          throw new ImageError(this.device.name, 'iso9660', `more than ${this.limits.maxEntries} entries (limits.maxEntries)`);
        }
        yield child;
      }
      // depth first, in stored order
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
    }
  }

  private errorNode(path: string, error: PermanentError): TreeNode {
    return { path, type: 'directory', size: 0, mode: S_IFDIR | 0o555, mtime: new Date(0), error };
  }

  /** The entries of one directory, and the directories to descend into (each already yielded as an entry). */
  private async readDirectory(dir: PendingDir): Promise<{ children: TreeNode[]; subdirs: PendingDir[] }> {
    const at = dir.extent * this.blockSize;
    if (dir.size > this.limits.maxDirectoryBytes) {
      throw new ImageError(this.device.name, 'iso9660', `directory ${dir.path || '/'} claims ${dir.size} bytes, more than limits.maxDirectoryBytes`, at);
    }
    const buf = await readExtent(this.device, at, dir.size, `directory ${dir.path || '/'}`);
    const children: TreeNode[] = [];
    const subdirs: PendingDir[] = [];
    let pos = 0;
    let index = 0;
    let parts: DirRecord[] = [];
    while (pos < buf.length) {
      if (buf[pos] === 0) {
        // records do not cross sector boundaries: the rest of this sector is padding
        pos = (Math.floor(pos / SECTOR) + 1) * SECTOR;
        continue;
      }
      const record = parseRecord(buf, pos, at, this.device.name);
      pos += record.length;
      if (index++ < 2 && record.name.length === 1 && record.name[0]! <= 1) continue; // "." and ".."
      if (record.flags & 0x80 && !(record.flags & 0x02)) {
        parts.push(record); // multi-extent: more records of this file follow
        continue;
      }
      const all = parts.length > 0 ? [...parts, record] : [record];
      parts = [];
      const node = await this.node(dir, all);
      if (!node) continue;
      children.push(node.entry);
      if (node.subdir) subdirs.push(node.subdir);
    }
    if (parts.length > 0) {
      // the directory ends inside a multi-extent file: take the extents there are
      const node = await this.node(dir, parts);
      if (node) children.push(node.entry);
    }
    return { children, subdirs };
  }

  private async node(dir: PendingDir, records: DirRecord[]): Promise<{ entry: TreeNode; subdir?: PendingDir } | undefined> {
    const last = records[records.length - 1]!;
    const first = records[0]!;
    let rr: RockRidge = {};
    if (this.spSkip >= 0) {
      rr = await parseSusp(first.susp.subarray(Math.min(this.spSkip, first.susp.length)), this.device, this.blockSize, first.suspAt + this.spSkip);
      if (rr.relocated) return undefined; // listed where its CL record is
    }
    const name = rr.name ?? this.plainName(first.name);
    if (name === '' || name === '.' || name === '..' || name.includes('/')) {
      throw new ImageError(this.device.name, 'iso9660', `directory ${dir.path || '/'} has an entry with an unusable name ${JSON.stringify(name)}`, first.suspAt);
    }
    const path = dir.path ? `${dir.path}/${name}` : name;
    let isDir = (last.flags & 0x02) !== 0;
    let extent = first.extent;
    let size = records.reduce((n, r) => n + r.size, 0);
    if (rr.childLink !== undefined) {
      // a relocated deep directory: its real records are at the CL block
      isDir = true;
      extent = rr.childLink;
      const dot = await readExtent(this.device, extent * this.blockSize, 34, `relocated directory ${path}`);
      size = dot.readUInt32LE(10);
    }
    const mode = rr.mode ?? (isDir ? S_IFDIR | 0o555 : S_IFREG | 0o444);
    const type = rr.mode !== undefined ? typeOfMode(rr.mode) : isDir ? 'directory' : 'file';
    const common = {
      path,
      mode,
      mtime: rr.mtime ?? first.date,
      ...(rr.uid !== undefined ? { uid: rr.uid, gid: rr.gid ?? 0 } : {}),
      ...(rr.nlink !== undefined ? { nlink: rr.nlink } : {}),
      ...(rr.inode !== undefined ? { inode: rr.inode } : {}),
    };
    if (type === 'directory') {
      if (dir.depth + 1 > this.limits.maxDepth) {
        return { entry: { ...common, type, size: 0, error: new ImageError(this.device.name, 'iso9660', `directory ${path} is nested deeper than ${this.limits.maxDepth} levels (limits.maxDepth)`, extent * this.blockSize) } };
      }
      return { entry: { ...common, type, size: 0 }, subdir: { path, extent, size, depth: dir.depth + 1 } };
    }
    if (type === 'symlink') {
      const target = rr.linkTarget ?? '';
      return { entry: { ...common, type, size: Buffer.byteLength(target), linkTarget: target } };
    }
    if (type === 'other') return { entry: { ...common, type, size: 0 } };
    const ranges: ByteRange[] = records.map((r) => ({ offset: r.extent * this.blockSize, length: r.size }));
    const bad = ranges.find((r) => r.offset + r.length > this.device.size);
    if (bad) {
      return { entry: { ...common, type, size, error: new ImageError(this.device.name, 'iso9660', `file ${path} (${bad.length} bytes at ${bad.offset}) lies past the end of the ${this.device.size}-byte image (truncated?)`, bad.offset) } };
    }
    if (rr.zisofs) {
      return { entry: { ...common, type, size, error: new ImageError(this.device.name, 'iso9660', `file ${path} is zisofs-compressed, which this reader does not decode`, ranges[0]!.offset, { hint: 'rebuild the ISO without zisofs (xorriso -zisofs off), or skip the file' }) } };
    }
    const device = this.device;
    const contiguous = ranges.every((r, i) => i === 0 || r.offset === ranges[i - 1]!.offset + ranges[i - 1]!.length);
    return {
      entry: {
        ...common,
        type,
        size,
        open: () => deviceStream(device, ranges),
        ...(contiguous ? { device: () => sliceDevice(device, ranges[0]!.offset, size, `${device.name}!${path}`) } : {}),
      },
    };
  }

  private plainName(raw: Buffer): string {
    let name = this.tree === 'joliet' ? ucs2Text(raw) : raw.toString('latin1');
    const semi = name.lastIndexOf(';');
    if (semi > 0) name = name.slice(0, semi);
    if (name.endsWith('.') && name.length > 1) name = name.slice(0, -1);
    return name;
  }
}
