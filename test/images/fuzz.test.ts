/**
 * Fuzz: random mutations of every image fixture (flipped bytes, bytes set to 0, 0xff or
 * a large number, truncations), each read in full — every entry listed, every file's
 * content read (up to a cap), nested layers opened — with a deterministic seed. Every
 * case must end, within a time bound, either cleanly or with a `PermanentError` (an
 * `ImageError`, a `DecodeError`); anything else (a TypeError, a RangeError, a hang) is
 * a defect, reported with the fixture, the seed and the mutation.
 *
 * The default run is 1,200 cases (a few seconds). The long run:
 *
 *   SLUICE_FUZZ_CASES=20000 SLUICE_FUZZ_SEED=7 npx vitest run test/images/fuzz.test.ts
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../runtime/errors.ts';
import { BufferDevice } from '../../sources/images/block-device.ts';
import { imageEntries } from '../../sources/images/image-entries.ts';
import { readInstalled } from '../../sources/installed/installed-packages.ts';
import { fileOf, fixture, fixtureContext, readStream } from './golden.ts';

const CASES = Number(process.env.SLUICE_FUZZ_CASES ?? 1200);
const SEED = Number(process.env.SLUICE_FUZZ_SEED ?? 1);
/** most content bytes read per case (a mutated size can make a file of zeros very long) */
const READ_CAP = 4 * 2 ** 20;
const CASE_TIMEOUT_MS = 10_000;

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Target {
  readonly name: string;
  readonly bytes: Buffer;
  /** where the structures are (mutations land here most of the time) */
  readonly hot: readonly [number, number][];
  readonly read: (device: BufferDevice) => Promise<void>;
}

async function readImage(device: BufferDevice): Promise<void> {
  let budget = READ_CAP;
  for await (const e of imageEntries(fixtureContext(), device, { name: device.name, spoolBudget: 64 * 2 ** 20 })) {
    if (e.type !== 'file' || e.error || budget <= 0) continue;
    let stream: ReadableStream<Uint8Array>;
    try {
      stream = e.content();
    } catch (err) {
      if (err instanceof PermanentError) continue;
      throw err;
    }
    const reader = stream.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        budget -= value.length;
        if (budget <= 0) break;
      }
    } catch (err) {
      if (!(err instanceof PermanentError)) throw err;
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }
}

function mutate(bytes: Buffer, rand: () => number, hot: readonly [number, number][]): { bytes: Buffer; what: string } {
  const kind = rand();
  if (kind < 0.1) {
    const cut = Math.floor(rand() * bytes.length);
    return { bytes: Buffer.from(bytes.subarray(0, cut)), what: `truncate to ${cut}` };
  }
  const out = Buffer.from(bytes);
  const n = 1 + Math.floor(rand() * 8);
  const where: string[] = [];
  for (let i = 0; i < n; i++) {
    let pos: number;
    if (rand() < 0.8 && hot.length > 0) {
      const [from, to] = hot[Math.floor(rand() * hot.length)]!;
      pos = Math.min(bytes.length - 1, from + Math.floor(rand() * Math.max(1, to - from)));
    } else pos = Math.floor(rand() * bytes.length);
    const r = rand();
    if (r < 0.4) out[pos] = out[pos]! ^ (1 << Math.floor(rand() * 8));
    else if (r < 0.6) out[pos] = 0;
    else if (r < 0.8) out[pos] = 0xff;
    else if (pos + 4 <= out.length) out.writeUInt32LE(Math.floor(rand() * 2 ** 32), pos);
    where.push(String(pos));
  }
  return { bytes: out, what: `${n} bytes at ${where.join(',')}` };
}

async function targets(): Promise<Target[]> {
  const file = (name: string) => readFileSync(fixture(name));
  const iso = file('live.iso');
  const { unxz } = await import('../../sources/decoders/xz.ts');
  const { createReadStream } = await import('node:fs');
  const unpack = (name: string) => readStream(unxz(createReadStream(fixture(name)) as unknown as AsyncIterable<Uint8Array>));
  const gpt = await unpack('gpt.img.xz');
  const rrJoliet = await unpack('rr-joliet.iso.xz');
  const db = await fileOf('live.iso', 'live!var/lib/rpm/Packages');
  const sqlite = await fileOf('live.iso', 'altinst!var/lib/rpm/rpmdb.sqlite');
  const readDb = (kind: 'rpmdb-bdb' | 'rpmdb-sqlite') => async (device: BufferDevice) => {
    await readInstalled(kind, device);
  };
  return [
    // descriptors, directories and the squashfs superblocks/tables inside
    { name: 'live.iso', bytes: iso, hot: [[32768, 40960], [40960, 60000], [60000, iso.length]], read: readImage },
    { name: 'bcj.squashfs', bytes: file('bcj.squashfs'), hot: [[0, 96], [18000, 24576]], read: readImage },
    { name: 'lz4.squashfs', bytes: file('lz4.squashfs'), hot: [[0, 96], [96, 12288]], read: readImage },
    // Rock Ridge with relocated deep directories (CL/RE/PL) and a Joliet tree
    { name: 'rr-joliet.iso', bytes: rrJoliet, hot: [[32768, 40960], [40960, 90000]], read: readImage },
    { name: 'disk-zlib.qcow2', bytes: file('disk-zlib.qcow2'), hot: [[0, 112], [4096, 16384]], read: readImage },
    { name: 'disk-v2.qcow2', bytes: file('disk-v2.qcow2'), hot: [[0, 112], [1024 * 1024 + 1024, 1024 * 1024 + 8192]], read: readImage },
    // GPT header and entries, then the ext4 superblock, descriptors, inode tables, directories
    { name: 'gpt.img', bytes: gpt, hot: [[0, 1024], [1024, 17408], [2 ** 20 + 1024, 2 ** 20 + 4096], [2 ** 20 + 4096, 2 ** 20 + 300_000]], read: readImage },
    { name: 'Packages (Berkeley DB)', bytes: db, hot: [[0, 512], [4096, db.length]], read: readDb('rpmdb-bdb') },
    { name: 'rpmdb.sqlite', bytes: sqlite, hot: [[0, 4096], [4096, 65536]], read: readDb('rpmdb-sqlite') },
  ];
}

describe('fuzz: mutated images end cleanly or with a PermanentError', () => {
  it(`${CASES} cases, seed ${SEED}`, async () => {
    const list = await targets();
    const rand = prng(SEED);
    const failures: string[] = [];
    let permanent = 0;
    for (let i = 0; i < CASES; i++) {
      const t = list[i % list.length]!;
      const { bytes, what } = mutate(t.bytes, rand, t.hot);
      const device = new BufferDevice(t.name, bytes);
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          t.read(device),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${CASE_TIMEOUT_MS} ms (a hang?)`)), CASE_TIMEOUT_MS);
          }),
        ]);
      } catch (err) {
        if (err instanceof PermanentError) permanent++;
        else failures.push(`case ${i} ${t.name} (${what}): ${err instanceof Error ? `${err.name}: ${err.message}\n${err.stack?.split('\n').slice(1, 4).join('\n')}` : String(err)}`);
      } finally {
        clearTimeout(timer);
      }
      if (failures.length >= 5) break;
    }
    expect(failures).toEqual([]);
    // the mutations do hit: a good share of the cases is refused
    expect(permanent).toBeGreaterThan(CASES / 20);
  }, 600_000);
});
