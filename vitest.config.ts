import { defineConfig } from 'vitest/config';
import { isClosedConnection } from './src/closed-connections.ts';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each file owns its database and queue prefix, so files run in parallel; two workers on 2 cores.
    pool: 'forks',
    maxWorkers: 2,
    // BullMQ's unheld "Connection is closed." (taskforcesh/bullmq#3546), which the CLI lets go too
    // (src/closed-connections.ts): a Worker a test closes while it starts would fail the run with
    // every test passed. Any other unhandled error still fails it.
    onUnhandledError: (error) => !isClosedConnection(error),
  },
});
