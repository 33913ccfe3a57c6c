/**
 * PostgreSQL restarted under running daemons, on a server of the test's own (stopped as a crash
 * would stop it, then started again on the same port and data): the daemons carry on, and the
 * counts from the SMTP server and `deliveries` say every due email went exactly once.
 *
 * It needs the machine's PostgreSQL server binaries (`pg_config --bindir` or `PG_BINDIR`). Where
 * there are none (the services in containers, say) it is skipped, saying so, except in CI.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNudge } from './helpers/cli.ts';
import { closingInThreeDays, DUE_NOW_JOURNEY, DUE_NOW_TEMPLATE, moreScans, startDaemon, until, type Daemon } from './helpers/daemon.ts';
import { REDIS_URL, runnableWith } from './helpers/env.ts';
import { postgresBinaries, startOwnPostgres, type OwnPostgres } from './helpers/postgres-server.ts';
import { removeQueueKeys, testQueuePrefix } from './helpers/queue.ts';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.ts';

const binaries = postgresBinaries();
runnableWith(!!binaries, 'PostgreSQL restarted under running daemons', 'no PostgreSQL server binaries; set PG_BINDIR');

let server: OwnPostgres;
let smtp: SmtpSink;
let templatesDir: string;
let env: Record<string, string>;
const prefix = testQueuePrefix();
let daemons: Daemon[] = [];

async function query(text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: server.url('nudge') });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

/**
 * Before the count fails: what the daemons logged about each opportunity emailed twice, and its
 * rows, for whoever reads the failure (seen once in about 25 runs with a 2 s job lock, on a
 * loaded machine).
 */
async function explainDuplicates(addresses: string[]): Promise<void> {
  const seen = new Set<string>();
  const twice = addresses.filter((a) => (seen.has(a) ? true : (seen.add(a), false)));
  const ids = (await query('select o.id from opportunities o join contacts c on c.id = o.primary_contact_id where c.email = any($1)', [twice]))
    .rows.map((r: { id: string }) => Number(r.id));
  const lines = daemons.flatMap((d, i) => d.logs.filter((l) => ids.includes(l.opportunityId as number)).map((l) => ({ daemon: i, ...l })));
  const rows = (await query('select * from deliveries where opportunity_id = any($1) order by id', [ids])).rows;
  console.error(`emailed twice: opportunities ${ids.join(', ')}\n${lines.map((l) => JSON.stringify(l)).join('\n')}\nrows: ${JSON.stringify(rows)}`);
}

describe.skipIf(!binaries)('PostgreSQL restarted under running daemons', () => {
  beforeAll(async () => {
    server = await startOwnPostgres();
    smtp = await startSmtpSink();
    templatesDir = mkdtempSync(path.join(os.tmpdir(), 'nudge-templates-'));
    writeFileSync(path.join(templatesDir, 'journeys.yaml'), DUE_NOW_JOURNEY);
    writeFileSync(path.join(templatesDir, 't.hbs'), DUE_NOW_TEMPLATE);
    env = {
      DATABASE_URL: server.url('nudge'), REDIS_URL, SMTP_URL: smtp.url, NUDGE_QUEUE_PREFIX: prefix,
      NUDGE_TEMPLATES_DIR: templatesDir, MAIL_FROM: 'Acme Travel <sales@acme.test>', PUBLIC_URL: 'https://nudge.acme.test',
      // The job lock at its default (30 s): no daemon is killed here. A lock short enough to lapse
      // while a daemon records again a claim the crash lost (2 s, on a loaded machine) can let
      // another daemon take the job and send it a second time: the lock is all that guards that
      // moment. The one duplicate seen with 2 s (about 25 runs) has a likelier cause, found since
      // and fixed: the id of a claim lost with its COMMIT, drawn again after the restart by another
      // send's claim, was taken for the lost claim's own (test/deliver.test.ts, "whose id
      // PostgreSQL gives again after a crash"). Not confirmed as that run's cause.
      NUDGE_SECRET: 'test-secret-0123456789abcdef', NUDGE_RETRY_BASE_MS: '200', NUDGE_CONCURRENCY: '2',
    };
    const migrated = await runNudge(['migrate'], env);
    expect(migrated.code, migrated.stderr).toBe(0);
  }, 60_000);

  afterAll(async () => {
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
    await server?.stop();
    await smtp?.close();
    await removeQueueKeys(prefix, REDIS_URL);
    if (templatesDir) rmSync(templatesDir, { recursive: true, force: true });
  });

  it('the daemons say they are not ready, reconnect and finish the batch: every email once, every row sent', async () => {
    daemons = [startDaemon(env), startDaemon(env)];
    const ports = await Promise.all(daemons.map((d) => d.port));
    expect(ports.every((p) => p !== null)).toBe(true);
    const ready = async () => {
      const r = await fetch(`http://127.0.0.1:${ports[0]}/readyz`);
      return { status: r.status, body: await r.json() as { checks: Record<string, string> } };
    };
    const closing = closingInThreeDays();
    await query(`
      with c as (
        insert into contacts (email, first_name, time_zone)
        select 'r-' || i || '@customer.test', 'R' || i, 'UTC' from generate_series(1, 400) as i returning id
      )
      insert into opportunities (title, closing_date, stage, primary_contact_id)
      select 'Deal ' || id, $1::date, 'proposal', id from c`, [closing]);

    await until('the first emails', () => smtp.received.length >= 50);
    await server.crash();
    const atCrash = smtp.received.length;
    // The readiness probe says so while PostgreSQL is down, and again once it is back.
    const down = await ready();
    expect(down.status).toBe(503);
    expect(down.body.checks).toMatchObject({ redis: 'ok' });
    expect(down.body.checks.postgres).not.toBe('ok');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await server.start();
    await until('ready again', async () => (await ready()).status === 200, 30_000);
    expect(atCrash).toBeLessThan(400);

    await until('400 sent', async () => Number((await query(`select count(*) from deliveries where status = 'sent'`)).rows[0].count) >= 400, 90_000);
    await moreScans(daemons); // still nothing doubled
    const addresses = smtp.received.map((m) => m.envelopeTo[0]!);
    if (addresses.length !== 400) await explainDuplicates(addresses);
    expect(addresses).toHaveLength(400);
    expect(new Set(addresses).size).toBe(400);
    // No SMTP fault: every outcome is known, so every row is `sent`, none `unknown`.
    const statuses = (await query('select status, count(*)::int as n from deliveries group by status')).rows;
    expect(statuses).toEqual([{ status: 'sent', n: 400 }]);

    for (const d of daemons) d.child.kill('SIGTERM');
    expect(await Promise.all(daemons.map((d) => d.exited))).toEqual([0, 0]);
    // The jobs that failed while PostgreSQL was down said so in a line a minute in each process,
    // not a line each. The crash met the sends under way one of two ways: a job before its final
    // dot fails (that line); one past it keeps its slot, trying again to record its send until
    // PostgreSQL is back. When every slot held a send past its dot as PostgreSQL went, no job
    // started, and so none failed, before it came back: a CI run met that once, with the SMTP
    // server in the loaded test process slow to answer (the same crash with the server answering
    // in 400 ms gave no failed job and 12 such tries, two runs of two).
    const lines = daemons.flatMap((d) => d.logs);
    const unreachable = lines.filter((l) => l.msg === 'delivery jobs fail while PostgreSQL cannot be reached; BullMQ retries each with backoff');
    const recordingAgain = lines.filter((l) => l.msg === 'could not record the send yet (PostgreSQL unreachable or refusing for now); trying again');
    expect(lines.filter((l) => l.msg === 'delivery job failed; BullMQ retries it with backoff')).toEqual([]);
    expect(unreachable.length + recordingAgain.length).toBeGreaterThan(0);
    for (const d of daemons) {
      const errors = d.logs.filter((l) => unreachable.includes(l)).map((l) => l.err);
      expect(errors).toEqual([...new Set(errors)]);
    }
    const logs = JSON.stringify(lines);
    expect(logs).not.toMatch(/@customer\.test/);
    expect(logs).not.toMatch(/Deal \d+/);
  }, 180_000);

  it('a daemon started while PostgreSQL is down waits for it, not ready meanwhile, then sends; a missing database stops it at once', async () => {
    await server.crash();
    const daemon = startDaemon(env);
    daemons = [daemon];
    const waiting = () => daemon.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('PostgreSQL does not answer'));
    await until('the daemon to say it waits for PostgreSQL', () => waiting().length >= 2, 60_000);
    expect(daemon.child.exitCode).toBeNull();
    const port = waiting()[0]!.port as number;
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    const down = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(down.status).toBe(503);
    expect(((await down.json()) as { checks: Record<string, string> }).checks).toMatchObject({ redis: 'ok', process: 'starting: waiting for PostgreSQL' });

    await server.start();
    expect(await daemon.port).toBe(port);
    await until('ready', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 30_000);
    const before = smtp.received.length;
    await query(`
      with c as (
        insert into contacts (email, first_name, time_zone)
        select 'w-' || i || '@customer.test', 'W' || i, 'UTC' from generate_series(1, 30) as i returning id
      )
      insert into opportunities (title, closing_date, stage, primary_contact_id)
      select 'Deal ' || id, $1::date, 'proposal', id from c`, [closingInThreeDays()]);
    await until('30 more sent', () => smtp.received.length >= before + 30, 60_000);
    await moreScans([daemon]); // still nothing doubled
    const late = smtp.received.slice(before).map((m) => m.envelopeTo[0]!);
    expect(late).toHaveLength(30);
    expect(new Set(late).size).toBe(30);
    expect(late.every((a) => a.startsWith('w-'))).toBe(true);
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);

    // What waiting cannot mend is not waited on.
    const missing = await runNudge(['start'], { ...env, PORT: '0', DATABASE_URL: server.url('no_such_database') }, undefined, 20_000);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/no_such_database/);
  }, 180_000);
});
