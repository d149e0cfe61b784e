import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { snapshot } from '../../sinks/snapshot.ts';
import type { RunContext } from '../../runtime/context.ts';
import { describeError, FatalError } from '../../runtime/errors.ts';
import { PermissionError } from '../../runtime/permission-error.ts';
import type { PermissionSpec } from '../../runtime/permissions.ts';
import type { Sink, SinkWriteContext } from '../../runtime/pipeline.ts';
import { testRunContext } from '../support/run-context.ts';

let dir: string;
const contexts: RunContext[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-snapshot-'));
});

afterEach(async () => {
  for (const ctx of contexts.splice(0)) await ctx.http.close();
  rmSync(dir, { recursive: true, force: true });
});

function runContext(permissions: PermissionSpec = { write: [dir] }): RunContext {
  const ctx = testRunContext({ dir, permissions, pipeline: 'snapshot-test' });
  contexts.push(ctx);
  return ctx;
}

const writeContext: SinkWriteContext = { signal: new AbortController().signal, itemIds: [], attempt: 1 };

/** Run a sink the way the runner does: open, write in batches, close with the outcome. */
async function run<R>(sink: Sink<R>, records: R[], status: 'succeeded' | 'failed' | 'interrupted' = 'succeeded', batchSize = 1000) {
  await sink.open?.(runContext());
  for (let i = 0; i < records.length; i += batchSize) await sink.write(records.slice(i, i + batchSize), writeContext);
  await sink.close?.({ status });
}

interface Row {
  id: number;
  name: string;
  size: number;
}

const rows = (n: number, prefix = 'file'): Row[] => Array.from({ length: n }, (_, i) => ({ id: i, name: `${prefix}-${i}`, size: i * 7 }));

/** Temp files are named `.<target>.<pid>.<time>.tmp` beside the target. */
const tempFiles = () => readdirSync(dir).filter((name) => name.endsWith('.tmp'));

describe('snapshot sink', () => {
  it('publishes atomically: a reader polling the target sees the old snapshot or the whole new one, never a part', async () => {
    const target = path.join(dir, 'inventory.json');
    const old = rows(3, 'old');
    writeFileSync(target, JSON.stringify(old, null, 2) + '\n');
    const total = 200_000;

    // the reader runs in its own process so it polls while this process writes
    const reader = spawn(
      process.execPath,
      [
        '-e',
        `
        const fs = require('node:fs');
        const [target, total] = [process.argv[1], Number(process.argv[2])];
        const seen = { old: 0, new: 0, partial: 0, other: 0 };
        const deadline = Date.now() + 120000;
        let announced = false;
        while (seen.new < 5 && Date.now() < deadline) {
          let text;
          try { text = fs.readFileSync(target, 'utf8'); } catch (err) { seen.other++; continue; }
          let doc;
          try { doc = JSON.parse(text); } catch { seen.partial++; continue; }
          if (doc.length === 3 && doc[0].name === 'old-0') seen.old++;
          else if (doc.length === total && doc[total - 1].name === 'file-' + (total - 1)) seen.new++;
          else seen.other++;
          if (!announced && seen.old > 0) { announced = true; process.stdout.write('ready\\n'); }
        }
        process.stdout.write(JSON.stringify(seen) + '\\n');
        `,
        target,
        String(total),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let output = '';
    const exited = new Promise<number | null>((resolve) => reader.on('exit', resolve));
    await new Promise<void>((resolve) => {
      reader.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ready')) resolve();
      });
    });

    const sink = snapshot<Row>({ path: target });
    await sink.open!(runContext());
    const records = rows(total);
    let sawTempWhileWriting = false;
    for (let i = 0; i < total; i += 1000) {
      await sink.write(records.slice(i, i + 1000), writeContext);
      if (i === 100_000) {
        // halfway: the records are on disk in the temp file, and the old snapshot is still published
        const temps = tempFiles();
        sawTempWhileWriting = temps.length === 1 && statSync(path.join(dir, temps[0]!)).size > 1_000_000;
        expect(JSON.parse(readFileSync(target, 'utf8'))).toEqual(old);
      }
    }
    await sink.close!({ status: 'succeeded' });

    expect(await exited).toBe(0);
    const seen = JSON.parse(output.trim().split('\n').pop()!) as Record<string, number>;
    expect(seen.partial).toBe(0);
    expect(seen.other).toBe(0);
    expect(seen.old).toBeGreaterThan(0);
    expect(seen.new).toBeGreaterThan(0);
    expect(sawTempWhileWriting).toBe(true);
    expect(statSync(target).size).toBeGreaterThan(5_000_000);
    expect(readFileSync(target, 'utf8')).toBe(JSON.stringify(records, null, 2) + '\n');
    expect(tempFiles()).toEqual([]);
  }, 180_000);

  it('keeps the previous snapshot and removes its temp file when the run fails or is interrupted', async () => {
    const target = path.join(dir, 'snap.json');
    const old = JSON.stringify(rows(2, 'old'), null, 2) + '\n';
    writeFileSync(target, old);
    for (const status of ['failed', 'interrupted'] as const) {
      for (const options of [{ path: target }, { path: target, sortBy: 'id' as const }, { path: target, format: 'jsonl' as const }]) {
        await run(snapshot<Row>(options), rows(5000), status);
        expect(readFileSync(target, 'utf8')).toBe(old);
        expect(tempFiles()).toEqual([]);
      }
    }
  });

  it('does not create the target when the first run fails', async () => {
    await run(snapshot<Row>({ path: path.join(dir, 'never.json') }), rows(10), 'failed');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('writes exactly JSON.stringify(records, null, 2) with keys in record order, BigInt as strings', async () => {
    const target = path.join(dir, 'out', 'doc.json');
    const records = [
      { z: 1, a: { y: [1, 2, { q: 'x\ny' }], b: null }, big: 12345678901234567890n },
      { a: 'second', z: [] },
    ];
    await run(snapshot<Record<string, unknown>>({ path: target }), records, 'succeeded', 1);
    const expected = JSON.stringify(records, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
    expect(readFileSync(target, 'utf8')).toBe(expected);
    expect(JSON.parse(readFileSync(target, 'utf8'))[0].big).toBe('12345678901234567890');

    await run(snapshot<Row>({ path: target }), []);
    expect(readFileSync(target, 'utf8')).toBe('[]\n');
  });

  it('sortBy orders records stably: ties keep arrival order, across batches', async () => {
    const target = path.join(dir, 'sorted.json');
    const records = [
      { key: 'b', arrival: 0 },
      { key: 'a', arrival: 1 },
      { key: 'b', arrival: 2 },
      { key: 'c', arrival: 3 },
      { key: 'a', arrival: 4 },
      { key: 'b', arrival: 5 },
    ];
    await run(snapshot<(typeof records)[number]>({ path: target, sortBy: 'key' }), records, 'succeeded', 2);
    const byField = JSON.parse(readFileSync(target, 'utf8')) as typeof records;
    expect(byField.map((r) => r.arrival)).toEqual([1, 4, 0, 2, 5, 3]);

    await run(snapshot<(typeof records)[number]>({ path: target, format: 'jsonl', sortBy: (r) => -r.arrival % 2 }), records, 'succeeded', 4);
    const lines = readFileSync(target, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as (typeof records)[number]);
    // keys: odd arrivals -1, even arrivals 0 (as -0): odd first, each group in arrival order
    expect(lines.map((r) => r.arrival)).toEqual([1, 3, 5, 0, 2, 4]);
  });

  it('jsonl writes one line per record, in arrival order', async () => {
    const target = path.join(dir, 'rows.jsonl');
    const records = rows(25_001);
    await run(snapshot<Row>({ path: target, format: 'jsonl' }), records, 'succeeded', 777);
    const text = readFileSync(target, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.split('\n').slice(0, -1);
    expect(lines).toHaveLength(25_001);
    expect(lines[0]).toBe('{"id":0,"name":"file-0","size":0}');
    expect(lines.map((l) => (JSON.parse(l) as Row).id)).toEqual(records.map((r) => r.id));
  });

  it('wrap shapes the document from all records', async () => {
    const target = path.join(dir, 'wrapped.json');
    await run(snapshot<Row>({ path: target, sortBy: (r) => -r.id, wrap: (files) => ({ count: files.length, files }) }), rows(3));
    expect(JSON.parse(readFileSync(target, 'utf8'))).toEqual({ count: 3, files: rows(3).reverse() });
    expect(() => snapshot<Row>({ path: target, format: 'jsonl', wrap: (x: Row[]) => x } as never)).toThrow(FatalError);
  });

  it('refuses to open without write permission, naming --allow-write, and writes nothing', async () => {
    const allowed = path.join(dir, 'allowed');
    const target = path.join(dir, 'elsewhere', 'snap.json');
    const sink = snapshot<Row>({ path: target });
    const error = await Promise.resolve(sink.open!(runContext({ write: [allowed] }))).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(PermissionError);
    expect((error as PermissionError).flag).toMatch(/^--allow-write=/);
    expect(describeError(error)).toContain('--allow-write');
    expect(describeError(error)).toContain(target);
    await sink.close!({ status: 'failed' });
    expect(readdirSync(dir)).toEqual([]);
  });
});
