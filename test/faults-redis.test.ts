/**
 * Redis faults under running daemons, on Redis servers of the test's own: restarted mid-run
 * (empty, as with no persistence; and with its data kept, from a save at shutdown or from an
 * append-only file), failed over to a copy seconds old, emptied with FLUSHALL mid-run, and a Redis Cluster of three
 * masters; PostgreSQL connections cut under running daemons. Also: two daemons and two `work`
 * processes share the work, SIGTERM mid-run leaves nothing stalled, a bad edit of a template or of the
 * journey file while the daemon runs keeps the last good version, and an SMTP server answering 421
 * for a while, then 550 for some recipients, gets each email once and no retry storm, and Redis gone
 * under a daemon is logged in a few JSON lines and does not hold a SIGTERM, idle, mid-batch, under a scan or hung;
 * Redis back in the middle of such a stop hands the process jobs that start nothing and use no attempt. Each ends with counts from the SMTP server and
 * `deliveries`: every due email sent exactly once.
 */
import pg from 'pg';
import { PG_ADMIN_URL } from './helpers/env.ts';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runNudge } from './helpers/cli.ts';
import { closingInThreeDays, createDueNowWorld, DUE_NOW_JOURNEY, DUE_NOW_TEMPLATE, moreScans, startDaemon, startWorkProcess, until, type Daemon } from './helpers/daemon.ts';
import { deliveries } from './helpers/fixtures.ts';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config.ts';
import { silentLogger } from '../src/logger.ts';
import { DELIVER_QUEUE, deliverQueue, queuePrefix, SCAN_QUEUE } from '../src/queue/queues.ts';
import { Runtime } from '../src/runtime.ts';
import { within } from '../src/settle.ts';
import { freePort } from './helpers/ports.ts';
import { startOwnCluster, startOwnRedis, type OwnRedis } from './helpers/redis-server.ts';
import { scanLockHolders } from './helpers/scan-lock.ts';
import type { World } from './helpers/world.ts';

let world: World;
let redis: OwnRedis;
let daemons: Daemon[] = [];

beforeAll(async () => {
  world = await createDueNowWorld();
  redis = await startOwnRedis();
});

afterAll(async () => {
  await redis?.stop();
  await world?.close();
});

beforeEach(async () => {
  world.smtp.received.length = 0;
  world.smtp.rcptAttempts.clear();
  world.smtp.refuse(null);
  world.smtp.slow(0);
  await sql`truncate deliveries, opportunities, contacts restart identity cascade`.execute(world.database.db);
  redis.cli('flushall');
});

afterEach(async () => {
  for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  // What a daemon killed here had sent arrives after it is gone: counted now, not by the next test.
  await Promise.all(daemons.map((d) => d.exited));
  const settled = await world.smtp.settled();
  daemons = [];
  if (!settled) throw new Error('the SMTP sink still had a client or a message 10 s after the daemons were killed');
  // A test that failed in the middle of a fault leaves its Redis as it was: the next one needs it up.
  await redis.ensureRunning();
});

async function dueNow(n: number): Promise<void> {
  const closing = closingInThreeDays();
  await sql`
    with c as (
      insert into contacts (email, first_name, time_zone)
      select 'r-' || i || '@customer.test', 'R' || i, 'UTC' from generate_series(1, ${n}) as i returning id
    )
    insert into opportunities (title, closing_date, stage, primary_contact_id)
    select 'Deal ' || id, ${closing}::date, 'proposal', id from c`.execute(world.database.db);
}

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { ...world.env, REDIS_URL: redis.url, NUDGE_JOB_LOCK_MS: '2000', NUDGE_RETRY_BASE_MS: '200', NUDGE_CONCURRENCY: '2', ...extra };
}

async function expectEachSentOnce(n: number): Promise<void> {
  await until(`${n} emails`, async () => (await deliveries(world.database.db)).filter((r) => r.status === 'sent').length >= n, 90_000);
  await moreScans(daemons); // still nothing doubled
  const addresses = world.smtp.received.map((m) => m.envelopeTo[0]!);
  expect(addresses).toHaveLength(n);
  expect(new Set(addresses).size).toBe(n);
  const rows = await deliveries(world.database.db);
  expect(rows.filter((r) => r.status === 'sent')).toHaveLength(n);
  expect(rows.filter((r) => r.status !== 'sent')).toEqual([]);
}

async function stopAll(): Promise<void> {
  for (const d of daemons) d.child.kill('SIGTERM');
  expect(await Promise.all(daemons.map((d) => d.exited))).toEqual(daemons.map(() => 0));
}

/** The exit code, or 'still running' after `ms` (then killed): a process that spins does not hold the test for its whole timeout. */
async function exitWithin(daemon: Daemon, ms: number): Promise<number | null | string> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => { timer = setTimeout(() => resolve(`still running after ${ms} ms`), ms); });
  const code = await Promise.race([daemon.exited, late]);
  clearTimeout(timer);
  if (typeof code === 'string') daemon.child.kill('SIGKILL');
  return code;
}

/**
 * SIGTERM to a daemon whose Redis is gone: it exits 0 within 15 s, not 1 after its grace period
 * (the stop waited for Redis), nor never (BullMQ retrying its commands in a loop). Returns its
 * line saying it stops without Redis.
 */
async function stopWithoutRedis(daemon: Daemon): Promise<Record<string, unknown>> {
  const stopping = Date.now();
  daemon.child.kill('SIGTERM');
  expect(await exitWithin(daemon, 30_000)).toBe(0);
  expect(Date.now() - stopping).toBeLessThan(15_000);
  const said = daemon.logs.find((entry) => entry.msg === 'Redis does not answer: stopping without waiting for it');
  expect(said).toBeDefined();
  return said!;
}

/** Every email that arrived is recorded as sent: nothing was cut off in the middle. */
async function expectArrivedRecordedSent(): Promise<void> {
  const rows = await deliveries(world.database.db);
  expect(rows.filter((r) => r.status === 'sent')).toHaveLength(world.smtp.received.length);
  expect(rows.filter((r) => r.status !== 'sent')).toEqual([]);
}

/** The deliver queue's active jobs on `server` (none when the list does not exist). */
function activeJobs(server: OwnRedis): number {
  return Number(server.cli('llen', `${queuePrefix(world.prefix, DELIVER_QUEUE)}:${DELIVER_QUEUE}:active`));
}

function logsMentionNobody(): void {
  const text = JSON.stringify(daemons.flatMap((d) => d.logs));
  expect(text).not.toMatch(/@customer\.test/);
  expect(text).not.toMatch(/Deal \d+/);
}

describe('Redis restarted mid-run, empty', () => {
  it('the daemons reconnect, the scans re-enqueue from PostgreSQL, every email goes once', async () => {
    await dueNow(200);
    daemons = [startDaemon(env()), startDaemon(env())];
    const port = await daemons[0]!.port;
    await until('the first emails', () => world.smtp.received.length >= 30);
    await redis.kill();
    // A scrape while Redis is down answers, without the queue's figures, instead of hanging; it
    // says Redis is down rather than showing the queue's depth of before as current.
    const scrape = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(8_000) });
    expect(scrape.status).toBe(200);
    const text = await scrape.text();
    expect(text).toMatch(/^# TYPE nudge_decisions_total counter$/m);
    expect(text).not.toMatch(/^nudge_bullmq_job_count/m);
    expect(text).toMatch(/^nudge_redis_up 0$/m);
    expect(text).not.toMatch(/^nudge_queue_jobs\{/m);
    await new Promise((r) => setTimeout(r, 1_000));
    await redis.start();
    await expectEachSentOnce(200);
    await stopAll();
    logsMentionNobody();
  }, 180_000);
});

describe('Redis restarted mid-run with its data kept', () => {
  /**
   * 200 emails due under two daemons, the SMTP server slow enough that jobs are active when
   * `restart` stops Redis and starts it again; a key set before it shows the data was kept.
   */
  async function restartedUnderDaemons(server: OwnRedis, restart: () => Promise<void>): Promise<void> {
    await dueNow(200);
    world.smtp.slow(40);
    daemons = [startDaemon(env({ REDIS_URL: server.url })), startDaemon(env({ REDIS_URL: server.url }))];
    await until('the first emails', () => world.smtp.received.length >= 30);
    server.cli('set', 'test:kept', 'yes');
    expect(activeJobs(server)).toBeGreaterThan(0);
    await restart();
    expect(server.cli('get', 'test:kept')).toBe('yes');
    world.smtp.slow(0);
    await expectEachSentOnce(200);
    await stopAll();
    logsMentionNobody();
  }

  it('shut down saving (a graceful restart) and started from its file: the jobs it kept, active ones included, end without a second send; every email goes once', async () => {
    await restartedUnderDaemons(redis, async () => {
      await redis.shutdownSaving();
      await new Promise((r) => setTimeout(r, 1_000));
      await redis.start();
    });
  }, 180_000);

  it('killed with every write in its append-only file, and started from it: every email goes once', async () => {
    const persistent = await startOwnRedis(async () => ['--appendonly', 'yes', '--appendfsync', 'always']);
    try {
      await restartedUnderDaemons(persistent, async () => {
        await persistent.kill();
        await new Promise((r) => setTimeout(r, 1_000));
        await persistent.start();
      });
    } finally {
      await persistent.stop();
    }
  }, 180_000);
});

describe('Redis failed over to a copy that lags behind', () => {
  it('started from a snapshot taken seconds earlier: the jobs done since come back, run again and find their sends recorded; every email goes once', async () => {
    await dueNow(200);
    world.smtp.slow(40);
    daemons = [startDaemon(env()), startDaemon(env())];
    await until('the first emails', () => world.smtp.received.length >= 30);
    // One scan enqueued all 200: the snapshot holds the jobs of the 40 or more sent after it. A key
    // there only in the snapshot shows that Redis came back as it was then.
    redis.cli('set', 'test:before-snapshot', 'yes');
    expect(redis.cli('save')).toBe('OK');
    redis.cli('del', 'test:before-snapshot');
    const atSnapshot = world.smtp.received.length;
    await until('more emails since the snapshot', () => world.smtp.received.length >= atSnapshot + 40);
    await redis.kill({ keepSaved: true });
    await redis.start();
    expect(redis.cli('get', 'test:before-snapshot')).toBe('yes');
    world.smtp.slow(0);
    await expectEachSentOnce(200);
    await stopAll();
    logsMentionNobody();
  }, 180_000);
});

describe('Redis emptied with FLUSHALL mid-run', () => {
  it('a reconciliation by the next scans re-enqueues what is due and undecided: nothing lost, nothing doubled', async () => {
    await dueNow(200);
    daemons = [startDaemon(env({ NUDGE_CONCURRENCY: '8' }))];
    await until('the first emails', () => world.smtp.received.length >= 30);
    redis.cli('flushall');
    await expectEachSentOnce(200);
    await stopAll();
    logsMentionNobody();
    // The jobs in flight as Redis was emptied fail to end ("Missing key for job …"; one that ends
    // after a scan enqueued it again under its id, "Missing lock" or "Lock mismatch", as it moves
    // to finished or to delayed): a warning, not an error, and a line for each kind of failure,
    // not for each job (their ids are kept out of the repeat limiter's key). Which kinds come up
    // depends on when each job ends against the scans: two in most runs, all six in some.
    const logs = daemons[0]!.logs;
    expect(logs.filter((e) => (e.level as number) >= 50)).toEqual([]);
    const lost = logs.filter((e) => /no longer holds a job/.test(String(e.msg))).map((e) => String(e.err));
    for (const err of lost) expect(err).toContain('<job>');
    expect(lost).toEqual([...new Set(lost)]);
  }, 180_000);
});

describe('two `nudge start` processes and two extra `work` processes on one database and Redis', () => {
  it('share the batch: every email goes once, each process sends some, all stop cleanly', async () => {
    daemons = [startDaemon(env()), startDaemon(env()), startWorkProcess(env()), startWorkProcess(env())];
    const ports = await Promise.all(daemons.map((d) => d.port));
    expect(ports.map((p) => p === null)).toEqual([false, false, true, true]);
    // Due only once all four are up, so that every one of them can take a share.
    await dueNow(300);
    await expectEachSentOnce(300);
    const sentBy = daemons.map((d) => d.logs.filter((l) => l.msg === 'sent').length);
    expect(sentBy.reduce((a, b) => a + b, 0)).toBe(300);
    for (const n of sentBy) expect(n).toBeGreaterThan(0);
    // The `work` processes never scan.
    expect(daemons.slice(2).flatMap((d) => d.logs).filter((l) => l.msg === 'scan done')).toEqual([]);
    await stopAll();
    logsMentionNobody();
  }, 180_000);
});

describe('PostgreSQL connections cut under running daemons', () => {
  it('the daemons reconnect and record every send: each email once, each row sent', async () => {
    daemons = [startDaemon(env()), startDaemon(env())];
    await Promise.all(daemons.map((d) => d.port));
    await dueNow(600);
    await until('the first emails', () => world.smtp.received.length >= 50);
    // Cut every connection of the database again and again while the batch goes out: every
    // 400 ms, longer than one send's transaction even when it must open a new SMTP connection
    // (a cut send closes its own, and the sink, smtp-server, greets a new one after 100 ms). At
    // 150 ms, on a machine where that is most of the interval, no send got through.
    const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
    await admin.connect();
    let cuts = 0;
    try {
      // Cut after cut for as long as the 500th email takes: on a loaded machine over a minute.
      const deadline = Date.now() + 120_000;
      while (world.smtp.received.length < 500) {
        if (Date.now() > deadline) throw new Error(`only ${world.smtp.received.length} of 600 emails within 120 s of cuts`);
        const r = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [world.database.name]);
        cuts += r.rowCount ?? 0;
        await new Promise((resolve) => setTimeout(resolve, 400));
      }
    } finally {
      await admin.end();
    }
    expect(cuts).toBeGreaterThan(0);
    // The cuts caught sends in their transactions, not only idle connections.
    const cutJobs = daemons.flatMap((d) => d.logs).filter((l) => l.msg === 'delivery job failed; BullMQ retries it with backoff'
      || l.msg === 'delivery jobs fail while PostgreSQL cannot be reached; BullMQ retries each with backoff');
    expect(cutJobs.length).toBeGreaterThan(0);
    // No SMTP fault: every outcome is known, so every email ends `sent`, none `unknown`.
    await expectEachSentOnce(600);
    await stopAll();
    logsMentionNobody();
  }, 240_000);
});

describe('SIGTERM mid-run', () => {
  it('stops within the grace period and leaves no job active or stalled', async () => {
    await dueNow(200);
    const daemon = startDaemon(env({ NUDGE_CONCURRENCY: '4' }));
    daemons = [daemon];
    await until('the first emails', () => world.smtp.received.length >= 20);
    const stopping = Date.now();
    daemon.child.kill('SIGTERM');
    expect(await exitWithin(daemon, 30_000)).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(20_000);
    expect(activeJobs(redis)).toBe(0);
    // Whatever was left is finished by the next process: each email once.
    daemons = [startDaemon(env())];
    await expectEachSentOnce(200);
    await stopAll();
  }, 180_000);
});

describe('a template broken while the daemon runs', () => {
  it('keeps the last good version, reports the error, and carries on', async () => {
    daemons = [startDaemon(env())];
    await until('the daemon', async () => ((await daemons[0]!.port) ?? 0) > 0);
    world.write('t.hbs', '---\nsubject: "{{reference}}"\n---\n<p>{{#if contact}}broken\n');
    await new Promise((r) => setTimeout(r, 1_500));
    await dueNow(20);
    try {
      await expectEachSentOnce(20);
      expect(world.smtp.received[0]!.parsed.html).toContain('Hello');
      const errors = daemons[0]!.logs.filter((l) => l.msg === 'edited journey or templates are invalid; keeping the last good version');
      expect(errors.length).toBeGreaterThan(0);
      expect(JSON.stringify(errors[0])).toMatch(/t\.hbs:\d+/);
    } finally {
      world.write('t.hbs', DUE_NOW_TEMPLATE);
    }
    await stopAll();
  }, 120_000);
});

describe('the SMTP server answering 421 for a while, then 550 for some recipients', () => {
  it('the deferred sends wait with backoff and go once; the refused ones fail once with the server text; no retry storm', async () => {
    const refused = new Set([1, 2, 3, 4, 5].map((i) => `r-${i}@customer.test`));
    world.smtp.refuse({ code: 421, message: 'too busy, try again later' });
    daemons = [startDaemon(env())];
    await dueNow(40);
    await until('every recipient tried', async () => world.smtp.rcptAttempts.size === 40, 30_000);
    await new Promise((r) => setTimeout(r, 2_000));
    // Retries back off (200 ms, doubling): in the 2-3 s since each was first tried, at most 5 tries.
    const during = new Map(world.smtp.rcptAttempts);
    world.smtp.refuse({ code: 550, message: 'mailbox unavailable: r-x@customer.test', recipient: (a) => refused.has(a) });
    expect(await deliveries(world.database.db)).toEqual([]);
    expect(world.smtp.received).toEqual([]);
    expect(Math.max(...during.values())).toBeLessThanOrEqual(5);

    await until('35 sent and 5 failed', async () => (await deliveries(world.database.db)).length >= 40, 60_000);
    await moreScans(daemons); // nothing more
    const rows = await deliveries(world.database.db);
    expect(rows).toHaveLength(40);
    const failed = rows.filter((r) => r.status === 'failed');
    expect(new Set(failed.map((r) => r.recipient))).toEqual(refused);
    for (const r of failed) {
      expect(r.reason).toBe('smtp_rejected');
      expect(r.detail).toContain('550');
      expect(r.detail).toContain('mailbox unavailable');
    }
    expect(rows.filter((r) => r.status === 'sent')).toHaveLength(35);
    const addresses = world.smtp.received.map((m) => m.envelopeTo[0]!);
    expect(addresses).toHaveLength(35);
    expect(new Set(addresses).size).toBe(35);
    expect(addresses.filter((a) => refused.has(a))).toEqual([]);
    // Once the server recovered, each recipient was tried once more: a send or a refusal, no retry.
    for (const [address, n] of world.smtp.rcptAttempts) expect({ address, after: n - (during.get(address) ?? 0) }).toEqual({ address, after: 1 });
    // The server out of service is said once in the minute, with the reply code: not once per send
    // and attempt (over a hundred lines), nor a second time as a failed job.
    const logs = daemons.flatMap((d) => d.logs);
    expect(logs.filter((l) => l.msg === 'smtp deferred the send; will retry')).toEqual([]);
    const unavailable = logs.filter((l) => l.msg === 'smtp service not available (421); sends deferred, BullMQ retries each with backoff');
    expect(unavailable).toHaveLength(1);
    expect(unavailable[0]).toMatchObject({ code: '421', level: 40, opportunityId: expect.any(Number) });
    expect(logs.filter((l) => l.msg === 'delivery job failed; BullMQ retries it with backoff')).toEqual([]);
    logsMentionNobody();
    await stopAll();
  }, 120_000);
});

describe('the SMTP server refusing for longer than the jobs\' attempts', () => {
  it('the jobs dropped together make a line a minute, not one each; the next scans enqueue them again, and each goes once', async () => {
    world.smtp.refuse({ code: 421, message: 'too busy, try again later' });
    daemons = [startDaemon(env({ NUDGE_ATTEMPTS: '2' }))];
    await dueNow(30);
    const logs = () => daemons.flatMap((d) => d.logs);
    const dropped = () => logs().filter((l) => l.msg === 'delivery jobs failed for good while SMTP deferred them; dropped (a later scan enqueues their steps again while their windows are open)');
    await until('jobs dropped', async () => dropped().length > 0, 30_000);
    // Two attempts 200 ms apart, then dropped; each scan (every second) enqueues them again: every
    // job dropped, and tried again after, within the minute of the first line.
    await until('every job dropped and tried again', () => world.smtp.rcptAttempts.size === 30
      && [...world.smtp.rcptAttempts.values()].every((n) => n >= 3), 40_000);
    expect(logs().filter((l) => l.msg === 'delivery job failed for good; dropped (a later scan enqueues the step again while its window is open)')).toEqual([]);
    expect(dropped()).toHaveLength(1);
    expect(dropped()[0]).toMatchObject({ level: 40, attempts: 2, err: expect.stringMatching(/\(421\)/) });
    expect(world.smtp.received).toEqual([]);
    world.smtp.refuse(null);
    await expectEachSentOnce(30);
    logsMentionNobody();
    await stopAll();
  }, 120_000);
});

describe('the SMTP server down for a while (its port closed), then back', () => {
  const UNREACHABLE = 'smtp cannot be reached; sends deferred, BullMQ retries each with backoff';
  it('every send waits with backoff and goes once; the log says so once a minute per error, not once per send', async () => {
    await world.smtp.crash();
    let down = true;
    try {
      daemons = [startDaemon(env())];
      await dueNow(40);
      // Sends are tried while the server is down (a slow start must not let the server come back
      // first, with nothing deferred), then retries back off from 200 ms: a few attempts of each
      // of the 40 jobs meanwhile.
      await until('a send deferred while the server is down', () => daemons[0]!.logs.some((l) => l.msg === UNREACHABLE), 60_000);
      await new Promise((r) => setTimeout(r, 3_000));
      await world.smtp.start();
      down = false;
      await expectEachSentOnce(40);
    } finally {
      if (down) await world.smtp.start();
    }
    const logs = daemons.flatMap((d) => d.logs);
    expect(logs.filter((l) => l.msg === 'smtp deferred the send; will retry')).toEqual([]);
    const unreachable = logs.filter((l) => l.msg === UNREACHABLE);
    expect(unreachable.length).toBeGreaterThan(0);
    // Once per error (nodemailer's code) in the minute, with the error's own text (a refused port).
    expect(unreachable.map((l) => l.err)).toEqual([...new Set(unreachable.map((l) => l.err))]);
    for (const l of unreachable) expect(l).toMatchObject({ code: 'connection', err: expect.stringMatching(/^[A-Z][A-Z_]+$|^error$/), detail: expect.any(String) });
    logsMentionNobody();
    await stopAll();
  }, 120_000);
});

describe('a journey file broken while the daemon runs', () => {
  it('keeps the last good journey, reports the error with its line, carries on, and takes the fixed file', async () => {
    daemons = [startDaemon(env())];
    await until('the daemon', async () => ((await daemons[0]!.port) ?? 0) > 0);
    const invalid = () => daemons[0]!.logs.filter((l) => l.msg === 'edited journey or templates are invalid; keeping the last good version');
    try {
      // A typo in a trigger (line 9) and, in a second edit, YAML that does not parse.
      world.write('journeys.yaml', DUE_NOW_JOURNEY.replace('daysBefore: 3', 'daysBefor: 3'));
      await until('the error', async () => invalid().length > 0, 10_000);
      expect(JSON.stringify(invalid()[0])).toMatch(/journeys\.yaml:9/);
      world.write('journeys.yaml', `${DUE_NOW_JOURNEY}  - id: [unclosed\n`);
      await until('the second error', async () => invalid().length > 1, 10_000);
      await dueNow(20);
      await expectEachSentOnce(20);
      expect(new Set((await deliveries(world.database.db)).map((r) => r.step_id))).toEqual(new Set(['three-days']));

      // Fixed, with the step renamed: the next due opportunities are decided under the new id.
      // (The sent ones go first: the renamed step would be due for them too.)
      world.smtp.received.length = 0;
      await sql`truncate deliveries, opportunities, contacts restart identity cascade`.execute(world.database.db);
      world.write('journeys.yaml', DUE_NOW_JOURNEY.replace('id: three-days', 'id: renamed'));
      await until('the reload', async () => daemons[0]!.logs.some((l) => l.msg === 'journey and templates reloaded'), 10_000);
      await dueNow(5);
      await expectEachSentOnce(5);
      expect(new Set((await deliveries(world.database.db)).map((r) => r.step_id))).toEqual(new Set(['renamed']));
    } finally {
      world.write('journeys.yaml', DUE_NOW_JOURNEY);
    }
    logsMentionNobody();
    await stopAll();
  }, 120_000);
});

describe('a Redis Cluster of three masters', () => {
  it('tick and work run on it: each queue\'s keys share one slot', async () => {
    const started = Date.now();
    const cluster = await startOwnCluster(3);
    // Said on every run: on a loaded machine, the cluster's start is the slow part of this test.
    console.info(`Redis Cluster of three masters ready in ${Date.now() - started} ms`);
    try {
      await dueNow(50);
      const clusterEnv = { ...world.env, REDIS_URL: cluster.url, NUDGE_REDIS_CLUSTER: 'true' };
      const now = new Date().toISOString();
      // Without the setting, a command whose keys live on the named node worked, the others failed
      // (MOVED), and a daemon ran half working: each stops, naming it, before anything is written.
      for (const args of [['tick', '--now', now], ['start']]) {
        const plain = await runNudge(args, { ...world.env, REDIS_URL: cluster.url, PORT: '0' });
        expect([args[0], plain.code, plain.stderr]).toEqual([args[0], 2, 'nudge: configuration error: NUDGE_REDIS_CLUSTER: is not set, but REDIS_URL names a node of a Redis Cluster: set NUDGE_REDIS_CLUSTER=true\n']);
      }
      expect(await deliveries(world.database.db)).toEqual([]);
      const tick = await runNudge(['tick', '--now', now], clusterEnv);
      expect(tick.stderr).toBe('');
      expect(tick.summary).toMatchObject({ enqueued: 50 });
      // The same jobs, still waiting, are not added (nor counted) again.
      expect((await runNudge(['tick', '--now', now], clusterEnv)).summary).toMatchObject({ enqueued: 0 });
      const work = await runNudge(['work', '--drain', '--now', now], clusterEnv);
      expect(work.summary).toMatchObject({ sent: 50 });
      expect(new Set(world.smtp.received.map((m) => m.envelopeTo[0])).size).toBe(50);
    } finally {
      await cluster.stop();
    }
  }, 120_000);

  it('the probe asks the masters of the queues\' slots: one of them frozen is found out, another master frozen is not', async () => {
    // Frozen for a few seconds, a node is not yet failed by the others (which would fail the Cluster).
    const cluster = await startOwnCluster(3, 30_000);
    const rt = new Runtime(loadConfig({ ...world.env, REDIS_URL: cluster.url, NUDGE_REDIS_CLUSTER: 'true' }), silentLogger);
    const admin = new Redis(cluster.nodes[0]!.port, '127.0.0.1');
    try {
      // Which node serves each queue's slot (its keys are hash-tagged to one), as the Cluster says.
      const slots = await admin.cluster('SLOTS');
      const servedBy = async (key: string) => {
        const slot = await admin.cluster('KEYSLOT', key) as number;
        return slots.find(([from, to]) => slot >= from && slot <= to)![2]![1];
      };
      const queuePorts = new Set([await servedBy(queuePrefix(world.prefix, DELIVER_QUEUE)), await servedBy(queuePrefix(world.prefix, SCAN_QUEUE))]);
      const deliverNode = cluster.nodes.find((n) => n.port === [...queuePorts][0])!;
      const otherNode = cluster.nodes.find((n) => !queuePorts.has(n.port))!;
      await rt.pingRedis(); // connected, every node known
      // Each probe given `ms` to answer: room on a loaded machine where all must answer, less where none can.
      const probes = async (ms: number) => {
        const answered: boolean[] = [];
        for (let i = 0; i < 6; i++) answered.push(await within(ms, 'probe', rt.pingRedis()).then(() => true, () => false));
        return answered;
      };
      // A master the queues do not use: a PING to a node picked at random would hang one time in three.
      otherNode.pause();
      expect(await probes(2_000)).toEqual([true, true, true, true, true, true]);
      otherNode.resume();
      // The master of the deliver queue's slot: a PING to a random node would answer two times in three.
      deliverNode.pause();
      expect(await probes(500)).toEqual([false, false, false, false, false, false]);
      deliverNode.resume();
      await within(10_000, 'probe after resume', rt.pingRedis());
    } finally {
      for (const n of cluster.nodes) n.resume();
      admin.disconnect();
      await rt.close();
      await cluster.stop();
    }
  }, 120_000);
});

describe('a Redis Cluster failed for a while', () => {
  it('the daemon scans and sends again once the Cluster is back', async () => {
    const cluster = await startOwnCluster(3);
    const admin = new Redis(cluster.nodes[0]!.port, '127.0.0.1');
    let watcher: Redis | undefined;
    try {
      const slots = await admin.cluster('SLOTS');
      const slot = await admin.cluster('KEYSLOT', queuePrefix(world.prefix, DELIVER_QUEUE)) as number;
      const port = slots.find(([from, to]) => slot >= from && slot <= to)![2]![1];
      const deliverNode = cluster.nodes.find((n) => n.port === port)!;
      // Asked of a node that is not frozen: a frozen one answers nothing.
      watcher = new Redis(cluster.nodes.find((n) => n !== deliverNode)!.port, '127.0.0.1');
      const state = async () => within(5_000, 'CLUSTER INFO', watcher!.cluster('INFO') as Promise<string>).catch(() => '');
      await dueNow(20);
      const daemon = startDaemon({ ...env({ LOG_FORMAT: 'json', NUDGE_SCAN_EVERY_MS: '1000' }), REDIS_URL: cluster.url, NUDGE_REDIS_CLUSTER: 'true' });
      daemons = [daemon];
      const sent = async () => (await deliveries(world.database.db)).filter((r) => r.status === 'sent').length;
      await until('20 emails', async () => await sent() >= 20, 60_000);
      // Frozen past the nodes' timeout (2 s): the others mark it failed, and the Cluster is down.
      deliverNode.pause();
      await until('the Cluster to say it is down', async () => /cluster_state:fail/.test(await state()), 30_000);
      deliverNode.resume();
      await until('the Cluster to be back', async () => /cluster_state:ok/.test(await state()), 30_000);
      await dueNow(20);
      // Before, the daemon's workers (BullMQ's, their blocking connection wedged) might never take
      // a job again, while /readyz said ok, and a SIGTERM waited out the grace period. Whether they
      // wedge depends on timing: when they do, they are replaced, and say so.
      // Each wedged worker is found out within 40 s: the scan's first, then the delivery's.
      await until('20 more emails', async () => await sent() >= 40, 120_000);
      expect(world.smtp.received).toHaveLength(40);
      const replaced = daemon.logs.filter((l) => /worker took no job while \d+ waited/.test(String(l.msg)));
      console.info(`workers replaced after the Cluster came back: ${replaced.length}`);
      daemon.child.kill('SIGTERM');
      expect(await exitWithin(daemon, 30_000)).toBe(0);
    } finally {
      for (const n of cluster.nodes) n.resume();
      admin.disconnect();
      watcher?.disconnect();
      await cluster.stop();
    }
  }, 240_000);
});

describe('Redis gone under an idle daemon', () => {
  it('says so in a few JSON lines, not a line per reconnect, and that it is back; SIGTERM while it is gone stops the process at once; nothing is sent again', async () => {
    // An eviction policy other than noeviction: BullMQ warns of it on each connection, in plain text.
    redis.cli('config', 'set', 'maxmemory-policy', 'allkeys-lru');
    await dueNow(30);
    const daemon = startDaemon(env({ LOG_FORMAT: 'json' }));
    daemons = [daemon];
    await expectEachSentOnce(30);
    await redis.kill();
    const outage = daemon.logs.length;
    await new Promise((r) => setTimeout(r, 8_000));
    // Warnings and errors during the outage (a scan's own 'scan done' may fall in it too).
    const during = daemon.logs.slice(outage).filter((entry) => (entry.level as number) >= 40);
    // Every line a JSON log entry with a level (a plain line is kept as { msg } alone).
    expect(daemon.logs.filter((entry) => typeof entry.level !== 'number')).toEqual([]);
    expect(daemon.logs.filter((entry) => /eviction policy/i.test(String(entry.msg)))).toHaveLength(1);
    expect(during.length).toBeGreaterThan(0);
    expect(during.length).toBeLessThanOrEqual(3);
    // The connection's error: reset as the server died with something unread, or refused on reconnecting.
    expect(during[0]).toMatchObject({ level: 40, msg: 'Redis connection error; reconnecting', err: expect.stringMatching(/ECONNREFUSED|ECONNRESET/) as unknown });
    // Back (empty): the line says so, with how many errors were held back.
    await redis.start();
    await until('"Redis connection back"', () => daemon.logs.some((entry) => entry.msg === 'Redis connection back'));
    expect((daemon.logs.find((entry) => entry.msg === 'Redis connection back')!.heldBack as number)).toBeGreaterThan(3);
    // Gone again: a SIGTERM now does not wait for it.
    await redis.kill();
    await until('the connection error', () => daemon.logs.filter((entry) => entry.msg === 'Redis connection error; reconnecting').length >= 2);
    const stopping = Date.now();
    daemon.child.kill('SIGTERM');
    expect(await exitWithin(daemon, 30_000)).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(5_000);
    await redis.start();
    daemons = [startDaemon(env())];
    await until('a scan over the sent batch', () => daemons[0]!.logs.some((entry) => entry.msg === 'scan done'));
    await expectEachSentOnce(30);
    await stopAll();
  }, 120_000);
});

describe('SIGTERM while Redis is down mid-batch', () => {
  it('the sends under way finish and are recorded, the process exits 0 without waiting for Redis, and the next daemon sends the rest: each email once', async () => {
    await dueNow(300);
    const daemon = startDaemon(env({ NUDGE_CONCURRENCY: '4' }));
    daemons = [daemon];
    await until('the first emails', () => world.smtp.received.length >= 30);
    await redis.kill();
    await stopWithoutRedis(daemon);
    expect(world.smtp.received.length).toBeLessThan(300);
    await expectArrivedRecordedSent();
    await redis.start();
    daemons = [startDaemon(env())];
    await expectEachSentOnce(300);
    await stopAll();
    logsMentionNobody();
  }, 180_000);
});

describe('SIGTERM while Redis is down under a scan', () => {
  it('the scan waiting for Redis to enqueue does not hold the stop: the process exits 0 within seconds, and the next daemon sends each email once', async () => {
    await dueNow(1500);
    const daemon = startDaemon(env({ NUDGE_CONCURRENCY: '1' }));
    daemons = [daemon];
    await until('the first emails', () => world.smtp.received.length >= 5);
    // A scan holds its advisory lock from start to end: Redis is killed while one runs.
    const scanRunning = async () => (await scanLockHolders(world.database.db)).length > 0;
    // Frozen as soon as one is seen, Redis holds a scan still running at its enqueue: then killed.
    for (let tries = 0; ; tries++) {
      await until('a scan to start', scanRunning, 30_000);
      redis.pause();
      // A scan past its last enqueue when Redis froze ends in a moment: still running after a
      // while, it waits for Redis. Under load that moment can pass 300 ms (a scan busy with
      // PostgreSQL ended after the kill, and the stop found no scan: seen twice), so it is asked
      // again once Redis is gone.
      await new Promise((r) => setTimeout(r, 300));
      if (await scanRunning()) {
        await redis.kill();
        await new Promise((r) => setTimeout(r, 300));
        if (await scanRunning()) break;
        await redis.start(); // that scan ended meanwhile: the next one
      } else redis.resume();
      expect(tries).toBeLessThan(20);
    }
    // The old code exited 1 after the grace period: the stop waited for the scan, which waited for Redis.
    expect(await stopWithoutRedis(daemon)).toMatchObject({ scanning: true, redis: 'connection down' });
    await expectArrivedRecordedSent();
    await redis.start();
    daemons = [daemon, startDaemon(env({ NUDGE_CONCURRENCY: '8' }))];
    await expectEachSentOnce(1500);
    await stopAll();
    logsMentionNobody();
  }, 180_000);
});

describe('SIGTERM while Redis hangs', () => {
  it('a Redis that keeps its connections open and answers nothing is found out by a PING: a warning, /readyz 503, a line when it answers again; SIGTERM exits 0 within seconds, and the next daemon sends each email once', async () => {
    await dueNow(300);
    const daemon = startDaemon(env({ NUDGE_CONCURRENCY: '4' }));
    daemons = [daemon];
    await until('the first emails', () => world.smtp.received.length >= 30);
    const port = await daemon.port;
    const said = (msg: string) => daemon.logs.filter((entry) => entry.msg === msg).length;
    redis.pause();
    try {
      // The connections stay open: the process finds it out by a PING, and says so; so does /readyz.
      // A PING every 5 s, given 2 s to answer: up to 7 s by design, more on a loaded machine.
      await until('the warning', () => said('Redis does not answer a PING, its connection open: scans and jobs wait for it') === 1, 30_000);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ checks: { postgres: 'ok', redis: 'failing: Redis (PING) did not answer within 2000 ms' } });
      redis.resume();
      await until('Redis to answer again', () => said('Redis answers again') === 1, 15_000);
      expect((daemon.logs.find((entry) => entry.msg === 'Redis answers again')!.waitedMs as number)).toBeGreaterThanOrEqual(5_000);
      redis.pause();
      // The old code exited 1 after the grace period (the stop waited for BullMQ's close), or not
      // at all (BullMQ retried its commands in a loop, the connection closed under it).
      expect(await stopWithoutRedis(daemon)).toMatchObject({ redis: 'no answer to PING within 2000 ms' });
    } finally {
      redis.resume();
    }
    await expectArrivedRecordedSent();
    daemons = [daemon, startDaemon(env())];
    await expectEachSentOnce(300);
    await stopAll();
    logsMentionNobody();
  }, 180_000);
});

describe('Redis back in the middle of a stop', () => {
  it('the jobs it hands over once the process gave it up start nothing and use no attempt; the next daemon sends each email once', async () => {
    await dueNow(300);
    // Slow sends, so that some finish while Redis is frozen: their jobs' completions, and the next
    // jobs those fetch, wait in Redis and come back once it answers, to a process that gave it up.
    world.smtp.slow(300);
    // Locks that outlast the freeze: the completions find their jobs still theirs.
    const daemon = startDaemon(env({ NUDGE_CONCURRENCY: '4', NUDGE_JOB_LOCK_MS: '10000' }));
    daemons = [daemon];
    await until('the first emails', () => world.smtp.received.length >= 20);
    redis.pause();
    let givenUp: Record<string, unknown> | undefined;
    try {
      await new Promise((r) => setTimeout(r, 1_000));
      daemon.child.kill('SIGTERM');
      await until('the process to give Redis up', () => {
        givenUp = daemon.logs.find((entry) => entry.msg === 'Redis does not answer: stopping without waiting for it');
        return givenUp !== undefined;
      }, 15_000);
    } finally {
      redis.resume();
    }
    expect(await exitWithin(daemon, 30_000)).toBe(0);
    // Handed over, and left as they were: nothing sent after the process gave Redis up but the
    // sends it was running then.
    expect(daemon.logs.filter((entry) => String(entry.msg).startsWith('a job handed over after Redis was given up')).length).toBeGreaterThan(0);
    const givenUpAt = Date.parse(String(givenUp!.time));
    expect(world.smtp.received.filter((m) => m.at > givenUpAt).length).toBeLessThanOrEqual(givenUp!.jobsRunning as number);
    expect(daemon.logs.filter((entry) => (entry.level as number) >= 50)).toEqual([]);
    await expectArrivedRecordedSent();
    // No attempt used: not failed, not moved to be retried.
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    try {
      const queue = deliverQueue(connection, world.prefix);
      const jobs = await queue.getJobs(['active', 'wait', 'delayed', 'failed', 'prioritized']);
      expect(jobs.length).toBeGreaterThan(0);
      expect(jobs.filter((job) => job.attemptsMade > 0 || job.failedReason).map((job) => ({ id: job.id, attempts: job.attemptsMade, failed: job.failedReason }))).toEqual([]);
      await queue.close();
    } finally {
      connection.disconnect();
    }
    world.smtp.slow(0);
    daemons = [startDaemon(env())];
    await expectEachSentOnce(300);
    await stopAll();
    logsMentionNobody();
  }, 180_000);
});

describe('Redis down when the daemon starts', () => {
  it('/readyz says the process waits for Redis, then, once Redis is back, that it is ready; a SIGTERM meanwhile stops it at once', async () => {
    await redis.kill();
    const port = await freePort();
    const daemon = startDaemon(env({ PORT: String(port) }));
    const other = startDaemon(env());
    daemons = [daemon, other];
    const readyz = async () => {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null);
      return r && { status: r.status, body: (await r.json()) as { checks: Record<string, string> } };
    };
    await until('/readyz to say the process waits for Redis', async () => (await readyz())?.body.checks.process === 'starting: waiting for Redis');
    // Refused: said so at once, with the error, not as a check that did not answer.
    expect(await readyz()).toMatchObject({ status: 503, body: { checks: { postgres: 'ok', redis: expect.stringMatching(/^failing: connection \w+: connect ECONNREFUSED/) as unknown } } });
    await until('the other process to wait for Redis too', () => other.logs.some((entry) => entry.msg === 'Redis connection error; reconnecting'));
    const stopping = Date.now();
    other.child.kill('SIGTERM');
    expect(await exitWithin(other, 30_000)).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(5_000);
    expect(other.logs.map((entry) => entry.msg)).toContain('stopped while waiting for Redis');
    daemons = [daemon];
    await redis.start();
    await until('/readyz to answer 200', async () => (await readyz())?.status === 200);
    await stopAll();
  }, 60_000);
});
