/**
 * The command line as users and their scripts meet it: separate processes, exit codes, the JSON
 * summary on the last line, and several processes at once on one database and Redis.
 */
import { appendFileSync, cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNudge, spawnNudge } from './helpers/cli.ts';
import { until } from './helpers/daemon.ts';
import { freePort } from './helpers/ports.ts';
import { startOwnRedis } from './helpers/redis-server.ts';
import { databaseUrl, PG_ADMIN_URL } from './helpers/env.ts';
import { deliveries, insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, type World } from './helpers/world.ts';

let world: World;
let cwd: string;

beforeAll(async () => {
  world = await createWorld();
  cwd = mkdtempSync(path.join(os.tmpdir(), 'nudge-cwd-'));
});

afterAll(async () => {
  await world?.close();
  rmSync(cwd, { recursive: true, force: true });
});

const nudge = (args: string[], env: Record<string, string | undefined> = {}) => runNudge(args, { ...world.env, ...env }, cwd);

describe('configuration', () => {
  it.each([
    [{ DATABASE_URL: undefined }, /DATABASE_URL: is not set \(expected a postgres:\/\/ or postgresql:\/\/ URL\)/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL: must start with postgres:\/\/ or postgresql:\/\//],
    [{ NUDGE_QUEUE_PREFIX: 'bad prefix!' }, /NUDGE_QUEUE_PREFIX: must match/],
    [{ NODE_ENV: 'production', NUDGE_SECRET: undefined }, /NUDGE_SECRET: is required when NODE_ENV=production/],
    [{ NODE_ENV: 'production', SMTP_URL: undefined }, /SMTP_URL: is required when NODE_ENV=production/],
    // Every problem at once, a line each: not one per try.
    [{ NODE_ENV: 'production', SMTP_URL: undefined, NUDGE_SECRET: undefined, PORT: 'x' },
      /^nudge: \d configuration errors:\n {2}PORT: must be a whole number[^\n]*\n {2}SMTP_URL: is required[^\n]*\n(?: {2}[^\n]*\n)* {2}NUDGE_SECRET: is required/m],
    [{ PORT: 'eighty' }, /PORT: must be a whole number/],
    [{ NUDGE_HANDOVER_TIMEOUT_MS: '50' }, /NUDGE_HANDOVER_TIMEOUT_MS: must be a whole number from 100 to 300000/],
    [{ NUDGE_SCAN_CHAINS: '0' }, /NUDGE_SCAN_CHAINS: must be a whole number from 1 to 4/],
    [{ NODE_ENV: 'production', PUBLIC_URL: 'http://nudge.example.com' }, /PUBLIC_URL: must be an https:\/\/ URL when NODE_ENV=production/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent, got "loud"/],
    [{ LOG_FORMAT: 'bogus' }, /LOG_FORMAT: must be one of json, pretty, got "bogus"/],
    [{ NUDGE_REDIS_WAIT_MS: 'soon' }, /NUDGE_REDIS_WAIT_MS: must be a whole number from 100 to 3600000/],
    [{ NUDGE_PREPARED_STATEMENTS: 'off' }, /NUDGE_PREPARED_STATEMENTS: must be true or false \(or 1 or 0\), got "off"/],
    [{ NUDGE_SECRET_PREVIOUS: 'old-secret-0123456789abcdef,short' }, /NUDGE_SECRET_PREVIOUS: secret 2 of 2 \(comma-separated\) is shorter than 16 characters/],
    [{ NUDGE_SECRET_PREVIOUS: 'old-secret-0123456789abcdef,' }, /NUDGE_SECRET_PREVIOUS: secret 2 of 2 \(comma-separated\) is empty: a comma too many\?/],
    [{ NODE_ENV: 'production', SMTP_URL: 'smtp://127.0.0.1:1', PUBLIC_URL: 'https://nudge.example.com', NUDGE_SECRET_PREVIOUS: 'nudge-development-secret-not-for-production' },
      /NUDGE_SECRET_PREVIOUS: secret 1 of 1 \(comma-separated\) is the development default/],
  ])('%o stops the process naming the variable', async (env, message) => {
    const r = await nudge(['tick', '--now', '2026-12-01T09:00:00Z'], { DATABASE_URL: world.env.DATABASE_URL, ...env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(world.smtp.received).toHaveLength(0);
  });

  // Redis refuses to select a database it does not have, and the client carried on in database 0,
  // where the queues then lived beside another installation's.
  it.each([['tick', '--now', '2026-12-01T09:00:00Z'], ['work', '--drain'], ['start']])('%s with a REDIS_URL database Redis does not have stops, naming it', async (...args) => {
    const r = await nudge(args, { REDIS_URL: `${world.env.REDIS_URL!.replace(/\/\d*$/, '')}/99`, PORT: '0' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/REDIS_URL: names database 99, which this Redis refused \(ERR DB index is out of range; see its `databases` setting\)/);
  });

  it('refuses a database number on a Redis Cluster, which has database 0 alone', async () => {
    const r = await nudge(['tick'], { REDIS_URL: `${world.env.REDIS_URL!.replace(/\/\d*$/, '')}/3`, NUDGE_REDIS_CLUSTER: 'true' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/REDIS_URL: names database 3, but a Redis Cluster \(NUDGE_REDIS_CLUSTER=true\) has database 0 alone/);
  });

  // A migration job, or an analyst's forecast, sends nothing: it was refused for want of the mail
  // server's address and the secret, which it has no use for.
  // explain of an id that is not there: it got past the configuration and asked the database.
  it.each([
    [['migrate'], 0], [['forecast', '--json'], 0], [['simulate', '--days', '1'], 0], [['templates', 'check'], 0], [['explain', '999999'], 1],
  ] as const)('NODE_ENV=production %o sends nothing and needs no SMTP_URL, PUBLIC_URL or NUDGE_SECRET', async (args, code) => {
    const r = await nudge([...args], { NODE_ENV: 'production', SMTP_URL: undefined, PUBLIC_URL: undefined, NUDGE_SECRET: undefined });
    expect(r.stderr).not.toMatch(/configuration error/);
    expect(r.code).toBe(code);
  });

  it.each([['work', '--drain'], ['send-test', 'proposal-follow-up', '--to', 'ops@example.com']])('NODE_ENV=production %s still asks for all three', async (...args) => {
    const r = await nudge(args, { NODE_ENV: 'production', SMTP_URL: undefined, PUBLIC_URL: undefined, NUDGE_SECRET: undefined });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/SMTP_URL: is required[^]*PUBLIC_URL: must be an https[^]*NUDGE_SECRET: is required/);
  });

  it('NUDGE_REDIS_CLUSTER=true on a Redis that is not a Cluster: the message asks whether REDIS_URL is one', async () => {
    // Something to enqueue: a tick with nothing to add asks Redis nothing.
    const contact = await insertContact(world.database.db, { email: 'cluster-flag@customer.test', time_zone: 'UTC' });
    await insertOpportunity(world.database.db, { closing_date: '2028-06-20', stage: 'proposal', primary_contact_id: contact });
    const r = await nudge(['tick', '--now', '2028-06-17T09:00:00Z'], { NUDGE_REDIS_CLUSTER: 'true', NUDGE_REDIS_WAIT_MS: '1000' });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^nudge: cannot reach Redis \(is it running\? check REDIS_URL; NUDGE_REDIS_CLUSTER=true: is REDIS_URL a node of a Redis Cluster\?, or raise NUDGE_REDIS_WAIT_MS\)/m);
  });

  it('refuses a --now without an offset', async () => {
    const r = await nudge(['tick', '--now', '2026-12-01 09:00']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--now must be an ISO instant with an offset/);
  });
});

describe('migrate', () => {
  it('is safe to run again', async () => {
    const r = await nudge(['migrate']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/schema was already up to date/);
  });

  it('three at once on a database that does not exist yet: one creates it, all succeed', async () => {
    const name = `nudge_test_migrate_${process.pid}_${Date.now()}`;
    const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
    await admin.connect();
    try {
      const env = { DATABASE_URL: databaseUrl(name) };
      // Before, a second CREATE DATABASE racing the first failed on pg_database's unique index.
      const runs = await Promise.all([1, 2, 3].map(() => nudge(['migrate'], env)));
      expect(runs.map((r) => [r.code, r.stderr])).toEqual([[0, ''], [0, ''], [0, '']]);
      expect(runs.filter((r) => r.stdout.includes('created the database'))).toHaveLength(1);
    } finally {
      await admin.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
      await admin.end();
    }
  });
});

describe('an invalid journey file', () => {
  it('stops tick with file:line before anything is sent', async () => {
    const journeys = path.join(cwd, 'broken.yaml');
    writeFileSync(journeys, 'steps:\n  - id: a\n    template: closing-soon\n    trigger: { closingDate: { daysBefor: 3 } }\n');
    const r = await nudge(['tick', '--now', '2026-12-01T09:00:00Z'], { NUDGE_JOURNEYS: journeys });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${journeys}:4:`);
    expect(r.stderr).toMatch(/daysBefor/);
    const check = await nudge(['templates', 'check'], { NUDGE_JOURNEYS: journeys });
    expect(check.code).toBe(1);
    expect(check.stdout).toContain(`${journeys}:4:`);
  });

  it('stops explain, forecast and simulate, naming the journey file, not "nothing was sent"', async () => {
    const journeys = path.join(cwd, 'broken-read.yaml');
    writeFileSync(journeys, 'steps:\n  - id: a\n    template: closing-soon\n    trigger: { closingDate: { daysBefor: 3 } }\n');
    for (const args of [['explain', '1'], ['forecast'], ['simulate', '--days', '2']]) {
      const r = await nudge(args, { NUDGE_JOURNEYS: journeys });
      expect([args[0], r.code]).toEqual([args[0], 1]);
      expect(r.stderr).toMatch(new RegExp(`^nudge: 1 problem in the journey file:\\n${journeys}:4:`));
    }
  });

  // A marketer's template typo blocked the sales forecast: these read the journey and render nothing.
  it('a template that does not compile: explain, forecast and simulate warn of it and go on; tick stops', async () => {
    const templates = path.join(cwd, 'templates-broken');
    cpSync(world.templatesDir, templates, { recursive: true });
    appendFileSync(path.join(templates, 'last-call.hbs'), '{{#if}}\n');
    const env = { NUDGE_TEMPLATES_DIR: templates };
    const contact = await insertContact(world.database.db, { email: 'read@customer.test' });
    const id = await insertOpportunity(world.database.db, { closing_date: '2027-06-10', stage: 'proposal', primary_contact_id: contact });
    for (const args of [['explain', String(id), '--json'], ['forecast', '--json'], ['simulate', '--days', '2', '--json']]) {
      const r = await nudge([...args, '--now', '2026-12-01T09:00:00Z'], env);
      expect([args[0], r.code]).toEqual([args[0], 0]);
      expect(r.stderr).toMatch(/^nudge: warning: 1 problem in the templates \(see `nudge templates check`\); \w+ goes on, but start and tick refuse these files until they are fixed, and a running daemon keeps its last good version:\n.*last-call\.hbs:\d+/);
      expect(() => JSON.parse(r.stdout)).not.toThrow();
    }
    const tick = await nudge(['tick', '--now', '2026-12-01T09:00:00Z'], env);
    expect(tick.code).toBe(1);
    expect(tick.stderr).toMatch(/^nudge: 1 problem in the journey file or templates; nothing was sent:/);
  });

  it('templates check passes on the shipped templates', async () => {
    const r = await nudge(['templates', 'check']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok: 5 steps/m);
  });
});

describe('tick, work --drain and explain', () => {
  it('send the due step, print JSON summaries last, and explain the decision', async () => {
    const contact = await insertContact(world.database.db, { email: 'lea@customer.test', locale: 'de', time_zone: 'Europe/Berlin' });
    const id = await insertOpportunity(world.database.db, {
      title: 'Sprachkurs in Australien', closing_date: '2026-12-17', stage: 'proposal', primary_contact_id: contact,
      stage_entered_at: new Date('2026-11-01T10:00:00Z'),
    });
    // 7 days before 2026-12-17 at 09:00 Berlin (CET, +1) = 2026-12-10T08:00:00Z.
    const tick = await nudge(['tick', '--now', '2026-12-10T08:00:00Z']);
    expect(tick.code).toBe(0);
    // The 14-day step (due 2026-12-03) was never sent: it is recorded as expired.
    expect(tick.summary).toMatchObject({ scanned: 1, enqueued: 1, suppressed: 1 });
    // Again before any worker ran: the job still waits and the suppression is recorded, so the
    // summary counts nothing new.
    const again = await nudge(['tick', '--now', '2026-12-10T08:00:00Z']);
    expect(again.summary).toMatchObject({ scanned: 1, enqueued: 0, suppressed: 0 });
    const work = await nudge(['work', '--drain', '--now', '2026-12-10T08:00:00Z']);
    expect(work.code).toBe(0);
    expect(work.summary).toMatchObject({ sent: 1 });
    expect(world.smtp.received.map((m) => m.envelopeTo[0])).toEqual(['lea@customer.test']);
    expect(world.smtp.received[0]!.parsed.subject).toContain('Sprachkurs in Australien');

    const explain = await nudge(['explain', String(id), '--now', '2026-12-10T08:05:00Z', '--json']);
    expect(explain.code).toBe(0);
    const json = JSON.parse(explain.stdout) as { opportunityId: number; steps: { stepId: string; verdict: string; dueAt: string | null; reason: string | null }[]; deliveries: { status: string; step_id: string }[] };
    expect(json.opportunityId).toBe(id);
    const byStep = Object.fromEntries(json.steps.map((s) => [s.stepId, s]));
    expect(byStep['closing-in-7-days']).toMatchObject({ verdict: 'sent', dueAt: '2026-12-10T08:00:00.000Z' });
    expect(byStep['closing-in-3-days']).toMatchObject({ verdict: 'scheduled', dueAt: '2026-12-14T08:00:00.000Z' });
    expect(byStep['closing-in-14-days']).toMatchObject({ verdict: 'suppressed', reason: 'expired' });
    expect(byStep['update-closing-date']).toMatchObject({ verdict: 'scheduled' });
    expect(json.deliveries.map((d) => [d.step_id, d.status])).toContainEqual(['closing-in-7-days', 'sent']);

    const human = await nudge(['explain', String(id), '--now', '2026-12-10T08:05:00Z']);
    expect(human.stdout).toMatch(/closing-in-3-days\s+2026-12-14T08:00:00.000Z\s+scheduled/);
  });

  it('work --drain without SMTP_URL writes the emails to the outbox, and says so', async () => {
    const c = await insertContact(world.database.db, { email: 'outbox@customer.test', time_zone: 'UTC' });
    await insertOpportunity(world.database.db, { title: 'Deal outbox', closing_date: '2027-08-20', stage: 'proposal', primary_contact_id: c });
    const NOW = '2027-08-17T09:00:00Z';
    expect((await nudge(['tick', '--now', NOW])).summary).toMatchObject({ enqueued: 1 });
    const outbox = path.join(cwd, 'outbox-of-drain');
    const work = await nudge(['work', '--drain', '--now', NOW], { SMTP_URL: undefined, NUDGE_OUTBOX_DIR: outbox });
    expect(work.code).toBe(0);
    expect(work.summary).toMatchObject({ sent: 1 });
    expect(work.stderr).toContain(`SMTP_URL is not set: emails are written as .eml files to ${outbox} (development only)`);
    expect(readdirSync(outbox).filter((f) => f.endsWith('.eml'))).toHaveLength(1);
  });

  it('a reader that closes the output early (| head) ends the command quietly, exit 0', async () => {
    const child = spawnNudge(['forecast', '--now', '2026-12-01T09:00:00Z'], world.env, cwd);
    // Closed before the command writes: its first line meets a pipe with no reader (EPIPE).
    child.stdout!.destroy();
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr += d; });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('a closed output does not hide a failure: work --drain without Redis still exits 3', async () => {
    const env = { ...world.env, REDIS_URL: `redis://127.0.0.1:${await freePort()}`, NUDGE_REDIS_WAIT_MS: '1000' };
    const child = spawnNudge(['work', '--drain', '--now', '2026-12-01T09:00:00Z'], env, cwd);
    child.stdout!.destroy();
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr += d; });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(stderr).toMatch(/^nudge: cannot reach Redis/m);
    expect(stderr).not.toMatch(/EPIPE/);
    expect(code).toBe(3);
  });

  it('explain names a missing opportunity and exits 1', async () => {
    const r = await nudge(['explain', '999999', '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ opportunityId: 999999, steps: [], deliveries: [] });
    expect(r.stderr).toBe('nudge: opportunity 999999 does not exist, and no decision about it is recorded\n');
    const text = await nudge(['explain', '999999']);
    expect([text.code, text.stderr]).toEqual([1, 'nudge: opportunity 999999 does not exist, and no decision about it is recorded\n']);
  });

  it('explain takes an id beyond 2^53, as the daemon sends for it (a JSON string), and refuses one beyond bigint', async () => {
    const big = '9007199254740993';
    await sql`insert into opportunities (id, title, stage, closing_date) values (${big}::bigint, 'Big id', 'proposal', '2027-03-01')`.execute(world.database.db);
    try {
      const r = await nudge(['explain', big, '--json']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ opportunityId: big });
      expect((await nudge(['explain', `000${big}`, '--json'])).code).toBe(0);
      const beyond = await nudge(['explain', '9223372036854775808']);
      expect(beyond.code).toBe(1);
      expect(beyond.stderr).toMatch(/^nudge: opportunityId must be at most 9223372036854775807, got "9223372036854775808"$/m);
    } finally {
      await sql`delete from opportunities where id = ${big}::bigint`.execute(world.database.db);
    }
  });
});

describe('several processes at once', () => {
  it('three ticks and three work processes send each due email exactly once', async () => {
    world.smtp.received.length = 0;
    const ids: number[] = [];
    for (let i = 0; i < 30; i++) {
      const c = await insertContact(world.database.db, { email: `many-${i}@customer.test`, time_zone: 'UTC' });
      ids.push(await insertOpportunity(world.database.db, { title: `Deal ${i}`, closing_date: '2027-01-17', stage: 'proposal', primary_contact_id: c }));
    }
    const now = '2027-01-14T09:00:00Z';
    const ticks = await Promise.all([1, 2, 3].map(() => nudge(['tick', '--now', now])));
    expect(ticks.map((t) => t.code)).toEqual([0, 0, 0]);
    // The same sends enqueued again under other job ids: only the database can stop them now.
    await world.rt.queue.addBulk(ids.map((opportunityId) => ({
      name: 'deliver', data: { opportunityId, stepId: 'closing-in-3-days', closingDate: '2027-01-17', occurrence: '' },
      opts: { jobId: `again-${opportunityId}` },
    })));
    const works = await Promise.all([1, 2, 3].map(() => nudge(['work', '--drain', '--now', now])));
    expect(works.map((w) => w.code)).toEqual([0, 0, 0]);
    const sent = world.smtp.received.filter((m) => m.envelopeTo[0]!.startsWith('many-'));
    expect(sent).toHaveLength(30);
    expect(new Set(sent.map((m) => m.envelopeTo[0])).size).toBe(30);
    const rows = (await deliveries(world.database.db)).filter((r) => ids.includes(r.opportunity_id));
    expect(rows.filter((r) => r.status === 'sent')).toHaveLength(30);
    expect(works.reduce((n, w) => n + Number(w.summary?.sent ?? 0), 0)).toBe(30);
  }, 180_000);
});

describe('a Redis that does not answer', () => {
  /** `count` opportunities closing on `closingDate`: their 3-days-before step is due at 09:00 UTC three days before. */
  async function due(prefix: string, count: number, closingDate: string): Promise<number[]> {
    const ids: number[] = [];
    for (let i = 0; i < count; i++) {
      const c = await insertContact(world.database.db, { email: `${prefix}-${i}@customer.test`, time_zone: 'UTC' });
      ids.push(await insertOpportunity(world.database.db, { title: `Deal ${prefix} ${i}`, closing_date: closingDate, stage: 'proposal', primary_contact_id: c }));
    }
    return ids;
  }

  it('stops tick and work --drain with exit 3 naming Redis after NUDGE_REDIS_WAIT_MS, not for ever', async () => {
    const ids = await due('noredis', 1, '2027-06-20');
    const NOW = '2027-06-17T09:00:00Z';
    const env = { REDIS_URL: `redis://127.0.0.1:${await freePort()}`, NUDGE_REDIS_WAIT_MS: '1000' };
    // A hang fails here: runNudge kills the command after 30 s and rejects.
    const tick = await runNudge(['tick', '--now', NOW], { ...world.env, ...env }, cwd, 30_000);
    expect(tick.code).toBe(3);
    // Stopped at the first command Redis did not answer (the check of what REDIS_URL names, before
    // the scan writes anything), not after the adds waited as long.
    expect(tick.stderr).toMatch(/cannot reach Redis .*Redis \(INFO cluster\) did not answer within 1000 ms/);
    const work = await runNudge(['work', '--drain', '--now', NOW], { ...world.env, ...env }, cwd, 30_000);
    expect(work.code).toBe(3);
    // Stopped at the first command, as tick is, with its summary: after one wait, not two.
    expect(work.summary).toMatchObject({ jobs: 0, unreachable: 'Redis (INFO cluster) did not answer within 1000 ms' });
    expect(work.stderr).toMatch(/cannot reach Redis/);
    expect((await deliveries(world.database.db)).filter((r) => ids.includes(r.opportunity_id) && r.status !== 'suppressed')).toEqual([]);
  }, 90_000);

  it('gone in the middle of work --drain: it stops with exit 3, and the next tick and drain send the rest, each once', async () => {
    const redis = await startOwnRedis();
    try {
      const ids = await due('midredis', 300, '2027-05-20');
      const NOW = '2027-05-17T09:00:00Z';
      const env = { ...world.env, REDIS_URL: redis.url, NUDGE_REDIS_WAIT_MS: '1000' };
      const mine = () => world.smtp.received.filter((m) => m.envelopeTo[0]!.startsWith('midredis-'));
      expect((await runNudge(['tick', '--now', NOW], env, cwd)).summary).toMatchObject({ enqueued: 300 });
      const child = spawnNudge(['work', '--drain', '--now', NOW], env, cwd);
      let stdout = '';
      child.stdout!.on('data', (d) => { stdout += d; });
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      await until('the first emails', () => mine().length > 0, 30_000);
      await redis.kill();
      const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('hung'), 60_000))]);
      if (code === 'hung') child.kill('SIGKILL');
      expect(code).toBe(3);
      expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toMatchObject({ unreachable: expect.stringMatching(/^Redis/) as unknown });
      expect(mine().length).toBeLessThan(300);
      // Back, empty: the next tick enqueues what is not decided, and a drain sends it.
      await redis.start();
      expect((await runNudge(['tick', '--now', NOW], env, cwd)).code).toBe(0);
      expect((await runNudge(['work', '--drain', '--now', NOW], env, cwd)).code).toBe(0);
      expect(mine()).toHaveLength(300);
      expect(new Set(mine().map((m) => m.envelopeTo[0])).size).toBe(300);
      const rows = (await deliveries(world.database.db)).filter((r) => ids.includes(r.opportunity_id) && r.step_id === 'closing-in-3-days');
      expect(rows.map((r) => r.status).filter((s) => s === 'sent')).toHaveLength(300);
      expect(rows).toHaveLength(300);
    } finally {
      await redis.stop();
    }
  }, 180_000);
});

describe('the process time zone changes nothing', () => {
  it.each(['Pacific/Kiritimati', 'America/Los_Angeles'])('TZ=%s computes the same due instant', async (tz) => {
    const c = await insertContact(world.database.db, { email: `tz-${tz.replace('/', '-').toLowerCase()}@customer.test`, time_zone: 'Asia/Tokyo' });
    const id = await insertOpportunity(world.database.db, { closing_date: '2027-03-04', stage: 'qualification', primary_contact_id: c });
    // 14 days before 2027-03-04 is 2027-02-18; 09:00 in Tokyo (+9) is 2027-02-18T00:00:00Z.
    const r = await nudge(['explain', String(id), '--now', '2027-02-18T00:00:00Z', '--json'], { TZ: tz });
    const steps = (JSON.parse(r.stdout) as { steps: { stepId: string; dueAt: string; verdict: string }[] }).steps;
    expect(steps.find((s) => s.stepId === 'closing-in-14-days')).toMatchObject({ dueAt: '2027-02-18T00:00:00.000Z', verdict: 'due' });
  });
});
