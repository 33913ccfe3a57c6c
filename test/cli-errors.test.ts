/**
 * A command that cannot reach or use PostgreSQL says which, and which variable to check, with the
 * server's own message (exit code 3): run as a user runs it, against the real server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNudge } from './helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { databaseUrl, PG_ADMIN_URL } from './helpers/env.ts';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});

afterAll(async () => {
  await t?.drop();
});

/** `explain 1` (or `args`) with the environment's PostgreSQL settings replaced by `env`. */
function run(env: Record<string, string | undefined>, args = ['explain', '1']) {
  return runNudge(args, { DATABASE_URL: undefined, DATABASE_READ_URL: undefined, NUDGE_QUEUE_PREFIX: `nudge_cli_errors_${process.pid}`, ...env });
}

describe('a command whose database cannot be used', () => {
  it('names a database that does not exist, and that migrate creates it', async () => {
    const r = await run({ DATABASE_URL: databaseUrl('nudge_no_such_database') });
    expect(r.stderr).toBe('nudge: PostgreSQL has no such database (`nudge migrate` creates it; check DATABASE_URL): database "nudge_no_such_database" does not exist\n');
    expect(r.code).toBe(3);
  });

  it('names a connection the server refuses (here, an unknown user)', async () => {
    const url = new URL(t.url);
    url.username = 'nudge_no_such_role';
    const r = await run({ DATABASE_URL: url.toString() });
    expect(r.stderr).toBe('nudge: PostgreSQL refused the connection (check the user, the password and sslmode in DATABASE_URL): role "nudge_no_such_role" does not exist\n');
    expect(r.code).toBe(3);
  });

  it('names a host that does not resolve', async () => {
    const r = await run({ DATABASE_URL: 'postgres://root@nudge-no-such-host.invalid:5432/nudge' });
    expect(r.stderr).toMatch(/^nudge: cannot resolve a host name \(check DATABASE_URL\): getaddrinfo \w+ nudge-no-such-host\.invalid\n$/);
    expect(r.code).toBe(3);
  });

  it('names the database whose statement failed: a primary without the schema, with a replica set', async () => {
    // A server's own database, without Nudge's tables: the statement, not the connection, fails.
    const r = await run({ DATABASE_URL: PG_ADMIN_URL, DATABASE_READ_URL: t.url });
    expect(r.stderr).toBe('nudge: the schema is missing (run `nudge migrate`; check DATABASE_URL): relation "stages" does not exist\n');
    expect(r.code).toBe(3);
  });

  it('names DATABASE_READ_URL when the read replica fails, and DATABASE_URL when the primary does', async () => {
    const replica = await run({ DATABASE_URL: t.url, DATABASE_READ_URL: 'postgres://root@127.0.0.1:1/nudge' }, ['tick', '--now', '2026-12-01T09:00:00Z']);
    expect(replica.stderr).toMatch(/^nudge: cannot connect to PostgreSQL \(is it running\? check DATABASE_READ_URL\): .*ECONNREFUSED 127\.0\.0\.1:1\n$/);
    expect(replica.code).toBe(3);
    const primary = await run({ DATABASE_URL: 'postgres://root@127.0.0.1:1/nudge', DATABASE_READ_URL: t.url });
    expect(primary.stderr).toMatch(/^nudge: cannot connect to PostgreSQL \(is it running\? check DATABASE_URL\): .*ECONNREFUSED 127\.0\.0\.1:1\n$/);
    expect(primary.code).toBe(3);
  });
});
