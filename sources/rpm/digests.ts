/**
 * A package file's md5, sha1, sha256 and blake2b-512, with most of the hashing off the
 * main thread.
 *
 * Hashing the whole file four times is most of what reading a package costs (about
 * 3.7 ns a byte on one core: md5 ~1.4, blake2b ~1.1, sha1 and sha256 ~0.55 each with
 * SHA-NI), while parsing the headers is cheap. So one hash worker thread — shared by
 * every package read in the process, started on first use — computes sha1, sha256 and
 * blake2b-512, while the calling thread computes md5 (md5 cannot be split, and this
 * balances the two threads: md5 plus parsing against the other three).
 *
 * The hand-over is shared memory, not messages (a `postMessage` round trip per package
 * costs more than hashing a small package): each chunk is copied once into a ring
 * (`SharedArrayBuffer`) and described by a job in a shared queue; the worker takes jobs
 * in order, sleeping in `Atomics.wait` when there are none, and writes a package's
 * digests into a result slot when its last job is done. The reader waits for them with
 * `Atomics.waitAsync`, so the event loop keeps running. A chunk is copied when it is
 * seen, so a source that reuses its buffer after yielding it is safe.
 *
 * Memory is bounded by the ring: `drain()` makes a reader wait while the ring is more
 * than half full; a chunk that finds no room (a huge chunk, 1-byte chunks, many packages
 * at once) is copied aside and queued, in order, by the next `drain()` or `digest()` as
 * room frees up (nothing ever blocks the event loop).
 *
 * The worker does not keep the process alive (it is `unref`ed except while a reader
 * waits on it). On a single-core machine, or if the worker cannot start or dies,
 * hashing happens on the calling thread (same digests).
 */
import { createHash, type Hash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { PackageDigests } from './package.ts';

/** One package's four digests, fed chunk by chunk. */
export interface FileDigester {
  /** Hash these bytes next (they are copied or hashed at once: the caller may reuse `chunk`). */
  update(chunk: Uint8Array): void;
  /** A promise to wait on before feeding more when the hash worker is far behind, else undefined. */
  drain(): Promise<void> | undefined;
  /** All bytes fed: the hex digests. */
  digest(): Promise<PackageDigests>;
  /** Give up (free what the worker holds for this package). */
  abort(): void;
}

/** bytes of the shared ring the chunks are copied into */
const RING = 32 << 20;
/** jobs in the shared queue */
const JOBS = 4096;
/** a job's Int32 fields: package id, ring offset, length, flags */
const JOB_FIELDS = 4;
const END = 1;
const ABORT = 2;
/** what the worker computes, and the bytes of its result slot (sha1 20 + sha256 32 + blake2b-512 64) */
const WORKER_ALGORITHMS = ['sha1', 'sha256', 'blake2b512'] as const;
const DIGEST_BYTES = [20, 32, 64] as const;
const RESULT_BYTES = 116;
/** how many times the worker looks for a new job before it sleeps (some tens of microseconds) */
const SPIN = 20_000;
/** how many times a reader looks for its answer before it waits asynchronously (a few microseconds) */
const MAIN_SPIN = 2_000;
/** control words: jobs submitted, jobs done, worker asleep */
const SUBMITTED = 0;
const DONE = 1;
const ASLEEP = 2;

/** The worker's code (plain CommonJS, run with `eval`: no loader or build step needed). */
/** `Atomics.waitAsync` (Node 16+; not in this project's TS lib) */
const waitAsync = (Atomics as unknown as {
  waitAsync?: (array: Int32Array, index: number, value: number, timeout?: number) => { async: boolean; value: Promise<string> | string };
}).waitAsync;

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { algorithms, jobsCount } = workerData;
const data = new Uint8Array(workerData.ring);
const ctl = new Int32Array(workerData.ctl);
const jobs = new Int32Array(workerData.jobs);
const results = new Uint8Array(workerData.results);
const resultBytes = workerData.resultBytes;
const open = new Map();
let done = 0;
for (;;) {
  if (Atomics.load(ctl, ${SUBMITTED}) === done) {
    // the next job usually comes within microseconds (the reader's next chunk): look a
    // little while before sleeping, as a sleep and a wake-up cost more than that
    for (let spin = 0; spin < ${SPIN} && Atomics.load(ctl, ${SUBMITTED}) === done; spin++);
    if (Atomics.load(ctl, ${SUBMITTED}) !== done) continue;
    Atomics.store(ctl, ${ASLEEP}, 1);
    Atomics.wait(ctl, ${SUBMITTED}, done);
    Atomics.store(ctl, ${ASLEEP}, 0);
    continue;
  }
  const slot = done % jobsCount;
  const j = slot * ${JOB_FIELDS};
  const id = jobs[j], off = jobs[j + 1], len = jobs[j + 2], flags = jobs[j + 3];
  if (flags & ${ABORT}) {
    open.delete(id);
  } else {
    let hashes = open.get(id);
    if (!hashes) { hashes = algorithms.map((a) => createHash(a)); open.set(id, hashes); }
    if (len > 0) { const bytes = data.subarray(off, off + len); for (const h of hashes) h.update(bytes); }
    if (flags & ${END}) {
      open.delete(id);
      let at = slot * resultBytes;
      for (const h of hashes) { const d = h.digest(); results.set(d, at); at += d.length; }
    }
  }
  done = (done + 1) | 0;
  Atomics.store(ctl, ${DONE}, done);
  Atomics.notify(ctl, ${DONE});
}
`;

class HashWorker {
  private readonly worker: Worker;
  private readonly ringBuffer = new SharedArrayBuffer(RING);
  private readonly ring = new Uint8Array(this.ringBuffer);
  private readonly ctl = new Int32Array(new SharedArrayBuffer(4 * 4));
  private readonly jobs = new Int32Array(new SharedArrayBuffer(JOBS * JOB_FIELDS * 4));
  readonly results = new Uint8Array(new SharedArrayBuffer(JOBS * RESULT_BYTES));
  /** where each job's data ends in the ring (as `head` counts) */
  private readonly jobEnd = new Float64Array(JOBS);
  /** bytes ever copied into the ring */
  private head = 0;
  /** jobs submitted */
  private submitted = 0;
  /** readers waiting: the worker is ref'ed while above 0 */
  private waiting = 0;
  broken: Error | undefined;

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        algorithms: WORKER_ALGORITHMS,
        jobsCount: JOBS,
        resultBytes: RESULT_BYTES,
        ring: this.ringBuffer,
        ctl: this.ctl.buffer,
        jobs: this.jobs.buffer,
        results: this.results.buffer,
      },
    });
    this.worker.unref();
    const die = (err: Error): void => {
      this.broken ??= err;
      Atomics.notify(this.ctl, DONE); // wake the readers waiting, to fail
    };
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`hash worker exited with code ${code}`)));
  }

  /** jobs done (as a count of submitted jobs; both wrap at 2^31 alike) */
  private done(): number {
    return Atomics.load(this.ctl, DONE);
  }

  /** jobs submitted and not done */
  private queued(): number {
    return (this.submitted - this.done()) | 0;
  }

  /** bytes of the ring in use */
  private used(): number {
    const queued = this.queued();
    if (queued === 0) return 0;
    // the last job done is the one before the oldest queued job
    return this.head - this.jobEnd[(((this.submitted - queued - 1) % JOBS) + JOBS) % JOBS]!;
  }

  /** whether `n` bytes (in at most two pieces, at the end of the ring and at its start) can be queued now */
  hasRoom(n: number): boolean {
    return this.queued() + 2 <= JOBS && RING - this.used() >= n;
  }

  /**
   * Queue `bytes` (copied into the ring) for package `id`, with `flags` on the last
   * piece; returns the index of the last job (its result slot is `index % JOBS`).
   * Only when `hasRoom(bytes.byteLength)`: it never waits.
   */
  submit(id: number, bytes: Uint8Array, flags: number): number {
    if (this.broken) throw this.broken;
    if (!this.hasRoom(bytes.byteLength)) throw new Error('hash worker: no room (check hasRoom first)');
    const n = bytes.byteLength;
    let off = 0;
    let job = 0;
    do {
      const at = this.head % RING;
      const take = Math.min(n - off, RING - at);
      if (take > 0) this.ring.set(bytes.subarray(off, off + take), at);
      off += take;
      this.head += take;
      job = this.submitted;
      const slot = job % JOBS;
      const j = slot * JOB_FIELDS;
      this.jobs[j] = id;
      this.jobs[j + 1] = at;
      this.jobs[j + 2] = take;
      this.jobs[j + 3] = off === n ? flags : 0;
      this.jobEnd[slot] = this.head;
      this.submitted = (this.submitted + 1) | 0;
      Atomics.store(this.ctl, SUBMITTED, this.submitted);
      if (Atomics.load(this.ctl, ASLEEP) === 1) Atomics.notify(this.ctl, SUBMITTED);
    } while (off < n);
    return job;
  }

  /** whether job `job` (an index `submit` returned) is done */
  isDone(job: number): boolean {
    return ((this.done() - job) | 0) > 0;
  }

  /** Wait (without blocking the event loop) until `ready()` holds. */
  async until(ready: () => boolean): Promise<void> {
    // the answer is often a few microseconds away: look a little before going to sleep
    for (let spin = 0; spin < MAIN_SPIN; spin++) if (ready()) return;
    if (this.broken) throw this.broken;
    if (this.waiting++ === 0) this.worker.ref();
    try {
      for (;;) {
        // read the count before looking: a job done in between makes the wait return at once
        const done = this.done();
        if (ready()) return;
        if (this.broken) throw this.broken;
        const wait = waitAsync!(this.ctl, DONE, done);
        if (wait.async) await wait.value;
      }
    } finally {
      if (--this.waiting === 0) this.worker.unref();
    }
  }

  /** true while the ring is more than half full */
  behind(): boolean {
    return this.used() > RING / 2 || this.queued() > JOBS / 2;
  }
}

let worker: HashWorker | undefined | null;
let nextId = 1;

function hashWorker(): HashWorker | undefined {
  if (worker === undefined) {
    try {
      worker = availableParallelism() > 1 && typeof waitAsync === 'function' ? new HashWorker() : null;
    } catch {
      worker = null;
    }
  }
  if (worker?.broken) worker = null; // a dead worker: hash here from now on
  return worker ?? undefined;
}

/** A digester: on the hash worker when there is one, else in this thread. */
export function fileDigester(): FileDigester {
  const w = hashWorker();
  return w ? new WorkerDigester(w) : new LocalDigester();
}

class LocalDigester implements FileDigester {
  private readonly hashes: Hash[] = [createHash('md5'), createHash('sha1'), createHash('sha256'), createHash('blake2b512')];

  update(chunk: Uint8Array): void {
    for (const h of this.hashes) h.update(chunk);
  }

  drain(): undefined {
    return undefined;
  }

  async digest(): Promise<PackageDigests> {
    const [md5, sha1, sha256, blake2b] = this.hashes.map((h) => h.digest('hex')) as [string, string, string, string];
    return { md5, sha1, sha256, blake2b };
  }

  abort(): void {}
}

const EMPTY = new Uint8Array(0);

/** the most one job carries: bigger chunks are split */
const PIECE = RING / 4;

class WorkerDigester implements FileDigester {
  private readonly id = nextId++ & 0x7fffffff;
  private readonly md5 = createHash('md5');
  /** jobs that found no room yet (copied), queued in order by `flush` */
  private pending: { bytes: Uint8Array; flags: number }[] = [];
  private flushing: Promise<void> | undefined;
  private lastJob = 0;
  private submitted = false;
  private finished = false;

  constructor(private readonly worker: HashWorker) {}

  private queue(bytes: Uint8Array, flags: number): void {
    for (let off = 0; ; off += PIECE) {
      const piece = bytes.subarray(off, off + PIECE);
      const last = off + PIECE >= bytes.byteLength;
      const f = last ? flags : 0;
      if (this.pending.length === 0 && this.worker.hasRoom(piece.byteLength)) {
        this.lastJob = this.worker.submit(this.id, piece, f);
        this.submitted = true;
      } else {
        this.pending.push({ bytes: piece.slice(), flags: f }); // the caller may reuse its buffer
      }
      if (last) return;
    }
  }

  /** Queue the jobs that found no room, waiting for room as needed. */
  private flush(): Promise<void> {
    return (this.flushing ??= (async () => {
      try {
        while (this.pending.length > 0) {
          const { bytes, flags } = this.pending[0]!;
          await this.worker.until(() => this.worker.hasRoom(bytes.byteLength));
          this.pending.shift();
          this.lastJob = this.worker.submit(this.id, bytes, flags);
          this.submitted = true;
        }
      } finally {
        this.flushing = undefined;
      }
    })());
  }

  update(chunk: Uint8Array): void {
    if (chunk.byteLength === 0 || this.finished) return;
    // queued first, so the worker hashes while this thread does md5
    this.queue(chunk, 0);
    this.md5.update(chunk);
  }

  drain(): Promise<void> | undefined {
    if (this.pending.length > 0) return this.flush();
    return this.worker.behind() ? this.worker.until(() => !this.worker.behind()) : undefined;
  }

  async digest(): Promise<PackageDigests> {
    if (this.finished) throw new Error('digest() called twice');
    this.finished = true;
    this.queue(EMPTY, END);
    const md5 = this.md5.digest('hex');
    await this.flush();
    const job = this.lastJob;
    // the result slot is read as soon as the job is seen done (it is reused JOBS jobs later)
    let hex: string[] = [];
    await this.worker.until(() => {
      if (!this.worker.isDone(job)) return false;
      const r = this.worker.results;
      let at = (job % JOBS) * RESULT_BYTES;
      hex = DIGEST_BYTES.map((n) => {
        const h = Buffer.from(r.buffer, r.byteOffset + at, n).toString('hex');
        at += n;
        return h;
      });
      return true;
    });
    return { md5, sha1: hex[0]!, sha256: hex[1]!, blake2b: hex[2]! };
  }

  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.pending = [];
    if (!this.submitted || this.worker.broken) return;
    // the worker drops what it holds for this package
    const w = this.worker;
    if (w.hasRoom(0)) w.submit(this.id, EMPTY, ABORT);
    else void w.until(() => w.hasRoom(0)).then(() => w.submit(this.id, EMPTY, ABORT), () => undefined);
  }
}
