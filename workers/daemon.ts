/**
 * `nudge start`: scheduler, delivery workers and the HTTP server in one process, each optional
 * (`nudge work` without `--drain` is workers alone). SIGTERM/SIGINT stop taking jobs, let active
 * ones finish within the grace period, then close.
 */
import type { Worker } from 'bullmq';
import { systemClock, type Clock } from '../src/clock.ts';
import { configWarnings } from '../src/config.ts';
import type { Runtime } from '../src/runtime.ts';
import { startDeliverWorker } from './deliver-worker.ts';
import { installationTag, INSTALLATION_HEADER, startHttpServer, type HttpServer } from './http-server.ts';
import { startScheduler } from './scheduler.ts';

export interface DaemonOptions {
  scheduler: boolean;
  worker: boolean;
  /** Serve /healthz, /readyz, /metrics and unsubscribe links on `PORT`. @defaultValue true */
  http?: boolean;
  /** The clock workers judge time by (`work --now`). @defaultValue the system clock */
  clock?: Clock;
  /** Milliseconds active jobs get to finish after SIGTERM. @defaultValue 20000 */
  graceMs?: number;
}

export async function runDaemon(rt: Runtime, options: DaemonOptions): Promise<void> {
  for (const w of configWarnings(rt.config)) rt.logger.warn(w);
  rt.enablePrometheus();
  const content = await rt.liveContent();
  // A process that only serves HTTP has nothing to do without it: there, a taken port is fatal.
  const http: HttpServer | null = options.http === false ? null
    : options.scheduler || options.worker ? await startHttpUnlessPortTaken(rt) : await startHttpServer(rt, rt.config.port);
  const scheduler = options.scheduler ? await startScheduler(rt, content, systemClock) : null;
  const clock = options.clock ?? systemClock;
  const worker: Worker | null = options.worker ? startDeliverWorker(rt, { clock, content, mailer: rt.mailer() }) : null;
  rt.logger.info({ port: http?.port ?? null, scheduler: options.scheduler, worker: options.worker }, 'nudge started');

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      rt.logger.info({ signal }, 'stopping: finishing active jobs');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    whenOrphanedByNpm(() => stop('npm, which started this process, is gone'));
  });

  const grace = options.graceMs ?? 20_000;
  const timer = setTimeout(() => {
    rt.logger.error({ graceMs: grace }, 'grace period over; exiting with jobs still active (BullMQ returns them to the queue)');
    process.exit(1);
  }, grace);
  timer.unref();
  await Promise.all([worker?.close(), scheduler?.close()]);
  await http?.close();
  await rt.close();
  clearTimeout(timer);
  rt.logger.info('stopped');
}

/**
 * Under `npx nudge` or `npm run`, npm passes a SIGTERM to the shell it started Nudge from, which
 * ends without passing it on: Nudge would run on, orphaned, sending. Started by npm, it watches
 * for its parent to go, and then stops as on SIGTERM.
 */
function whenOrphanedByNpm(stop: () => void): void {
  if (!process.env.npm_command) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    stop();
  }, ORPHAN_CHECK_MS);
  timer.unref();
}

const ORPHAN_CHECK_MS = 500;

/**
 * The HTTP server on `PORT`; when a Nudge of the same installation already listens there (a
 * second `nudge start` on the same machine with the same settings), this one runs without it,
 * saying so: its scans and sends do not depend on it, and the other process answers unsubscribe
 * links for both. A port taken by anything else stops the process, as before.
 */
async function startHttpUnlessPortTaken(rt: Runtime): Promise<HttpServer | null> {
  try {
    return await startHttpServer(rt, rt.config.port);
  } catch (error) {
    if ((error as { code?: string }).code !== 'EADDRINUSE' || !(await sameInstallationListens(rt))) throw error;
    rt.logger.error({ port: rt.config.port },
      'PORT is in use by another nudge process: this one runs without its HTTP server (health, readiness, metrics); give each process on a machine its own PORT, or PORT=0 for any free one');
    return null;
  }
}

/** Whether the process on `PORT` answers /healthz as a Nudge of this installation does. */
async function sameInstallationListens(rt: Runtime): Promise<boolean> {
  const host = ['0.0.0.0', '::', ''].includes(rt.config.httpHost) ? '127.0.0.1' : rt.config.httpHost;
  try {
    const r = await fetch(`http://${host.includes(':') ? `[${host}]` : host}:${rt.config.port}/healthz`, { signal: AbortSignal.timeout(2_000) });
    return r.ok && r.headers.get(INSTALLATION_HEADER) === installationTag(rt);
  } catch {
    return false;
  }
}
