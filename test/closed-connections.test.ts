/**
 * The process-wide guard against BullMQ's unheld "Connection is closed." (src/closed-connections.ts):
 * in a process of its own, as the CLI installs it, against the test's Redis; and the test
 * runner's own (`vitest.config.ts`), in a vitest of its own.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers/world.ts';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Each child's limit: `spawnSync` holds this process's event loop, so the test's own timeout cannot
 * end a child that hangs; this does (killed, its status null: the test fails saying so).
 */
const CHILD_LIMIT_MS = 60_000;

/** Runs `body` as an ES module in the repository (tsx loaded), after the guard when `guard`; its exit code and stderr. */
function run(body: string, guard: boolean): { code: number | null; stderr: string } {
  const script = `
    import { Redis } from 'ioredis';
    import { letClosedConnectionsGo } from './src/closed-connections.ts';
    if (${guard}) letClosedConnectionsGo();
    ${body}
    setTimeout(() => process.exit(0), 500);`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, encoding: 'utf8', env: { ...process.env, REDIS_URL }, timeout: CHILD_LIMIT_MS });
  return { code: r.status, stderr: r.stderr };
}

// A command nobody holds, on a connection closed before it was answered: ioredis rejects it with
// "Connection is closed.", as it does the INFO of a BullMQ connection closed while it starts.
const UNHELD_ON_CLOSED = `const client = new Redis(process.env.REDIS_URL); void client.info(); client.disconnect();`;

describe('letClosedConnectionsGo', () => {
  it('lets ioredis\'s "Connection is closed." go when nobody holds it, where Node alone ends the process with 1', () => {
    const bare = run(UNHELD_ON_CLOSED, false);
    expect(bare.code).toBe(1);
    expect(bare.stderr).toContain('Error: Connection is closed.');
    expect(run(UNHELD_ON_CLOSED, true)).toEqual({ code: 0, stderr: '' });
  }, 2 * CHILD_LIMIT_MS);

  it('ends the process as Node would on any other unhandled rejection, that message from elsewhere included', () => {
    for (const body of [`Promise.reject(new Error('boom'));`, `Promise.reject(new Error('Connection is closed.'));`]) {
      const guarded = run(body, true);
      expect(guarded.code).toBe(1);
      expect(guarded.stderr).toMatch(/Error: (boom|Connection is closed\.)/);
    }
  }, 2 * CHILD_LIMIT_MS);
});

/** A vitest run of the project's configuration on `unhandled.fixture.ts`, whose one test passes and leaves `reject` unheld. */
function runVitest(reject: 'closed-connection' | 'elsewhere', withHook: boolean): { code: number | null; output: string } {
  const r = spawnSync(process.execPath, [path.join(REPO, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'test/helpers/unhandled/vitest.config.ts'], {
    cwd: REPO, encoding: 'utf8', env: { ...process.env, REDIS_URL, REJECT: reject, WITHOUT_HOOK: withHook ? '' : '1', NO_COLOR: '1' }, timeout: CHILD_LIMIT_MS,
  });
  return { code: r.status, output: r.stdout + r.stderr };
}

describe('the test runner', () => {
  it('lets that same error go in a test\'s process, and fails the run on any other unhandled rejection', () => {
    const bare = runVitest('closed-connection', false);
    expect(bare.output).toContain('1 passed');
    expect(bare.output).toContain('Connection is closed.');
    expect(bare.code).toBe(1);

    const hooked = runVitest('closed-connection', true);
    expect(hooked.output).toContain('1 passed');
    expect(hooked.output).not.toContain('Unhandled');
    expect(hooked.code).toBe(0);

    const elsewhere = runVitest('elsewhere', true);
    expect(elsewhere.output).toContain('1 passed');
    expect(elsewhere.output).toContain('Connection is closed.');
    expect(elsewhere.code).toBe(1);
  }, 3 * CHILD_LIMIT_MS);
});
