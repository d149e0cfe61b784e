import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Starts RabbitMQ and our ClickHouse (scripts/services.sh) and exports their URLs.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Child processes, not worker threads: tests spawn processes and send signals.
    pool: 'forks',
  },
});
