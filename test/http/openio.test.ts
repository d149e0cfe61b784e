import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import conscience from '../../pipelines/openio-conscience.ts';
import elections from '../../pipelines/openio-elections.ts';
import meta0 from '../../pipelines/openio-meta0.ts';
import { classifyError } from '../../runtime/errors.ts';
import { HttpClient } from '../../runtime/http-client.ts';
import { createLogger } from '../../runtime/log.ts';
import type { AnyPipeline } from '../../runtime/pipeline.ts';
import { Permissions } from '../../runtime/permissions.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { parseLenientJson } from '../../sources/http/openio/lenient-json.ts';
import { ObjectEntryParser } from '../../sources/http/openio/object-entry-parser.ts';
import { analyseElection, OpenIoProxy } from '../../sources/http/openio/proxy.ts';
import { startOpenIoProxy, type OpenIoModel } from '../servers/openio-proxy.ts';

const CID_OK = 'A'.repeat(64);
const CID_SPLIT = 'B'.repeat(64);
const CID_FAILED = 'C'.repeat(64);
const CID_NOMASTER = 'D'.repeat(64);
const info = (master: number, slave: number) => ({ sqlite: {}, elections: { total: master + slave + 1, none: 1, pending: 0, failed: 0, slave, master }, version: '7.2.0' });

function model(): OpenIoModel {
  return {
    ns: 'OPENIO',
    services: [
      { addr: '127.0.0.1:6010', type: 'rawx', score: 81, scores: { 'score.put': 81, 'score.get': 75 }, loc: 'rack1.host1.vol0', serviceId: '0a1b', stats: { cpu: 97, io: NaN, space: Infinity } },
      { addr: '127.0.0.2:6010', type: 'rawx', score: 40, up: false, loc: 'rack1.host2.vol0' },
      { addr: '127.0.0.1:6014', type: 'meta2', score: 90, loc: 'rack1.host1', stats: { cpu: -Infinity } },
    ],
    bases: {
      [CID_OK]: {
        '127.0.0.1:6015': { status: 200, message: 'OK', info: info(12, 3) },
        '127.0.0.2:6015': { status: 303, message: '127.0.0.1:6015', info: info(4, 11) },
        '127.0.0.3:6015': { status: 303, message: '127.0.0.1:6015', info: info(5, 10) },
      },
      [CID_SPLIT]: {
        '127.0.0.1:6015': { status: 200, message: 'OK' },
        '127.0.0.2:6015': { status: 303, message: '127.0.0.3:6015' },
        '127.0.0.3:6015': { status: 303, message: '127.0.0.1:6015' },
      },
      [CID_FAILED]: {
        '127.0.0.1:6015': { status: 200, message: 'OK' },
        '127.0.0.2:6015': { status: 303, message: '127.0.0.1:6015' },
        '127.0.0.3:6015': { status: 7, message: 'Read timeout' },
      },
      [CID_NOMASTER]: {
        '127.0.0.1:6015': { status: 503, message: 'Election pending' },
        '127.0.0.2:6015': { status: 7, message: 'Read timeout' },
      },
    },
    meta0Prefixes: 65_536,
  };
}

let proxy: Awaited<ReturnType<typeof startOpenIoProxy>>;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-openio-'));
  proxy = await startOpenIoProxy(model());
});
afterAll(async () => {
  await proxy.close();
});
beforeEach(() => {
  proxy.clearFaults();
  proxy.requests.length = 0;
  Object.assign(proxy.model, model());
});

function run(pipeline: AnyPipeline, params: Record<string, unknown>, registry = new Registry()) {
  return runPipeline({ pipeline, params: { proxy: proxy.origin, ns: 'OPENIO', ...params }, stateDir: path.join(dir, 'state'), log: createLogger({ level: 'silent' }), registry, retry: { initialDelayMs: 5 } });
}

describe('parsing the proxy\'s answers', () => {
  it('reads bare nan/inf (as %f prints them) outside strings, and leaves strings alone', () => {
    expect(parseLenientJson('{"a":nan,"b":-nan,"c":inf,"d":-inf,"e":"nan inf","f":[1.000000,nan]}')).toEqual({ a: NaN, b: NaN, c: Infinity, d: -Infinity, e: 'nan inf', f: [1, NaN] });
    expect(() => parseLenientJson('{"a":nope}')).toThrow(SyntaxError);
  });

  it('hands out object entries as they complete, however the text is split', () => {
    const text = '{"0000":["a:1","b:2"], "0001" : ["c:3"],"x\\"y":{"n":[1,{"m":"}"}]}}';
    for (const size of [1, 3, 1000]) {
      const parser = new ObjectEntryParser();
      const got: [string, unknown][] = [];
      for (let i = 0; i < text.length; i += size) got.push(...parser.push(text.slice(i, i + size)));
      expect(parser.complete).toBe(true);
      expect(got).toEqual([['0000', ['a:1', 'b:2']], ['0001', ['c:3']], ['x"y', { n: [1, { m: '}' }] }]]);
    }
    const cut = new ObjectEntryParser();
    expect(cut.push('{"0000":["a"],"0001":["b"')).toEqual([['0000', ['a']]]);
    expect(cut.complete).toBe(false);
    expect(() => new ObjectEntryParser().push('[1]')).toThrow('not a JSON object');
  });

  it('analyses elections: master, slaves, failed peers kept, disagreement found', () => {
    const split = analyseElection('meta2', CID_SPLIT, [
      { peer: 'a', status: 200, message: 'OK', body: '' },
      { peer: 'b', status: 303, message: 'c', body: '' },
      { peer: 'c', status: 7, message: 'Read timeout', body: null },
    ]);
    expect(split).toMatchObject({ masters: ['a'], claimedMasters: ['a', 'c'], failed: ['c'], healthy: false });
    expect(split.problems).toEqual(['peers disagree about the master: a, c', 'c failed: 7 Read timeout']);
  });
});

describe('OpenIoProxy against the local proxy', () => {
  it('sends x-oio-timeout in µs under our own deadline, a request id, and x-oio-admin on admin routes', async () => {
    const http = new HttpClient(new Permissions({ net: [proxy.hostPort] }));
    const client = new OpenIoProxy(http, proxy.origin, 'OPENIO', { timeoutMs: 5_000 });
    await client.conscienceList('rawx');
    await client.electionStatus('meta2', CID_OK);
    const [list, status] = proxy.requests;
    const timeout = Number(list!.headers['x-oio-timeout']);
    expect(timeout).toBeGreaterThan(0);
    expect(timeout).toBeLessThan(5_000_000);
    expect(String(list!.headers['x-oio-req-id']).length).toBeLessThanOrEqual(63);
    expect(list!.headers['x-oio-admin']).toBeUndefined();
    expect(status!.headers['x-oio-admin']).toBe('1');
    expect(status!.method).toBe('POST');
    await http.close();
  });

  it('honours Retry-After on a 503; a wrong namespace is a permanent 400 naming the URL', async () => {
    const http = new HttpClient(new Permissions({ net: [proxy.hostPort] }));
    proxy.fault('/admin/status', { kind: 'status', status: 503, retryAfter: '1', contentType: 'application/json', body: '{"status":503,"message":"Base frozen"}' }, 1);
    const status = await new OpenIoProxy(http, proxy.origin, 'OPENIO').electionStatus('meta2', CID_OK);
    expect(status.healthy).toBe(true);
    expect(proxy.hits('/admin/status')).toBe(2);
    let error: unknown;
    try {
      await new OpenIoProxy(http, proxy.origin, 'WRONG').conscienceList('rawx');
    } catch (err) {
      error = err;
    }
    expect(classifyError(error)).toBe('permanent');
    expect((error as Error).message).toContain(`${proxy.origin}/v3.0/WRONG/conscience/list?type=rawx: status: HTTP 400: "{\\"status\\":400,\\"message\\":\\"Invalid parameter 'namespace'\\"}"`);
    await http.close();
  });
});

describe('openio-conscience', () => {
  it('services as metrics (score, up, location labels) and a snapshot; nan/inf tags tolerated; promtool accepts it', async () => {
    const registry = new Registry();
    const snapshotPath = path.join(dir, 'conscience.json');
    const record = await run(conscience, { types: ['rawx', 'meta2'], snapshot: snapshotPath }, registry);
    expect(record.status).toBe('succeeded');
    const text = await registry.metrics();
    expect(text).toContain('openio_service_score{ns="OPENIO",type="rawx",addr="127.0.0.1:6010",service_id="0a1b",location="rack1.host1.vol0"} 81');
    expect(text).toContain('openio_service_up{ns="OPENIO",type="rawx",addr="127.0.0.2:6010",service_id="",location="rack1.host2.vol0"} 0');
    expect(text).toContain('openio_service_score{ns="OPENIO",type="rawx",addr="127.0.0.2:6010",service_id="",location="rack1.host2.vol0"} 0');
    expect(text).toContain('openio_conscience_services_up{ns="OPENIO",type="rawx"} 1');
    const doc = JSON.parse(await readFile(snapshotPath, 'utf8')) as { services: { addr: string; type: string; tags: Record<string, unknown>; scores: Record<string, number> }[] };
    expect(doc.services.map((s) => `${s.type} ${s.addr}`)).toEqual(['meta2 127.0.0.1:6014', 'rawx 127.0.0.1:6010', 'rawx 127.0.0.2:6010']);
    const rawx = doc.services.find((s) => s.addr === '127.0.0.1:6010')!;
    expect(rawx.scores).toEqual({ 'score.put': 81, 'score.get': 75 });
    expect(rawx.tags['stat.cpu']).toBe(97);
    expect(rawx.tags['stat.io']).toBeNull(); // NaN has no JSON form: the snapshot says null, the run did not fail
    const file = path.join(dir, 'openio.prom');
    await writeFile(file, text);
    const check = spawnSync('sh', ['-c', `promtool check metrics < ${JSON.stringify(file)}`], { encoding: 'utf8' });
    expect(check.stdout + check.stderr).toBe('');
  });

  it('a vanished service loses its series; a type the proxy does not know fails alone', async () => {
    const registry = new Registry();
    await run(conscience, { types: ['rawx'], snapshot: path.join(dir, 'c1.json') }, registry);
    proxy.model.services = proxy.model.services.filter((s) => s.addr !== '127.0.0.2:6010');
    const second = await run(conscience, { types: ['rawx', 'nosuchtype'], snapshot: path.join(dir, 'c2.json') }, registry);
    expect(second.status).toBe('succeeded');
    expect(second.counts.errors.permanent).toBe(1);
    expect(second.errors[0]!.message).toContain('conscience/list?type=nosuchtype: status: HTTP 404');
    const text = await registry.metrics();
    expect(text).not.toContain('127.0.0.2:6010');
    expect(text).toContain('127.0.0.1:6010');
  });
});

describe('openio-elections', () => {
  it('shows master, slaves and failed peers per base, disagreement, and election counters', async () => {
    const registry = new Registry();
    const snapshotPath = path.join(dir, 'elections.json');
    const record = await run(elections, { type: 'meta2', cid: [CID_OK, CID_SPLIT, CID_FAILED, CID_NOMASTER, 'E'.repeat(64)], snapshot: snapshotPath }, registry);
    expect(record.status).toBe('succeeded');
    // the unknown base fails alone
    expect(record.counts.errors.permanent).toBe(1);
    expect(record.errors[0]!.message).toContain(`admin/status?type=meta2&cid=${'E'.repeat(64)}: status: HTTP 404`);
    const text = await registry.metrics();
    const base = (cid: string) => `ns="OPENIO",type="meta2",base="${cid}"`;
    expect(text).toContain(`openio_election_healthy{${base(CID_OK)}} 1`);
    expect(text).toContain(`openio_election_healthy{${base(CID_SPLIT)}} 0`);
    expect(text).toContain(`openio_election_claimed_masters{${base(CID_SPLIT)}} 2`);
    expect(text).toContain(`openio_election_peers{${base(CID_FAILED)},role="failed"} 1`);
    expect(text).toContain(`openio_election_peer_failed{${base(CID_FAILED)},peer="127.0.0.3:6015"} 1`);
    expect(text).toContain(`openio_election_peers{${base(CID_NOMASTER)},role="master"} 0`);
    expect(text).toContain('openio_service_elections{ns="OPENIO",type="meta2",service="127.0.0.2:6015",state="slave"} 11');
    const doc = JSON.parse(await readFile(snapshotPath, 'utf8')) as { bases: { base: string; healthy: boolean; problems: string[]; peers: { peer: string; role: string; message: string }[] }[] };
    const failed = doc.bases.find((b) => b.base === CID_FAILED)!;
    expect(failed.peers).toEqual([
      { peer: '127.0.0.1:6015', role: 'master', status: 200, message: 'OK' },
      { peer: '127.0.0.2:6015', role: 'slave', status: 303, message: '127.0.0.1:6015', master: '127.0.0.1:6015' },
      { peer: '127.0.0.3:6015', role: 'failed', status: 7, message: 'Read timeout' },
    ]);
    expect(doc.bases.find((b) => b.base === CID_NOMASTER)!.problems).toContain('no master');
  });

  it('refuses a cid that is not 64 hex digits, naming the param', async () => {
    await expect(run(elections, { cid: ['xyz'] })).rejects.toThrow(/invalid param "cid.0": a container id is 64 hex digits/);
  });
});

describe('openio-meta0', () => {
  it('streams all 65,536 prefixes to JSON Lines with per-service counts, resuming a cut stream without duplicates', async () => {
    const registry = new Registry();
    const out = path.join(dir, 'meta0.jsonl');
    proxy.model.meta0CutOnce = 300_000;
    const record = await run(meta0, { out }, registry);
    expect(record.status).toBe('succeeded');
    expect(proxy.hits('/admin/meta0_list')).toBe(2);
    const lines = (await readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { prefix: string; services: string[] });
    expect(lines).toHaveLength(65_536);
    expect(new Set(lines.map((l) => l.prefix)).size).toBe(65_536);
    expect(lines[0]).toEqual({ prefix: '0000', services: ['127.0.0.1:6010', '127.0.0.2:6010'] });
    const text = await registry.metrics();
    expect(text).toContain('openio_meta0_mapped_prefixes{ns="OPENIO"} 65536');
    expect(text).toMatch(/openio_meta0_prefixes\{ns="OPENIO",service="127\.0\.0\.1:6010"\} 43691/);
  }, 60_000);

  it('a map that is not an object fails the run clearly and publishes nothing', async () => {
    proxy.fault('/admin/meta0_list', { kind: 'body', body: '["0000"]', contentType: 'application/json' });
    const out = path.join(dir, 'meta0-bad.jsonl');
    const record = await run(meta0, { out });
    expect(record.status).toBe('failed');
    expect(record.errors.map((e) => e.message).join(' ')).toContain('admin/meta0_list: not a prefix map: the answer is not a JSON object');
    await expect(readFile(out)).rejects.toThrow();
  });
});
