/** `nudge start` (or `nudge work`) in a child process: its port, its JSON log lines, its exit. */
import type { ChildProcess } from 'node:child_process';
import { spawnNudge } from './cli.ts';
import { addDays } from '../../src/journey/time.ts';
import { createWorld, type World } from './world.ts';

/**
 * For daemons on the real clock: due at 00:00 UTC three days before the closing date, so a closing
 * date of `closingInThreeDays()` is due now, whenever the test runs. The window is 48 hours, not
 * the default 24: a test still sending when midnight (UTC) passes would otherwise see the rest of
 * its batch expire.
 */
export const DUE_NOW_JOURNEY = `
defaults:
  timeZone: UTC
  sendAt: "00:00"
  window: 48h
steps:
  - id: three-days
    template: t
    trigger: { closingDate: { daysBefore: 3 } }
`;

/** The template `t` the fault tests' journeys send: the opportunity's reference as subject, a greeting. */
export const DUE_NOW_TEMPLATE = '---\nsubject: "{{reference}}"\n---\n<p>Hello {{contact.firstName}}: {{reference}}</p>\n';

/** A test world whose journey and template are these (`DUE_NOW_JOURNEY`, `DUE_NOW_TEMPLATE`). */
export async function createDueNowWorld(): Promise<World> {
  const world = await createWorld({ shippedTemplates: false });
  world.write('journeys.yaml', DUE_NOW_JOURNEY);
  world.write('t.hbs', DUE_NOW_TEMPLATE);
  return world;
}

/** Three days after today (UTC): a closing date whose `DUE_NOW_JOURNEY` step is due now. */
export function closingInThreeDays(): string {
  return addDays(new Date().toISOString().slice(0, 10), 3);
}

export interface Daemon {
  child: ChildProcess;
  /** The HTTP server's port, once started; null for `work`, which serves none. */
  port: Promise<number | null>;
  logs: Record<string, unknown>[];
  exited: Promise<number | null>;
}

export function startDaemon(env: Record<string, string>, args: string[] = []): Daemon {
  return startProcess(['start', ...args], env);
}

/** `nudge work`: delivery workers alone, until SIGTERM; its port resolves to null (no HTTP server). */
export function startWorkProcess(env: Record<string, string>): Daemon {
  return startProcess(['work'], env);
}

function startProcess(args: string[], env: Record<string, string>): Daemon {
  const child = spawnNudge(args, { PORT: '0', ...env, LOG_LEVEL: 'info', NUDGE_SCAN_EVERY_MS: '1000' });
  const logs: Record<string, unknown>[] = [];
  let resolvePort!: (p: number | null) => void;
  const port = new Promise<number | null>((r) => { resolvePort = r; });
  let buffer = '';
  child.stderr!.on('data', (d) => {
    buffer += d;
    for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === 'nudge started') resolvePort(entry.port as number | null);
      } catch {
        logs.push({ msg: line });
      }
    }
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => {
    resolvePort(null); // never started: the assertions on its logs and exit code tell why
    r(code);
  }));
  return { child, port, logs, exited };
}

/**
 * Waits until `daemons` have finished `count` more scans between them than they had when called:
 * a check that more scans send nothing more then has scans behind it, however slow the machine
 * (a fixed wait could hold none). Only a running daemon scans: with none, this times out.
 */
export async function moreScans(daemons: readonly Daemon[], count = 2, ms = 30_000): Promise<void> {
  const done = () => daemons.reduce((n, d) => n + d.logs.filter((l) => l.msg === 'scan done').length, 0);
  const target = done() + count;
  await until(`${count} more scans`, () => done() >= target, ms);
}

export async function until(what: string, check: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

