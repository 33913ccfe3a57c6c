/** Where the test services are: the machine's PostgreSQL and Redis unless the environment says otherwise. */
export const PG_ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://root@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export function databaseUrl(name: string): string {
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

const IN_CI = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';

/**
 * Whether tests that need a program beside Node (`missing` says which, and how to get it) can run:
 * skipped with a warning where it is not found, except in CI, where every test runs.
 */
export function runnableWith(found: boolean, tests: string, missing: string): boolean {
  if (!found && IN_CI) throw new Error(`CI: ${missing}, for ${tests}`);
  if (!found) console.warn(`skipped: ${tests} (${missing})`);
  return found;
}
