import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each file owns its database and queue prefix, so files run in parallel; two workers on 2 cores.
    pool: 'forks',
    maxWorkers: 2,
  },
});
