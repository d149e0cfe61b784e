/**
 * One line of rsync's `--itemize-changes` output, as sluice asks for it
 * (`--out-format=%i %l %n%L`: the 11-character change string, the file's length, its
 * name, and ` -> target` for symlinks), read into a record.
 *
 * The change string is `YXcstpoguax`: Y is what happened (`>` received, `<` sent,
 * `c` created locally, `h` hard link, `.` only attributes, `*` a message such as
 * `*deleting`), X the file type (`f` file, `d` directory, `L` symlink, `D` device,
 * `S` special), and `+++++++++` marks a new item. rsync writes unprintable bytes of
 * names as `\#ooo` (octal); they are decoded here.
 *
 * @example
 * ```ts
 * parseItemizeLine('>f+++++++++ 6 a.txt');
 * // { path: 'a.txt', change: 'created', type: 'file', size: 6, transferred: true, itemize: '>f+++++++++' }
 * parseItemizeLine('*deleting   0 old/b.txt'); // change: 'deleted'
 * ```
 */

export type RsyncChange = 'created' | 'updated' | 'deleted' | 'attributes' | 'hardlink';
export type RsyncFileType = 'file' | 'dir' | 'symlink' | 'device' | 'special' | 'unknown';

export interface ItemizedChange {
  /** relative to the destination; directories end in `/` */
  path: string;
  change: RsyncChange;
  type: RsyncFileType;
  /** bytes (the file's length; 0 for deleted items) */
  size: number;
  /** content went over the wire (Y is `>` or `<`) */
  transferred: boolean;
  /** the raw 11-character change string */
  itemize: string;
  /** a symlink's target */
  target?: string;
}

const TYPES: Readonly<Record<string, RsyncFileType>> = { f: 'file', d: 'dir', L: 'symlink', D: 'device', S: 'special' };

const LINE = /^([<>ch.*][^ ]{10}|\*deleting\s{2}) (\d+) (.+)$/;

/** The record of one itemized line; undefined for any other line (headers, `created directory …`, stats). */
export function parseItemizeLine(line: string): ItemizedChange | undefined {
  const m = LINE.exec(line);
  if (!m) return undefined;
  const itemize = m[1]!.trimEnd();
  let name = m[3]!;
  if (itemize === '*deleting') {
    const path = unescapeName(name);
    return { path, change: 'deleted', type: path.endsWith('/') ? 'dir' : 'unknown', size: 0, transferred: false, itemize };
  }
  if (itemize.startsWith('*')) return undefined; // another message
  const y = itemize[0]!;
  const type = TYPES[itemize[1]!] ?? 'unknown';
  let target: string | undefined;
  if (type === 'symlink' || y === 'h') {
    const arrow = name.indexOf(y === 'h' ? ' => ' : ' -> ');
    if (arrow !== -1) {
      target = unescapeName(name.slice(arrow + 4));
      name = name.slice(0, arrow);
    }
  }
  const isNew = itemize.slice(2).startsWith('+');
  const change: RsyncChange = y === 'h' ? 'hardlink' : isNew ? 'created' : y === '>' || y === '<' ? 'updated' : 'attributes';
  return {
    path: unescapeName(name),
    change,
    type,
    size: Number(m[2]),
    transferred: y === '>' || y === '<',
    itemize,
    ...(target !== undefined ? { target } : {}),
  };
}

/** rsync writes unprintable bytes as `\#ooo`; bytes, so a UTF-8 name split that way comes back whole. */
export function unescapeName(text: string): string {
  if (!text.includes('\\#')) return text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length;) {
    const m = /^\\#([0-7]{3})/.exec(text.slice(i, i + 5));
    if (m) {
      bytes.push(parseInt(m[1]!, 8));
      i += 5;
    } else {
      const cp = text.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      bytes.push(...Buffer.from(ch, 'utf8'));
      i += ch.length;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}
