/**
 * Partition tables of raw disks: GPT (header CRC checked, entries array CRC checked,
 * 512- and 4096-byte sectors) and MBR (four primary entries, extended partitions with
 * their chain of EBRs for logical partitions numbered from 5, as Linux numbers them).
 * A protective MBR (type 0xee) means GPT.
 *
 * Each partition becomes a `sliceDevice` of the disk, named `<disk>#p<N>`.
 *
 * Bad input: a GPT header or entry array whose CRC does not match, entries outside the
 * disk, an EBR chain that loops or is longer than 256: an `ImageError` naming the disk
 * and the offset. A partition that reaches past the end of the disk is cut to it (a
 * truncated image still shows what it has).
 *
 * @example
 * ```ts
 * const table = await readPartitions(disk);
 * for (const p of table?.partitions ?? []) console.log(p.number, p.type, p.start, p.size);
 * ```
 */
import zlib from 'node:zlib';
import { sliceDevice, type BlockDevice } from '../block-device.ts';
import { ImageError } from '../image-error.ts';

export interface Partition {
  /** 1-based; MBR logical partitions start at 5 */
  readonly number: number;
  /** bytes from the start of the disk */
  readonly start: number;
  readonly size: number;
  /** MBR: the type byte as two hex digits (`83`); GPT: the type GUID */
  readonly type: string;
  /** GPT: the partition's GUID and name */
  readonly uuid?: string;
  readonly name?: string;
  readonly bootable?: boolean;
}

export interface PartitionTable {
  readonly format: 'gpt' | 'mbr';
  readonly sectorSize: number;
  /** GPT disk GUID, or the MBR disk signature as 8 hex digits */
  readonly id: string;
  readonly partitions: readonly Partition[];
}

const EXTENDED = new Set([0x05, 0x0f, 0x85]);
const MAX_LOGICAL = 256;

/** The disk's partition table, or undefined when it has none. */
export async function readPartitions(disk: BlockDevice): Promise<PartitionTable | undefined> {
  if (disk.size < 1024) return undefined;
  const mbr = await disk.read(0, 512);
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) return undefined;
  const entries = [0, 1, 2, 3].map((i) => mbrEntry(mbr, i));
  if (entries.some((e) => e.type === 0xee)) {
    for (const sectorSize of [512, 4096]) {
      if (disk.size < sectorSize * 2) continue;
      const header = await disk.read(sectorSize, 92);
      if (header.toString('latin1', 0, 8) === 'EFI PART') return readGpt(disk, sectorSize, header);
    }
    throw new ImageError(disk.name, 'gpt', 'protective MBR but no GPT header at LBA 1', 512);
  }
  // an MBR must have sane entries: boot flag 0 or 0x80 and something in it
  if (entries.some((e) => e.status !== 0 && e.status !== 0x80) || entries.every((e) => e.type === 0)) return undefined;
  const partitions: Partition[] = [];
  const sector = 512;
  const clip = (start: number, size: number) => Math.max(0, Math.min(size, disk.size - start));
  for (const [i, e] of entries.entries()) {
    if (e.type === 0 || e.sectors === 0) continue;
    const start = e.lba * sector;
    partitions.push({ number: i + 1, start, size: clip(start, e.sectors * sector), type: hex2(e.type), bootable: e.status === 0x80 });
    if (EXTENDED.has(e.type)) {
      // the EBR chain: entry 0 is a logical partition (relative to its EBR), entry 1 the next EBR (relative to the extended partition)
      const seen = new Set<number>();
      let ebr = e.lba;
      let number = 5;
      while (ebr !== 0) {
        if (seen.has(ebr) || seen.size >= MAX_LOGICAL) throw new ImageError(disk.name, 'mbr', `the chain of extended boot records loops or is longer than ${MAX_LOGICAL}`, ebr * sector);
        seen.add(ebr);
        if ((ebr + 1) * sector > disk.size) throw new ImageError(disk.name, 'mbr', 'an extended boot record lies past the end of the disk (truncated?)', ebr * sector);
        const b = await disk.read(ebr * sector, 512);
        if (b[510] !== 0x55 || b[511] !== 0xaa) throw new ImageError(disk.name, 'mbr', 'an extended boot record has no 55aa signature', ebr * sector + 510);
        const logical = mbrEntry(b, 0);
        const next = mbrEntry(b, 1);
        if (logical.type !== 0 && logical.sectors !== 0) {
          const start = (ebr + logical.lba) * sector;
          partitions.push({ number: number++, start, size: clip(start, logical.sectors * sector), type: hex2(logical.type), bootable: logical.status === 0x80 });
        }
        ebr = next.type !== 0 && next.lba !== 0 ? e.lba + next.lba : 0;
      }
    }
  }
  return { format: 'mbr', sectorSize: sector, id: mbr.readUInt32LE(440).toString(16).padStart(8, '0'), partitions };
}

/** A device for each data partition (extended MBR containers left out). */
export function partitionDevices(disk: BlockDevice, table: PartitionTable): { partition: Partition; device: BlockDevice }[] {
  return table.partitions
    .filter((p) => !(table.format === 'mbr' && EXTENDED.has(parseInt(p.type, 16))) && p.size > 0)
    .map((partition) => ({ partition, device: sliceDevice(disk, partition.start, partition.size, `${disk.name}#p${partition.number}`) }));
}

function mbrEntry(b: Buffer, i: number) {
  const p = 446 + i * 16;
  return { status: b[p]!, type: b[p + 4]!, lba: b.readUInt32LE(p + 8), sectors: b.readUInt32LE(p + 12) };
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

async function readGpt(disk: BlockDevice, sectorSize: number, header92: Buffer): Promise<PartitionTable> {
  const at = sectorSize;
  const headerSize = header92.readUInt32LE(12);
  if (headerSize < 92 || headerSize > sectorSize) throw new ImageError(disk.name, 'gpt', `header size ${headerSize} is out of range`, at + 12);
  const header = Buffer.from(await disk.read(at, headerSize));
  const crc = header.readUInt32LE(16);
  header.writeUInt32LE(0, 16);
  if (zlib.crc32(header) !== crc) throw new ImageError(disk.name, 'gpt', 'GPT header CRC32 does not match (corrupt?)', at + 16);
  const entriesLba = Number(header.readBigUInt64LE(72));
  const count = header.readUInt32LE(80);
  const entrySize = header.readUInt32LE(84);
  if (entrySize < 128 || entrySize > 4096 || entrySize % 8 !== 0) throw new ImageError(disk.name, 'gpt', `partition entry size ${entrySize} is out of range`, at + 84);
  if (count > 4096) throw new ImageError(disk.name, 'gpt', `${count} partition entries is absurd`, at + 80);
  const bytes = count * entrySize;
  if (entriesLba * sectorSize + bytes > disk.size) throw new ImageError(disk.name, 'gpt', 'the partition entry array lies past the end of the disk (truncated?)', at + 72);
  const array = await disk.read(entriesLba * sectorSize, bytes);
  if (zlib.crc32(array) !== header.readUInt32LE(88)) throw new ImageError(disk.name, 'gpt', 'partition entry array CRC32 does not match (corrupt?)', entriesLba * sectorSize);
  const partitions: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const e = array.subarray(i * entrySize, (i + 1) * entrySize);
    const type = guid(e.subarray(0, 16));
    if (type === '00000000-0000-0000-0000-000000000000') continue;
    const first = Number(e.readBigUInt64LE(32));
    const last = Number(e.readBigUInt64LE(40));
    if (last < first) throw new ImageError(disk.name, 'gpt', `partition ${i + 1} ends (LBA ${last}) before it starts (LBA ${first})`, entriesLba * sectorSize + i * entrySize + 32);
    const start = first * sectorSize;
    const size = Math.max(0, Math.min((last - first + 1) * sectorSize, disk.size - start));
    const name = e.toString('utf16le', 56, 128).replace(/\0.*$/s, '');
    partitions.push({ number: i + 1, start, size, type, uuid: guid(e.subarray(16, 32)), name });
  }
  return { format: 'gpt', sectorSize, id: guid(header.subarray(56, 72)), partitions };
}

/** A GUID as text: the first three fields are little-endian. */
function guid(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  const le = (s: string) => s.match(/../g)!.reverse().join('');
  return `${le(h.slice(0, 8))}-${le(h.slice(8, 12))}-${le(h.slice(12, 16))}-${h.slice(16, 20)}-${h.slice(20)}`.toUpperCase();
}
