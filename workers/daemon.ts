/**
 * `nudge start`: scheduler, delivery workers and the HTTP server in one process, each optional
 * (`nudge work` without `--drain` is workers alone). SIGTERM/SIGINT stop taking jobs, let active
 * ones finish within the grace period, then close.
 */
import { systemClock, type Clock } from '../src/clock.ts';
import { configWarnings } from '../src/config.ts';
import type { LiveContent } from '../src/content.ts';
import { postgresUnreachable } from '../src/db/database.ts';
import { takeOverSignals } from '../src/early-signals.ts';
import { consoleToLog } from '../src/log-repeats.ts';
import type { Runtime } from '../src/runtime.ts';
import { startDeliverWorker } from './deliver-worker.ts';
import { installationTag, INSTALLATION_HEADER, startHttpServer, type HttpServer, type ProcessState } from './http-server.ts';
import { startScheduler } from './scheduler.ts';
import { watchRedis } from './redis-watch.ts';
import { watchSecret } from './secret-check.ts';
import { superviseWorker } from './stall-watch.ts';

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
  // What libraries print (BullMQ's warnings) goes to the log: JSON lines where those are expected.
  const restoreConsole = consoleToLog(rt.logger);
  try {
    await serve(rt, options);
  } finally {
    restoreConsole();
  }
}

async function serve(rt: Runtime, options: DaemonOptions): Promise<void> {
  for (const w of configWarnings(rt.config)) rt.logger.warn(w);
  rt.enablePrometheus();
  const stopped = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
    takeOverSignals();
    whenOrphanedByNpm(() => resolve('npm, which started this process, is gone'));
  });
  // A process that only serves HTTP has nothing to do without it: there, a taken port is fatal.
  // It comes first, so that /healthz answers and /readyz says why not while PostgreSQL is awaited.
  const state: ProcessState = { phase: 'starting: waiting for PostgreSQL', scans: options.scheduler };
  const http: HttpServer | null = options.http === false ? null
    : options.scheduler || options.worker ? await startHttpUnlessPortTaken(rt, state) : await startHttpServer(rt, rt.config.port, state);
  let content: LiveContent | null;
  try {
    content = await whenPostgresAnswers(rt, () => rt.liveContent(), stopped, http?.port ?? null);
  } catch (error) {
    // Nothing to wait for (a missing database, bad content): no probe answers for a process that is ending.
    await http?.close();
    throw error;
  }
  if (!content) {
    rt.logger.info({ signal: await stopped }, 'stopped while waiting for PostgreSQL');
    await http?.close();
    return;
  }
  // The scheduler's first command waits for Redis; a stop meanwhile does not.
  state.phase = 'starting: waiting for Redis';
  const starting = rt.checkRedisUrl().then(() => (options.scheduler ? startScheduler(rt, content, systemClock) : null));
  starting.catch(() => {}); // left behind by a stop: fails when the connection is closed
  let scheduler: Awaited<typeof starting> | typeof STOPPED;
  try {
    scheduler = await Promise.race([starting, stopped.then((): typeof STOPPED => STOPPED)]);
  } catch (error) {
    // REDIS_URL names what it should not (a database this Redis does not have, a Cluster node): nothing started, nothing to wait for.
    await http?.close();
    throw error;
  }
  if (scheduler === STOPPED) {
    // Redis may answer in the meantime: a scheduler started after all is closed at once, its timer
    // with it, so that it neither scans nor holds the exit.
    void starting.then((late) => late?.close(), () => {});
    rt.logger.info({ signal: await stopped }, 'stopped while waiting for Redis');
    await http?.close();
    await rt.close();
    return;
  }
  const clock = options.clock ?? systemClock;
  const running = { count: 0, started: 0 };
  const workerOptions = { clock, content, mailer: rt.mailer(), running };
  const worker = options.worker ? superviseWorker(rt, {
    what: 'delivery', start: () => startDeliverWorker(rt, workerOptions), started: () => running.started, idle: () => running.count === 0,
    waiting: async () => (await rt.queue.getJobCounts('wait')).wait ?? 0,
  }) : null;
  const secretWatch = watchSecret(rt);
  // A Redis that hangs keeps its connections open: nothing else would say so.
  const redisWatch = watchRedis(rt, { everyMs: WATCH_EVERY_MS, pingWaitMs: WATCH_PING_WAIT_MS, log: true });
  state.phase = null;
  rt.logger.info({ port: http?.port ?? null, scheduler: options.scheduler, worker: options.worker }, 'nudge started');

  rt.logger.info({ signal: await stopped }, 'stopping: finishing active jobs');
  // A load balancer stops sending unsubscribe requests here; those that come still get answers
  // until the server closes, after the jobs.
  state.phase = 'stopping: finishing active jobs';

  secretWatch.stop();
  const grace = options.graceMs ?? 20_000;
  const timer = setTimeout(() => {
    rt.logger.error({ graceMs: grace }, 'grace period over; exiting with jobs still active (another worker takes them once their lock lapses; a recorded send is not sent again)');
    process.exit(1);
  }, grace);
  timer.unref();
  // BullMQ's close waits for Redis (to finish jobs, to say QUIT), and so do a scan's enqueue and a
  // job's last writes: a process stopped while Redis is gone would wait out the grace period and
  // exit 1. It stops without Redis instead: at once when nothing runs, after REDIS_GONE_MS when
  // something does (Redis back by then, as after a restart, the close is a clean one). What Redis
  // still holds as active goes back to the queue when Redis is back (a job whose send is
  // recorded is then found decided).
  const idle = () => running.count === 0 && !scheduler?.scanning;
  redisWatch.stop();
  const redisGone = watchRedis(rt, { everyMs: STOP_CHECK_MS, pingWaitMs: STOP_PING_WAIT_MS });
  const gone = () => {
    const ms = redisGone.goneFor();
    return ms !== null && (idle() || ms >= REDIS_GONE_MS);
  };
  const closed = await Promise.race([
    Promise.all([worker?.close(), scheduler?.close()]).then(() => true),
    until(gone, STOP_CHECK_MS).then(() => false),
  ]);
  redisGone.stop();
  if (!closed) {
    rt.logger.warn({ jobsRunning: running.count, scanning: scheduler?.scanning ?? false, redis: redisGone.why },
      'Redis does not answer: stopping without waiting for it');
    // No job or scan handed over from now on starts (one fetched as Redis comes back must not start
    // a send while the process closes); what waits for Redis fails at once (a scan's enqueue, a
    // job's last writes); sends under way finish and are recorded (PostgreSQL and SMTP do not
    // need Redis), within the grace period. The Redis connection is left to the exit.
    rt.abandonRedis();
    await until(idle, STOP_CHECK_MS);
  }
  await http?.close();
  await rt.close();
  clearTimeout(timer);
  rt.logger.info('stopped');
}

/**
 * `load` once PostgreSQL answers: a daemon started before its database (a machine booting, a
 * compose stack starting, a database restarting at the same moment) waits for it, trying again
 * after 1 s, doubling to 30 s, with a warning each time, rather than exit and rely on whatever
 * restarts it (Kubernetes backs off up to 5 minutes). Only failures that pass with time are
 * waited on: no connection (a host name not found included), the server starting or shutting
 * down, out of connections. A wrong password, a missing database or schema stop the process at
 * once; bad content too, once PostgreSQL answers (the journey's stages are read from it). Null
 * when the process is told to stop first.
 */
async function whenPostgresAnswers<T>(rt: Runtime, load: () => Promise<T>, stopped: Promise<unknown>, port: number | null): Promise<T | null> {
  let stop = false;
  void stopped.then(() => { stop = true; });
  for (let attempt = 1, waitMs = START_RETRY_MS; ; attempt += 1, waitMs = Math.min(waitMs * 2, START_RETRY_MAX_MS)) {
    try {
      // A stop does not wait for a try in flight (a connection attempt may take 10 s); that try
      // may still fail after, unheard.
      const trying = load().then((value) => ({ value }));
      trying.catch(() => {});
      const loaded = await Promise.race([trying, stopped.then(() => null)]);
      return loaded ? loaded.value : null;
    } catch (error) {
      if (!postgresUnreachable(error)) throw error;
      const e = error as { code?: string; message?: string };
      rt.logger.warn({ attempt, retryInMs: waitMs, port, code: e.code ?? null, err: e.message ?? String(error) },
        'PostgreSQL does not answer; waiting for it before starting (/readyz says not ready)');
    }
    if (stop) return null;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((resolve) => { timer = setTimeout(resolve, waitMs); }), stopped]);
    clearTimeout(timer);
    if (stop) return null;
  }
}

/** Resolves once `condition` holds, checked every `everyMs`. */
async function until(condition: () => boolean, everyMs: number): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, everyMs).unref());
}

const STOP_CHECK_MS = 200;

/** How long Redis may stay gone under a stopping process that still runs something before it stops without Redis. */
const REDIS_GONE_MS = 3_000;

/** While stopping, a PING not answered within this counts Redis as gone. */
const STOP_PING_WAIT_MS = 2_000;

/** While running, a PING every this, and a warning when one is not answered within WATCH_PING_WAIT_MS. */
const WATCH_EVERY_MS = 5_000;
const WATCH_PING_WAIT_MS = 5_000;

const STOPPED = Symbol('stopped');

const START_RETRY_MS = 1_000;
const START_RETRY_MAX_MS = 30_000;

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
async function startHttpUnlessPortTaken(rt: Runtime, state: ProcessState): Promise<HttpServer | null> {
  try {
    return await startHttpServer(rt, rt.config.port, state);
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
