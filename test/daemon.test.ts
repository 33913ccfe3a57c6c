/**
 * `nudge start` as an operator runs it: two processes on one database and Redis, the real clock,
 * a scan every second; health, readiness, unsubscribe, and a clean stop on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNudge } from './helpers/cli.ts';
import { moreScans, startDaemon, until, type Daemon } from './helpers/daemon.ts';
import { freePort } from './helpers/ports.ts';
import { deliveries, insertContact, insertOpportunity } from './helpers/fixtures.ts';
import { createWorld, REPO, type World } from './helpers/world.ts';
import { addDays } from '../src/journey/time.ts';
import { signUnsubscribeToken } from '../src/unsubscribe-token.ts';
import { DELIVER_QUEUE, queuePrefix } from '../src/queue/queues.ts';
import { postgresUnreachable } from '../src/db/database.ts';
import pg from 'pg';

// Due at 00:00 UTC on closing date − 3 days: whenever the test runs, a closing date three days
// after today (UTC) is inside its window, which is 48 hours so that it still is when midnight
// passes during the test.
const JOURNEY = `
defaults:
  timeZone: UTC
  sendAt: "00:00"
  window: 48h
steps:
  - id: closing-in-3-days
    template: reminder
    trigger: { closingDate: { daysBefore: 3 } }
`;
const TEMPLATE = `---
subject: "{{reference}}: three days left"
---
<p>Hello {{contact.firstName}}, about {{reference}}.</p>
{{#if unsubscribeUrl}}<a href="{{unsubscribeUrl}}">Unsubscribe</a>{{/if}}
`;

let world: World;
const daemons: Daemon[] = [];

beforeAll(async () => {
  world = await createWorld({ shippedTemplates: false });
  world.write('journeys.yaml', JOURNEY);
  world.write('reminder.hbs', TEMPLATE);
});

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  await world?.close();
});

describe('two daemons on one database and Redis', () => {
  it('send the due email once, answer health and readiness, and stop cleanly on SIGTERM', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const contact = await insertContact(world.database.db, { email: 'daemon@customer.test', time_zone: 'UTC', first_name: 'Dee' });
    const id = await insertOpportunity(world.database.db, { title: 'Trip to the USA', closing_date: addDays(today, 3), stage: 'proposal', primary_contact_id: contact });

    daemons.push(startDaemon(world.env), startDaemon(world.env));
    const ports = await Promise.all(daemons.map((d) => d.port));
    const started = Date.now();

    await until('the email', () => world.smtp.received.length > 0);
    for (const port of ports) {
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(health.status).toBe(200);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ ok: true, checks: { postgres: 'ok', redis: 'ok' } });
    }
    // The job completes just after the email arrives (the row marked `sent`, then BullMQ told).
    await until('the job counted by BullMQ', async () => /^nudge_bullmq_job_completed_total\{queue="deliver"\} 1$/m
      .test(await (await fetch(`http://127.0.0.1:${ports[0]}/metrics`)).text()));
    const metrics = await Promise.all(ports.map(async (port) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text()));
    const sentCounts = metrics.map((m) => Number(/^nudge_decisions_total\{status="sent",reason=""\} (\d+)$/m.exec(m)?.[1] ?? 0));
    expect(sentCounts.reduce((a, b) => a + b, 0)).toBe(1);
    expect(metrics.join('\n')).toMatch(/^nudge_scan_duration_seconds_count \d+$/m);
    // A scan ended well in some process, when, and none failed.
    expect(metrics.join('\n')).toMatch(/^nudge_scan_last_success_timestamp_seconds \d+(\.\d+)?$/m);
    for (const m of metrics) expect(m).toMatch(/^nudge_scan_failures_total 0$/m);
    expect(metrics.join('\n')).toMatch(/^nudge_queue_jobs\{state="waiting"\} \d+$/m);
    for (const m of metrics) {
      expect(m).toMatch(/^nudge_redis_up 1$/m);
      // From zero, before the first one: an alert on increase() sees the first unknown outcome.
      expect(m).toMatch(/^nudge_decisions_total\{status="unknown",reason=""\} 0$/m);
      expect(m).toMatch(/^nudge_decisions_total\{status="failed",reason="smtp_rejected"\} 0$/m);
      expect(m).toMatch(/^nudge_decisions_total\{status="suppressed",reason="frequency_cap"\} 0$/m);
      // Every metric is Nudge's (SPEC: named nudge_*), BullMQ's included.
      const names = new Set(m.split('\n').filter((line) => line && !line.startsWith('#')).map((line) => /^[^{ ]+/.exec(line)![0]));
      expect([...names].filter((name) => !name.startsWith('nudge_'))).toEqual([]);
    }
    // BullMQ's own, from Redis: the same for both processes; the one job's completion counted.
    for (const m of metrics) {
      expect(m).toMatch(/^nudge_bullmq_job_count\{queue="deliver", state="waiting"\} \d+$/m);
      expect(m).toMatch(/^nudge_bullmq_job_completed_total\{queue="deliver"\} 1$/m);
    }
    // More scans must not mean more emails.
    await moreScans(daemons, 3);
    expect(world.smtp.received).toHaveLength(1);
    expect((await deliveries(world.database.db, id)).map((r) => r.status)).toEqual(['sent']);

    // One scan per interval for both processes together, not one each: counted from when both
    // were up (the first may have scanned a few times alone while the second started).
    const elapsed = (Date.now() - started) / 1000;
    const scans = daemons.flatMap((d) => d.logs).filter((l) => l.msg === 'scan done' && Date.parse(String(l.time)) >= started).length;
    expect(scans).toBeGreaterThan(0);
    expect(scans).toBeLessThanOrEqual(Math.ceil(elapsed) + 2);
    // The same NUDGE_SECRET: no warning of another one (each process checks every second here).
    expect(daemons.flatMap((d) => d.logs).filter((l) => /different NUDGE_SECRET/.test(String(l.msg)))).toEqual([]);

    for (const d of daemons) d.child.kill('SIGTERM');
    const codes = await Promise.all(daemons.map((d) => d.exited));
    expect(codes).toEqual([0, 0]);
    for (const d of daemons) expect(d.logs.map((l) => l.msg)).toContain('stopped');

    // Logs carry ids, never the address or the title.
    const text = JSON.stringify(daemons.flatMap((d) => d.logs));
    expect(text).not.toContain('daemon@customer.test');
    expect(text).not.toContain('Trip to the USA');
  });
});

describe('a daemon stopping', () => {
  it('says it is not ready while it finishes its sends, so that a load balancer sends no more requests to it', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const contact = await insertContact(world.database.db, { email: 'stopping@customer.test', time_zone: 'UTC', first_name: 'Stan' });
    const id = await insertOpportunity(world.database.db, { title: 'Stopping trip', closing_date: addDays(today, 3), stage: 'proposal', primary_contact_id: contact });
    const before = world.smtp.received.length;
    world.smtp.slow(4_000);
    try {
      const daemon = startDaemon(world.env);
      daemons.push(daemon);
      const port = await daemon.port;
      // The message is in; the server's answer to its final dot is 4 s away.
      await until('the message to arrive', () => world.smtp.received.length > before);
      daemon.child.kill('SIGTERM');
      await until('the process to say it stops', () => daemon.logs.some((l) => l.msg === 'stopping: finishing active jobs'));
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { checks: Record<string, string> }).checks).toMatchObject({ process: 'stopping: finishing active jobs' });
      expect(await daemon.exited).toBe(0);
    } finally {
      world.smtp.slow(0);
    }
    expect((await deliveries(world.database.db, id)).map((r) => r.status)).toEqual(['sent']);
  });
});

describe('two daemons with different NUDGE_SECRETs on one queue', () => {
  it('each logs an error that another process has another secret, and runs on', async () => {
    const pair = [startDaemon(world.env), startDaemon({ ...world.env, NUDGE_SECRET: 'another-secret-for-the-other-process' })];
    daemons.push(...pair);
    await Promise.all(pair.map((d) => d.port));
    const warned = (d: Daemon) => d.logs.filter((l) => /another process on this queue runs with a different NUDGE_SECRET/.test(String(l.msg)));
    await until('both processes to say so', () => pair.every((d) => warned(d).length > 0), 20_000);
    expect(warned(pair[0]!)[0]).toMatchObject({ level: 50 });
    for (const d of pair) d.child.kill('SIGTERM');
    expect(await Promise.all(pair.map((d) => d.exited))).toEqual([0, 0]);
  });
});

describe('a NUDGE_SECRET rotated, the old one in NUDGE_SECRET_PREVIOUS', () => {
  it('links signed with either unsubscribe; while an old process runs, the new one warns (no error), the old one errs', async () => {
    const OLD = world.env.NUDGE_SECRET!;
    const NEW = 'rotated-secret-0123456789abcdef';
    const contacts = [
      await insertContact(world.database.db, { email: 'old-link@customer.test' }),
      await insertContact(world.database.db, { email: 'new-link@customer.test' }),
    ];
    // The fingerprint an earlier test's processes left (kept three intervals) is not this test's.
    await world.rt.redis.del(`${queuePrefix(world.prefix, DELIVER_QUEUE)}:nudge-secret`);
    const rotated = startDaemon({ ...world.env, NUDGE_SECRET: NEW, NUDGE_SECRET_PREVIOUS: `${OLD}, another-old-secret-0123456789` }, ['--no-scheduler', '--no-worker']);
    const old = startDaemon(world.env, ['--no-scheduler', '--no-worker']);
    daemons.push(rotated, old);
    const base = `http://127.0.0.1:${await rotated.port}`;
    await old.port;
    const unsubscribe = (contact: number, secret: string, at = base) => fetch(`${at}/unsubscribe/${signUnsubscribeToken(contact, secret)}`,
      { method: 'POST', body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    // The link of an email sent before the rotation, and one sent after.
    expect((await unsubscribe(contacts[0]!, OLD)).status).toBe(200);
    expect((await unsubscribe(contacts[1]!, NEW)).status).toBe(200);
    const rows = await world.database.db.selectFrom('contacts').select(['id', 'unsubscribed_at']).where('id', 'in', contacts).orderBy('id').execute();
    expect(rows.map((r) => r.unsubscribed_at)).toEqual([expect.any(Date), expect.any(Date)]);
    // A secret it was never given signs nothing it accepts.
    expect((await unsubscribe(contacts[0]!, 'never-this-secret-0123456789')).status).toBe(400);
    // The old process knows nothing of the new secret.
    expect((await unsubscribe(contacts[1]!, NEW, `http://127.0.0.1:${await old.port}`)).status).toBe(400);

    const said = (d: Daemon, pattern: RegExp) => d.logs.filter((l) => pattern.test(String(l.msg)));
    await until('both to say so', () => said(rotated, /NUDGE_SECRET_PREVIOUS: expected while a rotation/).length > 0
      && said(old, /different NUDGE_SECRET/).length > 0, 20_000);
    expect(said(rotated, /NUDGE_SECRET_PREVIOUS: expected while a rotation/)[0]).toMatchObject({ level: 40 });
    expect(said(rotated, /different NUDGE_SECRET/)).toEqual([]);
    expect(said(old, /different NUDGE_SECRET/)[0]).toMatchObject({ level: 50 });
    for (const d of [rotated, old]) d.child.kill('SIGTERM');
    expect(await Promise.all([rotated.exited, old.exited])).toEqual([0, 0]);
  });
});

describe('two daemons on one machine with the same PORT', () => {
  it('the second runs without its HTTP server, saying so, and keeps running: the email goes once', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const contact = await insertContact(world.database.db, { email: 'same-port@customer.test', time_zone: 'UTC', first_name: 'Sam' });
    const id = await insertOpportunity(world.database.db, { title: 'Trip to Japan', closing_date: addDays(today, 3), stage: 'proposal', primary_contact_id: contact });
    const port = String(await freePort());
    const first = startDaemon({ ...world.env, PORT: port });
    expect(await first.port).toBe(Number(port));
    const second = startDaemon({ ...world.env, PORT: port });
    daemons.push(first, second);
    expect(await second.port).toBeNull();
    expect(second.child.exitCode).toBeNull();
    expect(second.logs.map((l) => l.msg)).toContain('PORT is in use by another nudge process: this one runs without its HTTP server (health, readiness, metrics); give each process on a machine its own PORT, or PORT=0 for any free one');
    await until('the email', async () => (await deliveries(world.database.db, id)).some((r) => r.status === 'sent'));
    await moreScans([first, second]); // still one email
    expect(world.smtp.received.filter((m) => m.envelopeTo[0] === 'same-port@customer.test')).toHaveLength(1);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    for (const d of [first, second]) d.child.kill('SIGTERM');
    expect(await Promise.all([first.exited, second.exited])).toEqual([0, 0]);
    expect(second.logs.map((l) => l.msg)).toContain('stopped');
  });

  it('a port taken by something other than Nudge stops start, naming it', async () => {
    const other = http.createServer((_req, res) => res.end('not nudge\n'));
    await new Promise<void>((resolve) => other.listen(0, '0.0.0.0', () => resolve()));
    try {
      const port = (other.address() as AddressInfo).port;
      const r = await runNudge(['start'], { ...world.env, PORT: String(port) });
      expect(r.code).toBe(3);
      expect(r.stderr).toContain(`nudge: the HTTP port is taken by another process (give this one another PORT, or PORT=0 for any free one): listen EADDRINUSE: address already in use 0.0.0.0:${port}`);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });
});

/**
 * A POST whose Content-Length announces `length` bytes, of which it sends one: the server answers
 * from the header. (Uploading the 2 MB raced that answer: the server closes the connection once it
 * has answered, and a client still writing fails with EPIPE before it reads the answer.)
 */
function postAnnouncing(url: string, length: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-length': String(length) } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
        req.destroy();
      });
    });
    req.on('error', reject);
    req.write('x');
  });
}

describe('unsubscribe', () => {
  it('a link shows a confirmation, the one-click POST unsubscribes, a forged token changes nothing', async () => {
    const contact = await insertContact(world.database.db, { email: 'leave@customer.test' });
    const daemon = startDaemon(world.env, ['--no-scheduler', '--no-worker']);
    daemons.push(daemon);
    const base = `http://127.0.0.1:${await daemon.port}`;
    const token = signUnsubscribeToken(contact, world.env.NUDGE_SECRET!);
    const unsubscribedAt = async () => (await world.database.db.selectFrom('contacts').select('unsubscribed_at').where('id', '=', contact).executeTakeFirstOrThrow()).unsubscribed_at;

    const page = await fetch(`${base}/unsubscribe/${token}`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<form method="post">');
    expect(await unsubscribedAt()).toBeNull();

    const forged = signUnsubscribeToken(contact, 'another-secret-0123456789');
    const altered = token.replace(/^c\d+/, `c${contact + 1}`);
    for (const bad of [forged, altered, 'c1.short', 'garbage']) {
      const r = await fetch(`${base}/unsubscribe/${bad}`, { method: 'POST', body: 'List-Unsubscribe=One-Click' });
      expect(r.status).toBe(400);
    }
    expect(await unsubscribedAt()).toBeNull();

    // A client's mistakes are answered as such, not as a failure of ours (nor logged as one).
    const notJson = await fetch(`${base}/unsubscribe/${token}`, { method: 'POST', body: 'x', headers: { 'content-type': 'application/json' } });
    expect([notJson.status, notJson.headers.get('content-type'), await notJson.text()]).toEqual([400, 'text/plain', 'Bad Request\n']);
    const tooLarge = await postAnnouncing(`${base}/unsubscribe/${token}`, 2_000_000);
    expect([tooLarge.status, tooLarge.body]).toEqual([413, 'Payload Too Large\n']);
    expect(await unsubscribedAt()).toBeNull();

    // A known path with a method it does not take says which it takes; an unknown path is not found.
    const wrongMethod = await fetch(`${base}/unsubscribe/${token}`, { method: 'DELETE' });
    expect([wrongMethod.status, wrongMethod.headers.get('allow'), await wrongMethod.text()]).toEqual([405, 'GET, HEAD, POST', 'method not allowed\n']);
    const postHealth = await fetch(`${base}/healthz`, { method: 'POST', body: 'x' });
    expect([postHealth.status, postHealth.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
    await postHealth.text();
    const unknown = await fetch(`${base}/unsubscribe`);
    expect([unknown.status, await unknown.text()]).toEqual([404, 'not found\n']);
    expect(await unsubscribedAt()).toBeNull();

    const post = await fetch(`${base}/unsubscribe/${token}`, { method: 'POST', body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(post.status).toBe(200);
    // Public, one button: nobody may frame it.
    expect(post.headers.get('x-frame-options')).toBe('DENY');
    expect(post.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(await unsubscribedAt()).toBeInstanceOf(Date);

    // A contact id beyond 2^53 (bigint): its link, signed as the email was, works.
    const big = '9007199254740993';
    await sql`insert into contacts (id, email) values (${big}::bigint, 'big@customer.test')`.execute(world.database.db);
    const bigPost = await fetch(`${base}/unsubscribe/${signUnsubscribeToken(big as unknown as number, world.env.NUDGE_SECRET!)}`, { method: 'POST', body: 'List-Unsubscribe=One-Click' });
    expect(bigPost.status).toBe(200);
    const bigRow = await sql<{ unsubscribed_at: Date | null }>`select unsubscribed_at from contacts where id = ${big}::bigint`.execute(world.database.db);
    expect(bigRow.rows[0]!.unsubscribed_at).toBeInstanceOf(Date);

    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    expect(daemon.logs.filter((l) => l.msg === 'http handler failed')).toEqual([]);
    expect(daemon.logs.filter((l) => l.msg === 'contact unsubscribed').map((l) => String(l.contactId))).toEqual([String(contact), big]);
  });
});

describe('started by npm (npx nudge start, npm run)', () => {
  it('stops as on SIGTERM when npm goes: npm passes SIGTERM to a shell, which does not pass it on', async () => {
    // npm's own topology: npm → sh -c → node. The shell stays Nudge's parent (`; true`), as npm's does.
    const shell = spawn('sh', ['-c', `"${process.execPath}" "${path.join(REPO, 'bin', 'nudge.js')}" start --no-scheduler; true`], {
      env: { ...process.env, ...world.env, PORT: '0', LOG_LEVEL: 'info', npm_command: 'exec' }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    const logs: Record<string, unknown>[] = [];
    shell.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n').filter(Boolean)) {
        try { logs.push(JSON.parse(line) as Record<string, unknown>); } catch { logs.push({ msg: line }); }
      }
    });
    const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
    let pid = 0;
    try {
      await until('nudge to start', () => logs.some((l) => l.msg === 'nudge started'), 30_000);
      pid = logs.find((l) => l.msg === 'nudge started')!.pid as number;
      expect(pid).not.toBe(shell.pid);
      shell.kill('SIGTERM');
      await until('nudge to stop', () => !alive(pid), 15_000);
      expect(logs.find((l) => l.msg === 'stopping: finishing active jobs')).toMatchObject({ signal: 'npm, which started this process, is gone' });
      expect(logs.some((l) => l.msg === 'stopped')).toBe(true);
    } finally {
      if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
      shell.kill('SIGKILL');
    }
  }, 60_000);
});

describe('a SIGTERM while the process loads', () => {
  /** A daemon whose load is held by the test's module hooks (test/helpers/slow-load.mjs), as `settings` ask. */
  function slowLoading(settings: Record<string, string> = {}): Daemon {
    const preload = path.join(REPO, 'test', 'helpers', 'slow-load.mjs');
    const daemon = startDaemon({ ...world.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`, ...settings });
    daemons.push(daemon);
    return daemon;
  }

  it('exits 0, saying it stopped before starting, rather than dying of the signal', async () => {
    // The load held for 30 s by a module hook of the test's (it says so as the load begins).
    const daemon = slowLoading();
    await until('the process to load its sources', () => daemon.logs.some((l) => l.msg === 'test: holding the load of src/cli/main.ts'), 30_000);
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    expect(daemon.child.signalCode).toBeNull();
    expect(daemon.logs.map((l) => l.msg)).toContain('nudge: stopped before starting (SIGTERM)');
  });

  it('the daemon\'s own modules are part of the load: a SIGTERM before the daemon takes over its signals exits 0', async () => {
    // Loaded on demand by \`start\`, after the command line had loaded, workers/daemon.ts once left
    // a second of neither: a supervisor's SIGTERM then ended the process with 143 and not a line.
    const daemon = slowLoading({ SLOW_LOAD_MODULE: 'workers/daemon.ts' });
    await until('the process to load the daemon', () => daemon.logs.some((l) => l.msg === 'test: holding the load of workers/daemon.ts'), 30_000);
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    expect(daemon.logs.map((l) => l.msg)).toContain('nudge: stopped before starting (SIGTERM)');
  });

  it('caught while the sources are evaluated (no handler can run then), it still stops the process', async () => {
    // The evaluation of src/cli/main.ts held for 5 s: the signal waits, caught, to be handed to a
    // handler. One removed in the meantime, with none other yet, dropped it: the daemon started and
    // ran on, SIGTERM lost.
    const daemon = slowLoading({ SLOW_LOAD_BUSY_MS: '5000' });
    await until('the sources to be evaluated', () => daemon.logs.some((l) => l.msg === 'test: evaluating src/cli/main.ts'), 30_000);
    // Sent while they are: a signal that came after would pass whatever became of one caught then.
    expect(daemon.logs.some((l) => l.msg === 'test: evaluated src/cli/main.ts')).toBe(false);
    daemon.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([daemon.exited, new Promise((r) => { timer = setTimeout(() => r('still running 10 s after SIGTERM'), 10_000); })]);
    clearTimeout(timer);
    // Stopped as a command that had not taken over its signals (143), or by the daemon's own stop (0).
    expect([0, 143]).toContain(code);
  });
});

const BOARD_TOKEN = 'board-token-0123456789';

/** A daemon serving only HTTP, its dashboard behind BOARD_TOKEN; its base URL. */
async function boardDaemon(): Promise<{ daemon: Daemon; base: string }> {
  const daemon = startDaemon({ ...world.env, NUDGE_BOARD_TOKEN: BOARD_TOKEN }, ['--no-scheduler', '--no-worker']);
  daemons.push(daemon);
  return { daemon, base: `http://127.0.0.1:${await daemon.port}` };
}

/** The dashboard's own scripts, as absolute URLs, from its page. */
function boardScripts(page: string, base: string): string[] {
  return [...page.matchAll(/src="([^"]*static\/js\/[^"]+)"/g)].map((m) => new URL(m[1]!, `${base}/board/`).toString());
}

describe('the queue dashboard', () => {
  it('is behind NUDGE_BOARD_TOKEN', async () => {
    const { daemon, base } = await boardDaemon();
    expect((await fetch(`${base}/board`)).status).toBe(401);
    const wrong = Buffer.from('ops:not-the-token-at-all').toString('base64');
    expect((await fetch(`${base}/board`, { headers: { authorization: `Basic ${wrong}` } })).status).toBe(401);
    const right = Buffer.from(`ops:${BOARD_TOKEN}`).toString('base64');
    const board = await fetch(`${base}/board`, { headers: { authorization: `Basic ${right}` } });
    expect(board.status).toBe(200);
    const page = await board.text();
    expect(page).toMatch(/<html/i);
    // Its scripts come from the process too (@fastify/static), behind the same token.
    const url = boardScripts(page, base)[0];
    expect(url).toBeDefined();
    // Each body read to its end: one left unread holds its connection, and the daemon's stop waits for it.
    const refused = await fetch(url!);
    expect([refused.status, (await refused.text()).includes('function')]).toEqual([401, false]);
    const served = await fetch(url!, { headers: { authorization: `Basic ${right}` } });
    expect(served.status).toBe(200);
    expect(await served.text()).toMatch(/function|=>/);
    // A file the board does not have is not there (404), not a method its route refuses (405).
    const missing = await fetch(new URL('no-such-file.js', url!), { headers: { authorization: `Basic ${right}` } });
    expect([missing.status, await missing.text()]).toEqual([404, 'not found\n']);
    const api = await fetch(`${base}/board/api/queues`, { headers: { authorization: `Bearer ${BOARD_TOKEN}` } });
    expect(api.status).toBe(200);
    expect((await fetch(`${base}/board/api/queues`, { headers: { authorization: `Bearer ${BOARD_TOKEN} extra` } })).status).toBe(401);
    // The board's plugin does not take the other routes' error handling with it.
    const notJson = await fetch(`${base}/unsubscribe/c1.x`, { method: 'POST', body: 'x', headers: { 'content-type': 'application/json' } });
    expect([notJson.status, notJson.headers.get('content-type'), await notJson.text()]).toEqual([400, 'text/plain', 'Bad Request\n']);
    expect(JSON.stringify(await api.json())).toContain('deliver');
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
  });
});

describe('stopping while a client leaves a big response unread', () => {
  it('cuts that response after 2 s and exits 0, not at the end of the grace period with 1', async () => {
    const { daemon, base } = await boardDaemon();
    const auth = { authorization: `Bearer ${BOARD_TOKEN}` };
    const scripts = boardScripts(await (await fetch(`${base}/board`, { headers: auth })).text(), base);
    expect(scripts.length).toBeGreaterThan(0);
    const unread = await Promise.all(scripts.map((u) => fetch(u, { headers: auth })));
    expect(unread.map((r) => r.status).every((status) => status === 200)).toBe(true);
    const stopping = performance.now();
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    expect(performance.now() - stopping).toBeLessThan(10_000);
  }, 60_000);
});

describe('an invalid journey file', () => {
  it('stops start before anything runs, naming the file and line', async () => {
    world.write('journeys.yaml', JOURNEY.replace('template: reminder', 'template: reminder\n    sendAt: "9am"'));
    try {
      const r = await runNudge(['start'], { ...world.env, PORT: '0' });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/journeys\.yaml:9:13: steps\[0\]\.sendAt: expected a time of day/);
    } finally {
      world.write('journeys.yaml', JOURNEY);
    }
  });
});

describe('waiting for PostgreSQL at start', () => {
  const sqlError = (code: string) => Object.assign(new pg.DatabaseError('refused', 0, 'error'), { code });
  it.each([
    ['connection refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }), true],
    ['a host name not found', Object.assign(new Error('getaddrinfo ENOTFOUND postgres'), { code: 'ENOTFOUND' }), true],
    ['the server starting up (57P03)', sqlError('57P03'), true],
    ['the server shutting down (57P01)', sqlError('57P01'), true],
    ['too many connections (53300)', sqlError('53300'), true],
    ['a connection that could not be made (08001)', sqlError('08001'), true],
    ['pg\'s connection timeout', new Error('timeout exceeded when trying to connect'), true],
    ['a connection cut', new Error('Connection terminated unexpectedly'), true],
    ['a connection cut before the statement went', new Error('Client has encountered a connection error and is not queryable'), true],
    ['a missing database (3D000)', sqlError('3D000'), false],
    ['a wrong password (28P01)', sqlError('28P01'), false],
    ['PgBouncer\'s own fatal error (08P01)', sqlError('08P01'), false],
    ['a missing table (42P01)', sqlError('42P01'), false],
    ['anything else', new TypeError('x is not a function'), false],
  ])('%s: waited on is %s', (_what, error, expected) => {
    expect(postgresUnreachable(error)).toBe(expected);
  });
});
