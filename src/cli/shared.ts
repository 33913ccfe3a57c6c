/** What every command does the same way: configuration, the runtime, exit codes. */
import { fixedClock, systemClock, type Clock } from '../clock.ts';
import { ConfigError, loadConfig, type LoadOptions } from '../config.ts';
import { createLogger } from '../logger.ts';
import { bigintId, databaseOf, MAX_BIGINT } from '../db/database.ts';
import { loadJourneyAlone } from '../content.ts';
import { listStages } from '../db/opportunities.ts';
import type { Journey } from '../journey/types.ts';
import { InvalidContentError, Runtime } from '../runtime.ts';

/** Exit codes: 0 done; 1 invalid content or input; 2 configuration; 3 PostgreSQL or Redis failed. */
export const EXIT = { ok: 0, invalid: 1, config: 2, infrastructure: 3 } as const;

export class UsageError extends Error {
  override name = 'UsageError';
}

export function clockFrom(now: string | undefined): Clock {
  if (now === undefined) return systemClock;
  try {
    return fixedClock(now);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Runs `fn` with a Runtime, closes it, and turns known failures into a message and an exit code. */
export async function withRuntime(
  fn: (rt: Runtime) => Promise<number | void>, options: { logLevel?: string; oneShot?: boolean } & LoadOptions = {},
): Promise<void> {
  let rt: Runtime | null = null;
  let code: number = EXIT.ok;
  try {
    const config = loadConfig(process.env, { sends: options.sends });
    rt = new Runtime(config, createLogger({ level: config.logLevel ?? options.logLevel ?? 'warn', format: config.logFormat }));
    // A command that must end does not wait for ever on a Redis that does not answer.
    if (options.oneShot) rt.redisWaitMs = config.redisWaitMs;
    code = (await fn(rt)) ?? EXIT.ok;
  } catch (error) {
    code = report(error);
  } finally {
    await rt?.close().catch(() => {});
  }
  process.exitCode = code;
}

/**
 * The journey, validated against the stages in the database, for a command that renders nothing
 * (explain, forecast, simulate): an invalid journey file stops it; templates that are not valid
 * are said on stderr, and it goes on: what it shows stands, but such a step would fail when sent.
 */
export async function journeyFor(rt: Runtime, command: string): Promise<Journey> {
  const { journey, journeyProblems, templateProblems } = loadJourneyAlone(rt.config, await listStages(rt.db));
  if (!journey) throw new InvalidContentError(journeyProblems, true);
  if (templateProblems.length > 0) {
    const n = templateProblems.length;
    console.error(`nudge: warning: ${n} problem${n === 1 ? '' : 's'} in the templates (see \`nudge templates check\`); ${command} goes on, but start and tick refuse these files until they are fixed, and a running daemon keeps its last good version:`);
    for (const p of templateProblems) console.error(p);
  }
  return journey;
}

export function report(error: unknown): number {
  if (error instanceof ConfigError) {
    if (error.problems.length === 0) console.error(`nudge: configuration error: ${error.message}`);
    else console.error(`nudge: ${error.problems.length} configuration errors:\n${error.problems.map((p) => `  ${p.message}`).join('\n')}`);
    return EXIT.config;
  }
  if (error instanceof InvalidContentError) {
    const n = `${error.problems.length} problem${error.problems.length === 1 ? '' : 's'}`;
    console.error(error.journeyOnly ? `nudge: ${n} in the journey file:` : `nudge: ${n} in the journey file or templates; nothing was sent:`);
    for (const p of error.problems) console.error(p);
    return EXIT.invalid;
  }
  if (error instanceof UsageError) {
    console.error(`nudge: ${error.message}`);
    return EXIT.invalid;
  }
  const e = error as { code?: string; message?: string };
  console.error(`nudge: ${infrastructureHint(e)}${e.message ?? String(error)}`);
  return EXIT.infrastructure;
}

/** What a failure to reach PostgreSQL or Redis means, and which variables to check, before its own message. */
function infrastructureHint(e: { code?: string; message?: string }): string {
  const message = e.message ?? '';
  // The database's errors name its variable (`databaseOf`); an error that does not (a Redis one,
  // or one from a pool made without) names every variable it may come from.
  const database = databaseOf(e);
  const databases = database ?? (process.env.DATABASE_READ_URL?.trim() ? 'DATABASE_URL or DATABASE_READ_URL' : 'DATABASE_URL');
  if (e.code === 'ECONNREFUSED' || /ECONNREFUSED/.test(message)) {
    return database ? `cannot connect to PostgreSQL (is it running? check ${database}): ` : `cannot connect (is PostgreSQL/Redis running? check ${databases} and REDIS_URL): `;
  }
  // Another program, another installation's Nudge, or (a process that only serves HTTP) one of this installation.
  if (e.code === 'EADDRINUSE') return 'the HTTP port is taken by another process (give this one another PORT, or PORT=0 for any free one): ';
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN' || /getaddrinfo/.test(message)) {
    return `cannot resolve a host name (check ${database ?? `${databases} and REDIS_URL`}): `;
  }
  if (/^Redis .*did not answer/.test(message)) {
    // A standalone Redis answers a Cluster's client nothing it can use: it waits as for one down.
    const cluster = /^(true|1)$/i.test(process.env.NUDGE_REDIS_CLUSTER?.trim() ?? '') ? '; NUDGE_REDIS_CLUSTER=true: is REDIS_URL a node of a Redis Cluster?' : '';
    return `cannot reach Redis (is it running? check REDIS_URL${cluster}, or raise NUDGE_REDIS_WAIT_MS): `;
  }
  if (e.code === '42P01') return `the schema is missing (run \`nudge migrate\`; check ${databases}): `;
  if (e.code === '3D000') {
    return databases === 'DATABASE_URL'
      ? 'PostgreSQL has no such database (`nudge migrate` creates it; check DATABASE_URL): '
      : `PostgreSQL has no such database (check ${databases}; \`nudge migrate\` creates the one at DATABASE_URL): `;
  }
  // 28000 is also pg_hba.conf refusing the connection, e.g. one without TLS (`?sslmode=require`).
  if (e.code === '28000' || e.code === '28P01') return `PostgreSQL refused the connection (check the user, the password and sslmode in ${databases}): `;
  return '';
}

/**
 * `text` as a whole number from `min` to `max`, in at most as many digits as `max` has; else a
 * UsageError naming `what` (an option such as `--days`).
 */
export function wholeNumber(text: string, what: string, min: number, max: number): number {
  const n = Number(text);
  if (!new RegExp(`^\\d{1,${String(max).length}}$`).test(text) || n < min || n > max) {
    throw new UsageError(`${what} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return n;
}

export function parseId(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} must be a whole number, got ${JSON.stringify(text)}`);
  // Ids are bigint in PostgreSQL: one beyond 2^53 stays its exact decimal text, as ids read from
  // the database do (`parseInt8`), so that the id a header or simulate named can be explained.
  const id = bigintId(text.replace(/^0+(?=\d)/, ''));
  if (id === null) throw new UsageError(`${what} must be at most ${MAX_BIGINT}, got ${JSON.stringify(text)}`);
  return id;
}
