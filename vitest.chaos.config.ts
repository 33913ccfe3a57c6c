import { defineConfig } from 'vitest/config';

/** `npm run chaos`: the soak under random faults (test/chaos), apart from `npm test`. */
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.soak.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 600_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
