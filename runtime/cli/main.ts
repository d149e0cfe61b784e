/**
 * sluice's one command line: `sluice <command> …` (npm scripts call it: `npm run
 * pipeline -- …` is `sluice pipeline …`). Each command lives in its own file.
 */
import { UsageError } from './args.ts';

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ main(argv: string[]): Promise<number> }> }> = {
  pipeline: { summary: 'run, list, check pipelines; list runs', load: () => import('./pipeline-command.ts') },
  query: { summary: 'run SQL against the ClickHouse store', load: () => import('./query-command.ts') },
  serve: { summary: 'the daemon: run pipelines when trigger messages arrive (RabbitMQ)', load: () => import('./serve-command.ts') },
  fire: { summary: 'publish a trigger message; --wait for its result', load: () => import('./fire-command.ts') },
  users: { summary: 'admin API users: add (password on stdin), list, remove', load: () => import('./users-command.ts') },
};

function usage(): string {
  return [
    'usage: sluice <command> [args]',
    '',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`),
    '',
    'See README.md for the full reference.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(usage() + '\n');
    return command ? 0 : 2;
  }
  const entry = COMMANDS[command];
  if (!entry) {
    process.stderr.write(`sluice: unknown command "${command}"; commands: ${Object.keys(COMMANDS).join(', ')}\n`);
    return 2;
  }
  const module = await entry.load();
  return module.main(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    // exit explicitly (once stdout is flushed): pooled connections must not keep a finished run alive
    process.stdout.write('', () => process.exit(code));
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`sluice: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`sluice: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
