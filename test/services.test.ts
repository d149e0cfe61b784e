/**
 * The servers the integration tests need are up (test/global-setup.ts ran
 * scripts/services.sh), and scripts/services.sh does what other tests rely on:
 * a second run changes nothing, and clickhouse-stop / clickhouse-start take a
 * server down and bring it back on the same URL with its data.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'amqplib';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { parseEnvFile } from './global-setup.ts';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const script = path.join(projectRoot, 'scripts', 'services.sh');

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: test/global-setup.ts should have set it`);
  return value;
}

/** Runs scripts/services.sh with `args`; `servicesDir` picks the state directory. */
function services(args: string[], servicesDir?: string) {
  const env = { ...process.env };
  if (servicesDir) env.SLUICE_SERVICES_DIR = servicesDir;
  const result = spawnSync('bash', [script, ...args], { cwd: projectRoot, env, encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

function envFileOf(servicesDir: string): Record<string, string> {
  return parseEnvFile(readFileSync(path.join(servicesDir, 'env'), 'utf8'));
}

async function query(baseUrl: string, sql: string): Promise<string> {
  const response = await fetch(`${baseUrl}/`, { method: 'POST', body: sql });
  const body = await response.text();
  if (!response.ok) throw new Error(`ClickHouse answered ${response.status} to ${sql}: ${body}`);
  return body.trim();
}

async function ping(baseUrl: string): Promise<string> {
  const response = await fetch(`${baseUrl}/ping`);
  return response.text();
}

const defaultServicesDir = process.env.SLUICE_SERVICES_DIR ?? path.join(projectRoot, '.sluice', 'services');

describe('test services', () => {
  it('exports the service URLs to the tests', () => {
    expect(required('SLUICE_TEST_CLICKHOUSE_URL')).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(required('SLUICE_TEST_CLICKHOUSE_NATIVE_PORT')).toMatch(/^\d+$/);
    expect(required('SLUICE_TEST_AMQP_URL')).toBe('amqp://guest:guest@127.0.0.1:5672');
    expect(inject('SLUICE_TEST_CLICKHOUSE_URL')).toBe(process.env.SLUICE_TEST_CLICKHOUSE_URL);
  });

  it('ClickHouse answers /ping and reports its version over HTTP', async () => {
    const url = required('SLUICE_TEST_CLICKHOUSE_URL');
    expect(await ping(url)).toBe('Ok.\n');
    const version = await query(url, 'SELECT version()');
    expect(version).toMatch(/^\d+\.\d+(\.\d+)*$/);
  });

  it('ClickHouse stores and returns rows', async () => {
    const url = required('SLUICE_TEST_CLICKHOUSE_URL');
    const table = `services_test_${process.pid}`;
    await query(url, `CREATE TABLE default.${table} (x UInt64) ENGINE = MergeTree ORDER BY x`);
    try {
      await query(url, `INSERT INTO default.${table} SELECT number FROM system.numbers LIMIT 100`);
      expect(await query(url, `SELECT count(), sum(x) FROM default.${table}`)).toBe('100\t4950');
    } finally {
      await query(url, `DROP TABLE IF EXISTS default.${table}`);
    }
  });

  it('RabbitMQ accepts an AMQP connection and routes a message', async () => {
    const connection = await connect(required('SLUICE_TEST_AMQP_URL'));
    try {
      const channel = await connection.createChannel();
      const { queue } = await channel.assertQueue('', { exclusive: true });
      channel.sendToQueue(queue, Buffer.from('hello'));
      let message = await channel.get(queue, { noAck: true });
      for (let i = 0; message === false && i < 50; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        message = await channel.get(queue, { noAck: true });
      }
      expect(message && message.content.toString()).toBe('hello');
      await channel.close();
    } finally {
      await connection.close();
    }
  });

  it('a second run of scripts/services.sh is a no-op', () => {
    const pidFile = path.join(defaultServicesDir, 'clickhouse', 'pid');
    const pidBefore = readFileSync(pidFile, 'utf8');
    const envBefore = envFileOf(defaultServicesDir);

    const run = services([]);
    expect(run.status, run.output).toBe(0);
    expect(run.output).toMatch(/ClickHouse already running/);
    expect(run.output).not.toMatch(/starting ClickHouse/);
    expect(readFileSync(pidFile, 'utf8')).toBe(pidBefore);
    expect(envFileOf(defaultServicesDir)).toEqual(envBefore);
    expect(envBefore.SLUICE_TEST_CLICKHOUSE_URL).toBe(process.env.SLUICE_TEST_CLICKHOUSE_URL);
  });
});

// A second instance in a state directory of its own, as a second checkout of the
// project would have: it must not clash with the suite's server, and its outage
// commands must not touch the suite's server.
describe('scripts/services.sh with a second state directory', () => {
  const servicesDir = mkdtempSync(path.join(tmpdir(), 'sluice-services-'));

  afterAll(() => {
    const run = services(['stop'], servicesDir);
    rmSync(servicesDir, { recursive: true, force: true });
    expect(run.status, run.output).toBe(0);
  });

  it('starts its own ClickHouse on other ports, and restarts it on the same ones with its data', async () => {
    const up = services([], servicesDir);
    expect(up.status, up.output).toBe(0);
    const env = envFileOf(servicesDir);
    const url = env.SLUICE_TEST_CLICKHOUSE_URL;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(url).not.toBe(process.env.SLUICE_TEST_CLICKHOUSE_URL);
    expect(env.SLUICE_TEST_CLICKHOUSE_NATIVE_PORT).not.toBe(process.env.SLUICE_TEST_CLICKHOUSE_NATIVE_PORT);
    expect(await ping(url)).toBe('Ok.\n');

    await query(url, 'CREATE TABLE default.kept (x UInt64) ENGINE = MergeTree ORDER BY x');
    await query(url, 'INSERT INTO default.kept VALUES (1), (2), (3)');

    const stop = services(['clickhouse-stop'], servicesDir);
    expect(stop.status, stop.output).toBe(0);
    await expect(ping(url)).rejects.toThrow();
    // The suite's own server is untouched.
    expect(await ping(required('SLUICE_TEST_CLICKHOUSE_URL'))).toBe('Ok.\n');

    const start = services(['clickhouse-start'], servicesDir);
    expect(start.status, start.output).toBe(0);
    expect(envFileOf(servicesDir)).toEqual(env);
    expect(await ping(url)).toBe('Ok.\n');
    expect(await query(url, 'SELECT sum(x) FROM default.kept')).toBe('6');
  });
});
