/**
 * The project's test configuration, running only `unhandled.fixture.ts`: what a test process's
 * unhandled rejection does to a run (test/closed-connections.test.ts). `WITHOUT_HOOK=1` leaves
 * out the project's `onUnhandledError`, to show that the fixture's rejection fails a run without it.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import base from '../../../vitest.config.ts';

const { onUnhandledError, ...test } = base.test!;

export default defineConfig({
  root: fileURLToPath(new URL('../../..', import.meta.url)),
  test: {
    ...test,
    include: ['test/helpers/unhandled/unhandled.fixture.ts'],
    globalSetup: [],
    maxWorkers: 1,
    ...(process.env.WITHOUT_HOOK ? {} : { onUnhandledError }),
  },
});
