import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import configPipeline from '../../pipelines/pv-archiver-config.ts';
import statusPipeline from '../../pipelines/pv-archiver-status.ts';
import { classifyError } from '../../runtime/errors.ts';
import { HttpClient } from '../../runtime/http-client.ts';
import { createLogger } from '../../runtime/log.ts';
import { Permissions } from '../../runtime/permissions.ts';
import { runPipeline } from '../../runtime/runner.ts';
import { PvArchiverAdmin, tildeEncode } from '../../sources/http/pv-archiver/admin.ts';
import { configurationXml, startPvArchiver, type PvArchiverModel } from '../servers/pv-archiver.ts';

const S1 = '7c6a7e1c-6c1d-4b47-9e2a-0f0f0f0f0f01';
const S2 = '7c6a7e1c-6c1d-4b47-9e2a-0f0f0f0f0f02';

function model(): PvArchiverModel {
  return {
    servers: [
      { serverId: S1, serverName: 'arch1', online: true, lastOnlineTime: 1_700_000_000_000 },
      { serverId: S2, serverName: 'arch2', online: false, lastOnlineTime: 1_690_000_000_000 },
    ],
    thisServer: S1,
    password: 'pa55',
    channels: [
      { name: 'MAG:Q1:Current', serverId: S1, state: 'ok', written: 1000, dropped: 2, decimationLevels: [0, 30], retention: { 0: 864000, 30: 0 } },
      { name: 'MAG:Q2:Current', serverId: S1, state: 'disconnected', written: 50 },
      { name: 'RF/Power', serverId: S1, state: 'error', errorMessage: 'Invalid option', written: 0, dropped: 7 },
      { name: 'VAC:Gauge1', serverId: S2, state: 'ok', written: 99 },
    ],
  };
}

let server: Awaited<ReturnType<typeof startPvArchiver>>;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-pv-admin-'));
});
beforeEach(async () => {
  await server?.close();
  server = await startPvArchiver(model());
});
afterAll(async () => {
  await server.close();
});

describe('PvArchiverAdmin', () => {
  const client = () => new HttpClient(new Permissions({ net: [server.admin.hostPort] }));

  it('tilde-encodes path parameters', () => {
    expect(tildeEncode('a/b')).toBe('a~2Fb');
    expect(tildeEncode('MAG:Q1 µ')).toBe('MAG~3AQ1~20~C2~B5');
  });

  it('reads integers sent as strings, channel states, and a channel by a name that needs encoding', async () => {
    const http = client();
    const admin = new PvArchiverAdmin(http, server.admin.origin);
    expect(await admin.clusterStatus()).toEqual([
      { serverId: S1, serverName: 'arch1', online: true, lastOnlineTime: 1_700_000_000_000 },
      { serverId: S2, serverName: 'arch2', online: false, lastOnlineTime: 1_690_000_000_000 },
    ]);
    expect(await admin.serverStatus()).toMatchObject({ serverId: S1, channelsTotal: 3, channelsDisconnected: 1, channelsError: 1, totalSamplesWritten: 1050, totalSamplesDropped: 9 });
    const channel = await admin.channel('RF/Power');
    expect(channel).toMatchObject({ channelName: 'RF/Power', state: 'error', errorMessage: 'Invalid option', totalSamplesDropped: 7 });
    expect(server.admin.requests.at(-1)!.path).toContain('/channels/all/by-name/RF~2FPower');
    expect(await admin.channel('nope')).toBeUndefined();
    const offline = await admin.serverChannels(S2);
    expect(offline.statusAvailable).toBe(false);
    expect(offline.channels[0]).toMatchObject({ channelName: 'VAC:Gauge1', state: null, totalSamplesWritten: null });
    const q1 = (await admin.serverChannels(S1)).channels.find((c) => c.channelName === 'MAG:Q1:Current')!;
    expect(q1).toMatchObject({ decimationLevels: [0, 30], decimationLevelToRetentionPeriod: { 0: 864000, 30: 0 }, totalSamplesWritten: 1000 });
    await http.close();
  });

  it('POST without the right password: a clear permanent error on the 403', async () => {
    const http = client();
    const wrong = new PvArchiverAdmin(http, server.admin.origin, { password: 'nope' });
    let error: unknown;
    try {
      await wrong.runCommands([{ commandType: 'remove_channel', channelName: 'MAG:Q1:Current' }]);
    } catch (err) {
      error = err;
    }
    expect(classifyError(error)).toBe('permanent');
    expect((error as Error).message).toContain('run-archive-configuration-commands: the server refused the credentials (HTTP 403)');
    await expect(new PvArchiverAdmin(http, server.admin.origin).runCommands([])).rejects.toThrow('needs the admin password');
    expect(server.model.channels).toHaveLength(4);
    await http.close();
  });

  it('a 500 with per-command results is a partial result; a 503 without results is transient', async () => {
    const http = client();
    const admin = new PvArchiverAdmin(http, server.admin.origin, { password: 'pa55' });
    const result = await admin.runCommands([
      { commandType: 'add_channel', channelName: 'NEW:One', serverId: S1, controlSystemType: 'channel_access', enabled: true },
      { commandType: 'remove_channel', channelName: 'NOT:THERE' },
      { commandType: 'rename_channel', oldChannelName: 'MAG:Q2:Current', newChannelName: 'MAG:Q2:Renamed' },
    ]);
    expect(result.ok).toBe(false);
    expect(result.results.map((r) => r.success)).toEqual([true, false, true]);
    expect(result.results[1]!.errorMessage).toContain('does not exist');
    expect(server.model.channels.map((c) => c.name)).toContain('MAG:Q2:Renamed');
    server.model.databaseDown = true;
    let error: unknown;
    try {
      await admin.runCommands([{ commandType: 'remove_channel', channelName: 'NEW:One' }]);
    } catch (err) {
      error = err;
    }
    expect(classifyError(error)).toBe('transient');
    expect((error as Error).message).toContain('HTTP 503: Could not access the database: timeout');
    await http.close();
  });
});

describe('pv-archiver-status', () => {
  it('servers online, channels by state (unknown while offline), samples written and dropped; promtool accepts it', async () => {
    const registry = new Registry();
    const snapshotPath = path.join(dir, 'status.json');
    const record = await runPipeline({
      pipeline: statusPipeline, params: { url: server.admin.origin, snapshot: snapshotPath },
      stateDir: path.join(dir, 'state'), log: createLogger({ level: 'silent' }), registry,
    });
    expect(record.status).toBe('succeeded');
    const text = await registry.metrics();
    expect(text).toContain(`pv_archiver_server_online{server_id="${S1}",server_name="arch1"} 1`);
    expect(text).toContain(`pv_archiver_server_online{server_id="${S2}",server_name="arch2"} 0`);
    expect(text).toContain(`pv_archiver_server_last_online_timestamp_seconds{server_id="${S2}",server_name="arch2"} 1690000000`);
    expect(text).toContain(`pv_archiver_channels{server_id="${S1}",server_name="arch1",state="ok"} 1`);
    expect(text).toContain(`pv_archiver_channels{server_id="${S1}",server_name="arch1",state="disconnected"} 1`);
    expect(text).toContain(`pv_archiver_channels{server_id="${S1}",server_name="arch1",state="disabled"} 0`);
    expect(text).toContain(`pv_archiver_channels{server_id="${S2}",server_name="arch2",state="unknown"} 1`);
    expect(text).toContain(`pv_archiver_samples_written{server_id="${S1}",server_name="arch1"} 1050`);
    expect(text).toContain(`pv_archiver_samples_dropped{server_id="${S1}",server_name="arch1"} 9`);
    expect(text).not.toContain(`pv_archiver_samples_written{server_id="${S2}"`);
    const doc = JSON.parse(await readFile(snapshotPath, 'utf8')) as { thisServer: { serverName: string }; cluster: unknown[]; channelsByServer: { channels: unknown[] }[] };
    expect(doc.thisServer.serverName).toBe('arch1');
    expect(doc.channelsByServer.map((c) => c.channels.length)).toEqual([3, 1]);
    const file = path.join(dir, 'pv.prom');
    await writeFile(file, text);
    const check = spawnSync('sh', ['-c', `promtool check metrics < ${JSON.stringify(file)}`], { encoding: 'utf8' });
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('an admin API answering HTML fails the run with the URL, writing no snapshot', async () => {
    server.admin.fault('/cluster-status', { kind: 'html' });
    const snapshotPath = path.join(dir, 'status-bad.json');
    const record = await runPipeline({
      pipeline: statusPipeline, params: { url: server.admin.origin, snapshot: snapshotPath },
      stateDir: path.join(dir, 'state'), log: createLogger({ level: 'silent' }), registry: new Registry(),
    });
    expect(record.status).toBe('failed');
    expect(record.errors[0]!.message).toContain(`${server.admin.origin}/admin/api/1.0/cluster-status: decode: expected JSON but the server sent text/html`);
    await expect(readFile(snapshotPath)).rejects.toThrow();
  });
});

describe('pv-archiver-config', () => {
  const run = (params: Record<string, unknown>) => runPipeline({
    pipeline: configPipeline,
    params: { url: server.admin.origin, ...params },
    stateDir: path.join(dir, 'state'), log: createLogger({ level: 'silent' }), registry: new Registry(),
  });
  beforeAll(() => { process.env.TEST_PV_PASSWORD = 'pa55'; });

  it('exports a server\'s configuration as its XML file', async () => {
    const file = path.join(dir, 'arch1.xml');
    const record = await run({ action: 'export', serverId: S1, file, out: path.join(dir, 'export.json') });
    expect(record.status).toBe('succeeded');
    expect(await readFile(file, 'utf8')).toBe(configurationXml(server.model.channels.filter((c) => c.serverId === S1)));
  });

  it('an import where some channels fail is a partial result: every outcome recorded, failures counted, successes applied', async () => {
    const file = path.join(dir, 'import.xml');
    await writeFile(file, configurationXml([
      { name: 'NEW:A', serverId: S1 }, { name: 'NEW:Broken', serverId: S1 }, { name: 'VAC:Gauge1', serverId: S1 }, { name: 'MAG:Q1:Current', serverId: S1, enabled: false },
    ]));
    server.model.failing = ['NEW:Broken'];
    const out = path.join(dir, 'import.json');
    const record = await run({ action: 'import', serverId: S1, file, addChannels: true, updateChannels: true, passwordEnv: 'TEST_PV_PASSWORD', out });
    expect(record.status).toBe('succeeded');
    expect(record.counts.errors.permanent).toBe(2);
    const result = JSON.parse(await readFile(out, 'utf8')) as { outcomes: { channel: string; success: boolean; errorMessage?: string }[] };
    expect(result.outcomes.map((o) => [o.channel, o.success])).toEqual([['NEW:A', true], ['MAG:Q1:Current', true], ['NEW:Broken', false], ['VAC:Gauge1', false]]);
    expect(result.outcomes.find((o) => o.channel === 'VAC:Gauge1')!.errorMessage).toContain('different server');
    expect(server.model.channels.map((c) => c.name)).toContain('NEW:A');
    expect(server.model.channels.find((c) => c.name === 'MAG:Q1:Current')!.enabled).toBe(false);
  });

  it('commands from a JSON file; bad credentials fail the run clearly and change nothing', async () => {
    const file = path.join(dir, 'commands.json');
    await writeFile(file, JSON.stringify({ commands: [{ commandType: 'remove_channel', channelName: 'MAG:Q2:Current' }, { commandType: 'remove_channel', channelName: 'GONE' }] }));
    const out = path.join(dir, 'commands.json.out.json');
    const ok = await run({ action: 'commands', file, passwordEnv: 'TEST_PV_PASSWORD', out });
    expect(ok.status).toBe('succeeded');
    expect(ok.counts.errors.permanent).toBe(1);
    const result = JSON.parse(await readFile(out, 'utf8')) as { outcomes: { channel: string; success: boolean }[] };
    expect(result.outcomes.map((o) => [o.channel, o.success])).toEqual([['MAG:Q2:Current', true], ['GONE', false]]);

    await writeFile(file, JSON.stringify([{ commandType: 'remove_channel', channelName: 'MAG:Q1:Current' }]));
    process.env.TEST_PV_WRONG = 'wrong';
    const denied = await run({ action: 'commands', file, passwordEnv: 'TEST_PV_WRONG', out: path.join(dir, 'denied.json') });
    expect(denied.status).toBe('failed');
    expect(denied.errors[0]!.message).toContain('refused the credentials (HTTP 403)');
    expect(server.model.channels.map((c) => c.name)).toContain('MAG:Q1:Current');

    await writeFile(file, '{"commands": "not a list"}');
    const bad = await run({ action: 'commands', file, passwordEnv: 'TEST_PV_PASSWORD', out: path.join(dir, 'bad.json') });
    expect(bad.status).toBe('failed');
    expect(bad.errors[0]!.message).toContain('expected {"commands": [{"commandType": …}, …]}');
  });
});
