/**
 * vitest globalSetup: makes sure the servers the integration tests talk to run.
 *
 * Runs `scripts/services.sh` once before the suite (RabbitMQ on 127.0.0.1:5672, a
 * ClickHouse server of our own under `.sluice/services/clickhouse/`), then reads the
 * `.sluice/services/env` file it writes and puts its variables into `process.env`,
 * which the test workers inherit. They are also `provide`d, for `inject()`:
 *
 * @example
 * ```ts
 * const url = process.env.SLUICE_TEST_CLICKHOUSE_URL!; // http://127.0.0.1:8123
 * const same = inject('SLUICE_TEST_CLICKHOUSE_URL');
 * ```
 *
 * When the script fails, the suite fails with the script's own output.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

/** The variables `scripts/services.sh` writes to its env file. */
export const serviceEnvNames = [
  'SLUICE_TEST_CLICKHOUSE_URL',
  'SLUICE_TEST_CLICKHOUSE_NATIVE_PORT',
  'SLUICE_TEST_AMQP_URL',
] as const;

declare module 'vitest' {
  export interface ProvidedContext {
    SLUICE_TEST_CLICKHOUSE_URL: string;
    SLUICE_TEST_CLICKHOUSE_NATIVE_PORT: string;
    SLUICE_TEST_AMQP_URL: string;
  }
}

const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const servicesScript = join(projectRoot, 'scripts', 'services.sh');

/** Parses `KEY=value` lines (an optional `export `, `#` comments and blank lines allowed). */
export function parseEnvFile(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) continue;
    let value = match[2];
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1);
    vars[match[1]] = value;
  }
  return vars;
}

export default function setup(project: TestProject): void {
  const servicesDir = process.env.SLUICE_SERVICES_DIR ?? join(projectRoot, '.sluice', 'services');
  const result = spawnSync('bash', [servicesScript], {
    cwd: projectRoot,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    // apt-get may have to install ClickHouse on a fresh machine.
    timeout: 30 * 60_000,
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim();
  if (result.error || result.status !== 0) {
    const how = result.error
      ? result.error.message
      : result.signal
        ? `was killed by ${result.signal}`
        : `exited with status ${result.status}`;
    throw new Error(
      `scripts/services.sh ${how}: the servers the tests need are not available.\n` +
        `Run 'bash scripts/services.sh' to see why.\n--- its output ---\n${output}`,
    );
  }

  const envFile = join(servicesDir, 'env');
  let vars: Record<string, string>;
  try {
    vars = parseEnvFile(readFileSync(envFile, 'utf8'));
  } catch (error) {
    throw new Error(`scripts/services.sh succeeded but ${envFile} cannot be read: ${String(error)}\n${output}`);
  }
  const missing = serviceEnvNames.filter((name) => !vars[name]);
  if (missing.length > 0) {
    throw new Error(`${envFile} lacks ${missing.join(', ')}; scripts/services.sh said:\n${output}`);
  }

  for (const [name, value] of Object.entries(vars)) process.env[name] = value;
  for (const name of serviceEnvNames) project.provide(name, vars[name]);
}
