/**
 * The System Use Sharing Protocol (SUSP, IEEE P1281) entries of an ISO9660 directory
 * record and the Rock Ridge (IEEE P1282) ones among them: PX (mode, links, uid, gid,
 * inode), NM (the name), SL (symlink target), TF (times), CL/PL/RE (deep directory
 * relocation), PN (device numbers, ignored), SP/ER/RR (presence), CE (continuation in
 * another block), ST (stop). ZF (zisofs compression) is reported so the file becomes an
 * error entry instead of yielding compressed bytes.
 *
 * Against hostile input: continuation areas are followed at most `MAX_CONTINUATIONS`
 * times and `MAX_SUSP_BYTES` in all for one record; an entry whose length runs past
 * its area ends the parse with an error.
 */
import type { BlockDevice } from '../block-device.ts';
import { ImageError } from '../image-error.ts';

export const MAX_CONTINUATIONS = 32;
export const MAX_SUSP_BYTES = 256 * 1024;

export interface RockRidge {
  name?: string;
  mode?: number;
  nlink?: number;
  uid?: number;
  gid?: number;
  inode?: number;
  linkTarget?: string;
  mtime?: Date;
  /** CL: this record stands for a directory relocated to this block */
  childLink?: number;
  /** RE: this record is the relocated directory itself (listed where its CL is) */
  relocated?: boolean;
  /** ZF: zisofs-compressed content */
  zisofs?: boolean;
  /** SP seen (in the root's "." record): SUSP is in use, with this many bytes to skip */
  spSkip?: number;
  /** RR/ER/PX/NM seen: Rock Ridge is in use */
  rockRidge?: boolean;
}

/** Parse the SUSP area of one record, following CE continuations through `device`. */
export async function parseSusp(area: Buffer, device: BlockDevice, blockSize: number, where: number): Promise<RockRidge> {
  const rr: RockRidge = {};
  let name = '';
  let nameDone = false;
  let components: string[] | undefined;
  let componentOpen = false;
  let current: Buffer | undefined = area;
  let currentAt = where;
  let hops = 0;
  let total = area.length;
  while (current) {
    let ce: { block: number; offset: number; length: number } | undefined;
    let pos = 0;
    while (pos + 4 <= current.length) {
      const sig = current.toString('latin1', pos, pos + 2);
      const len = current[pos + 2]!;
      if (len < 4) break; // padding or garbage: the area ends here
      if (pos + len > current.length) {
        throw new ImageError(device.name, 'iso9660', `SUSP entry ${JSON.stringify(sig)} of ${len} bytes runs past its system use area`, currentAt + pos);
      }
      const e = current.subarray(pos, pos + len);
      switch (sig) {
        case 'SP':
          if (len >= 7 && e[4] === 0xbe && e[5] === 0xef) rr.spSkip = e[6]!;
          break;
        case 'RR':
        case 'ER':
          rr.rockRidge = true;
          break;
        case 'PX':
          rr.rockRidge = true;
          if (len >= 36) {
            rr.mode = e.readUInt32LE(4);
            rr.nlink = e.readUInt32LE(12);
            rr.uid = e.readUInt32LE(20);
            rr.gid = e.readUInt32LE(28);
            if (len >= 44) rr.inode = e.readUInt32LE(36);
          }
          break;
        case 'NM': {
          rr.rockRidge = true;
          if (nameDone || len < 5) break;
          const flags = e[4]!;
          if (flags & 0x02) name = '.';
          else if (flags & 0x04) name = '..';
          else name += e.toString('utf8', 5);
          if (!(flags & 0x01)) nameDone = true;
          rr.name = name;
          break;
        }
        case 'SL': {
          if (len < 5) break;
          components ??= [];
          let p = 5;
          while (p + 2 <= len) {
            const cflags = e[p]!;
            const clen = e[p + 1]!;
            if (p + 2 + clen > len) {
              throw new ImageError(device.name, 'iso9660', 'SL component runs past its entry', currentAt + pos + p);
            }
            let text: string;
            if (cflags & 0x02) text = '.';
            else if (cflags & 0x04) text = '..';
            else if (cflags & 0x08) text = '';
            else text = e.toString('utf8', p + 2, p + 2 + clen);
            if (componentOpen && components.length > 0) components[components.length - 1] += text;
            else components.push(cflags & 0x08 ? '' : text);
            componentOpen = (cflags & 0x01) !== 0;
            p += 2 + clen;
          }
          rr.linkTarget = components.length === 1 && components[0] === '' ? '/' : components.join('/');
          break;
        }
        case 'TF': {
          if (len < 5) break;
          const flags = e[4]!;
          const long = (flags & 0x80) !== 0;
          const size = long ? 17 : 7;
          let p = 5;
          for (let bit = 0; bit < 7; bit++) {
            if (!(flags & (1 << bit))) continue;
            if (p + size > len) break;
            if (bit === 1) rr.mtime = long ? decDate(e.subarray(p, p + 17)) : recordDate(e.subarray(p, p + 7));
            p += size;
          }
          break;
        }
        case 'CL':
          if (len >= 12) rr.childLink = e.readUInt32LE(4);
          break;
        case 'RE':
          rr.relocated = true;
          break;
        case 'ZF':
          rr.zisofs = true;
          break;
        case 'CE':
          if (len >= 28) ce = { block: e.readUInt32LE(4), offset: e.readUInt32LE(12), length: e.readUInt32LE(20) };
          break;
        case 'ST':
          pos = current.length;
          continue;
      }
      pos += len;
    }
    current = undefined;
    if (ce) {
      hops++;
      total += ce.length;
      if (hops > MAX_CONTINUATIONS || total > MAX_SUSP_BYTES) {
        throw new ImageError(device.name, 'iso9660', `too many SUSP continuation areas (CE) for one record (a loop?)`, where);
      }
      currentAt = ce.block * blockSize + ce.offset;
      current = await device.read(currentAt, ce.length);
    }
  }
  return rr;
}

/** The 7-byte date of a directory record (and short TF times): years since 1900, …, GMT offset in 15 min. */
export function recordDate(b: Uint8Array): Date {
  const offset = (b[6]! << 24) >> 24;
  const ms = Date.UTC(1900 + b[0]!, b[1]! - 1, b[2]!, b[3]!, b[4]!, b[5]!) - offset * 15 * 60_000;
  return new Date(Number.isFinite(ms) ? ms : 0);
}

/** The 17-byte date of a volume descriptor: "YYYYMMDDHHMMSScc" and a GMT offset; undefined when unset (all zeros). */
export function decDate(b: Uint8Array): Date | undefined {
  const text = Buffer.from(b.subarray(0, 16)).toString('latin1');
  if (!/^\d{16}$/.test(text) || /^0+$/.test(text)) return undefined;
  const offset = (b[16]! << 24) >> 24;
  const ms =
    Date.UTC(+text.slice(0, 4), +text.slice(4, 6) - 1, +text.slice(6, 8), +text.slice(8, 10), +text.slice(10, 12), +text.slice(12, 14), +text.slice(14, 16) * 10) -
    offset * 15 * 60_000;
  return Number.isFinite(ms) ? new Date(ms) : undefined;
}
