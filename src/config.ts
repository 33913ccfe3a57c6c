/**
 * The environment, read once, validated and frozen. A bad value stops the process with the
 * variable's name and what is wrong, before anything is sent.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import addressparser from 'nodemailer/lib/addressparser';
import { SCAN_CHAINS } from './scan-pages.ts';

export interface Config {
  /** PostgreSQL connection URL. Required. */
  databaseUrl: string;
  /** A read replica for the scan's reads; null: the scan reads the primary. Decisions always read the primary. */
  readDatabaseUrl: string | null;
  /** Redis URL. @defaultValue redis://127.0.0.1:6379 */
  redisUrl: string;
  /** REDIS_URL names a node of a Redis Cluster (NUDGE_REDIS_CLUSTER=true). @defaultValue false */
  redisCluster: boolean;
  /**
   * Send the hot statements as named prepared statements (NUDGE_PREPARED_STATEMENTS, default true);
   * false behind a pooler that keeps none across transactions (PgBouncer before 1.21, or without
   * `max_prepared_statements`, in transaction mode).
   */
  preparedStatements: boolean;
  /** nodemailer SMTP URL; null: emails are written as .eml files to `outboxDir` (not in production). */
  smtpUrl: string | null;
  /** Where .eml files go when `smtpUrl` is null. @defaultValue ./outbox */
  outboxDir: string;
  /** The From header. @defaultValue Nudge <nudge@localhost> */
  mailFrom: string;
  /** The templates folder. @defaultValue ./templates */
  templatesDir: string;
  /** The journey file. @defaultValue <templatesDir>/journeys.yaml */
  journeysFile: string;
  /** Prefix of every Redis key; lets installations and test runs share one Redis. @defaultValue nudge */
  queuePrefix: string;
  /** Base URL of the HTTP server as customers reach it (unsubscribe links). @defaultValue http://localhost:<port> */
  publicUrl: string;
  /** HMAC key for unsubscribe tokens, and the key sends kept in a job are sealed under. No default in production. */
  secret: string;
  /**
   * Other secrets still accepted (NUDGE_SECRET_PREVIOUS), newest first: those a rotation replaced
   * (or, in its first round, the one it brings), for the unsubscribe links of emails already sent
   * and for what a job kept under one of them; never used to sign or seal. @defaultValue []
   */
  previousSecrets: string[];
  /** HTTP port of the daemon (health, readiness, metrics, unsubscribe). @defaultValue 3000 */
  port: number;
  /** Address the daemon's HTTP server listens on. @defaultValue 0.0.0.0 */
  httpHost: string;
  /** Token for the queue dashboard at /board; null: no dashboard. */
  boardToken: string | null;
  production: boolean;
  /** Milliseconds before the first retry of a transient SMTP failure; doubles each time. @defaultValue 30000 */
  retryBaseMs: number;
  /** Attempts of a delivery job before it is dropped (the next scan enqueues it again). @defaultValue 8 */
  attempts: number;
  /** Concurrent delivery jobs per worker process. @defaultValue 8 */
  concurrency: number;
  /** Milliseconds between scans of the daemon. @defaultValue 60000 */
  scanEveryMs: number;
  /**
   * Keyset chains the scan reads at once (spans of closing days, stage-entered passes; `src/scan-pages.ts`).
   * 1 keeps the scan's order (closing date, then id), and with it the order jobs are queued in.
   * @defaultValue 2
   */
  scanChains: number;
  /**
   * Milliseconds after which a claimed send that never reached SMTP is released by the scan (its
   * worker died between the claim and the message). @defaultValue 120000
   */
  claimLeaseMs: number;
  /** Milliseconds a worker's lock on a job lasts; a dead worker's jobs run again after it. @defaultValue 30000 */
  jobLockMs: number;
  /**
   * Milliseconds a started SMTP send may take until the server asks for the message (connection,
   * envelope, 354 to DATA; the body's transfer is not counted). The rows it was decided on stay
   * locked meanwhile, so this bounds how long a CRM write to them can wait on a slow SMTP server;
   * after it the send is deferred and retried. @defaultValue 5000
   */
  handoverTimeoutMs: number;
  /**
   * Milliseconds the one-shot commands (`tick`, `work --drain`) wait for Redis to answer before
   * they fail with exit 3; the daemon waits for it as long as it takes. @defaultValue 20000
   */
  redisWaitMs: number;
  /** LOG_LEVEL when set (a pino level); each command has its own default. */
  logLevel: string | null;
  /** LOG_FORMAT when set. */
  logFormat: 'json' | 'pretty' | null;
}

export class ConfigError extends Error {
  /**
   * `problem` says what is wrong with `variable`; an error that gathers several (`problems`) has
   * the first one's variable and every message, a line each.
   */
  constructor(readonly variable: string, problem: string, readonly problems: readonly ConfigError[] = []) {
    super(problems.length ? problem : `${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

const DEV_SECRET = 'nudge-development-secret-not-for-production';
const PREFIX = /^[A-Za-z0-9._-]{1,64}$/;

export interface LoadOptions {
  /**
   * The command sends email or signs what customers get (start, tick, work, send-test). false
   * (migrate, seed, explain, forecast, simulate, templates check, preview): with NODE_ENV=production
   * SMTP_URL, an https PUBLIC_URL and NUDGE_SECRET are not asked for, so a migration job needs no
   * mail credentials; what is set is still checked. @defaultValue true
   */
  sends?: boolean;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, { sends = true }: LoadOptions = {}): Readonly<Config> {
  // Every variable is checked, and every problem said at once: not one per start.
  const problems: ConfigError[] = [];
  const v = <T>(read: () => T, fallback: T): T => {
    try {
      return read();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(error);
      return fallback;
    }
  };
  const production = env.NODE_ENV === 'production';
  const strict = production && sends;
  const port = v(() => integer(env, 'PORT', 3000, 0, 65535), 3000);
  const smtpUrl = v(() => optionalUrl(env, 'SMTP_URL', ['smtp:', 'smtps:'], namesHost), null);
  if (strict && !smtpUrl && !problems.some((p) => p.variable === 'SMTP_URL')) {
    problems.push(new ConfigError('SMTP_URL', 'is required when NODE_ENV=production (writing emails to ./outbox/ is for development)'));
  }
  const publicUrl = v(() => optionalUrl(env, 'PUBLIC_URL', ['http:', 'https:'], publicBase), null);
  if (strict && !(publicUrl && new URL(publicUrl).protocol === 'https:') && !problems.some((p) => p.variable === 'PUBLIC_URL')) {
    problems.push(new ConfigError('PUBLIC_URL', 'must be an https:// URL when NODE_ENV=production (unsubscribe links in every customer email point there)'));
  }
  const templatesDir = path.resolve(env.NUDGE_TEMPLATES_DIR?.trim() || 'templates');
  const queuePrefix = env.NUDGE_QUEUE_PREFIX?.trim() || 'nudge';
  if (!PREFIX.test(queuePrefix)) problems.push(new ConfigError('NUDGE_QUEUE_PREFIX', `must match ${PREFIX.source}, got ${JSON.stringify(queuePrefix)}`));
  const redisUrl = v(() => optionalUrl(env, 'REDIS_URL', ['redis:', 'rediss:'], redisDatabase), null) ?? 'redis://127.0.0.1:6379';
  const config: Config = {
    databaseUrl: v(() => requiredUrl(env, 'DATABASE_URL', ['postgres:', 'postgresql:']), ''),
    readDatabaseUrl: v(() => optionalUrl(env, 'DATABASE_READ_URL', ['postgres:', 'postgresql:']), null),
    redisUrl,
    redisCluster: v(() => redisCluster(env, redisUrl), false),
    preparedStatements: v(() => boolean(env, 'NUDGE_PREPARED_STATEMENTS', true), true),
    smtpUrl,
    outboxDir: path.resolve(env.NUDGE_OUTBOX_DIR?.trim() || 'outbox'),
    mailFrom: v(() => mailFrom(env), ''),
    templatesDir,
    journeysFile: path.resolve(env.NUDGE_JOURNEYS?.trim() || path.join(templatesDir, 'journeys.yaml')),
    queuePrefix,
    publicUrl: (publicUrl ?? `http://localhost:${port}`).replace(/\/+$/, ''),
    secret: v(() => secret(env, production, sends), ''),
    previousSecrets: v(() => previousSecrets(env, production), []),
    port,
    httpHost: env.NUDGE_HTTP_HOST?.trim() || '0.0.0.0',
    boardToken: v(() => boardToken(env), null),
    production,
    retryBaseMs: v(() => integer(env, 'NUDGE_RETRY_BASE_MS', 30_000, 1, 86_400_000), 30_000),
    attempts: v(() => integer(env, 'NUDGE_ATTEMPTS', 8, 1, 100), 8),
    concurrency: v(() => integer(env, 'NUDGE_CONCURRENCY', 8, 1, 256), 8),
    scanEveryMs: v(() => integer(env, 'NUDGE_SCAN_EVERY_MS', 60_000, 1_000, 86_400_000), 60_000),
    scanChains: v(() => integer(env, 'NUDGE_SCAN_CHAINS', SCAN_CHAINS, 1, 4), SCAN_CHAINS),
    claimLeaseMs: v(() => integer(env, 'NUDGE_CLAIM_LEASE_MS', 120_000, 1_000, 86_400_000), 120_000),
    jobLockMs: v(() => integer(env, 'NUDGE_JOB_LOCK_MS', 30_000, 1_000, 3_600_000), 30_000),
    handoverTimeoutMs: v(() => integer(env, 'NUDGE_HANDOVER_TIMEOUT_MS', 5_000, 100, 300_000), 5_000),
    redisWaitMs: v(() => integer(env, 'NUDGE_REDIS_WAIT_MS', 20_000, 100, 3_600_000), 20_000),
    logLevel: v(() => oneOf(env, 'LOG_LEVEL', LOG_LEVELS), null),
    logFormat: v(() => oneOf(env, 'LOG_FORMAT', ['json', 'pretty'] as const), null),
  };
  if (problems.length === 1) throw problems[0];
  if (problems.length > 1) throw new ConfigError(problems[0]!.variable, problems.map((p) => p.message).join('\n'), problems);
  return Object.freeze(config);
}

function requiredUrl(env: NodeJS.ProcessEnv, name: string, protocols: string[]): string {
  const url = optionalUrl(env, name, protocols);
  if (!url) throw new ConfigError(name, `is not set (expected a ${protocols.map((p) => `${p}//`).join(' or ')} URL)`);
  return url;
}

/** `check` says what else is wrong with a URL of the right scheme, or null. */
function optionalUrl(env: NodeJS.ProcessEnv, name: string, protocols: string[], check: (url: URL, raw: string) => string | null = () => null): string | null {
  const raw = env[name]?.trim();
  if (!raw) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, 'is not a valid URL');
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(name, `must start with ${protocols.map((p) => `${p}//`).join(' or ')}, got ${url.protocol}//`);
  }
  const wrong = check(url, raw);
  if (wrong) throw new ConfigError(name, wrong);
  return raw;
}

const namesHost = (url: URL) => (url.hostname ? null : 'names no host');

/** Redis takes a database number after the slash (`redis://host:6379/2`); anything else went unnoticed to database 0. */
const redisDatabase = (url: URL) => namesHost(url)
  ?? (/^\/?(\d+)?$/.test(url.pathname) ? null : `must end with a database number after the / (such as /0), got ${JSON.stringify(url.pathname)}`)
  ?? (/^\d*$/.test(url.searchParams.get('db') ?? '') ? null : `must give a database number as ?db=, got ${JSON.stringify(url.searchParams.get('db'))}`);

/**
 * The database number REDIS_URL names, as ioredis reads it: after the slash (`redis://host/2`),
 * else `?db=2`; 0 when it names none.
 */
export function redisDatabaseOf(url: string): number {
  const u = new URL(url);
  return Number(u.pathname.slice(1) || u.searchParams.get('db') || 0);
}

/** A Redis Cluster has database 0 alone: a REDIS_URL (`redisUrl`, checked) naming another would be ignored. */
function redisCluster(env: NodeJS.ProcessEnv, redisUrl: string): boolean {
  const cluster = boolean(env, 'NUDGE_REDIS_CLUSTER');
  const database = redisDatabaseOf(redisUrl);
  if (cluster && database !== 0) {
    throw new ConfigError('REDIS_URL', `names database ${database}, but a Redis Cluster (NUDGE_REDIS_CLUSTER=true) has database 0 alone`);
  }
  return cluster;
}

/** Unsubscribe links are built under it: a query or fragment would swallow their path (an empty `?` or `#` too). */
const publicBase = (url: URL, raw: string) => namesHost(url) ?? (/[?#@]/.test(raw.replace(/^[a-z]+:\/\//i, '')) || url.username || url.password
  ? 'must be the address customers reach Nudge at, without a query (?…), a fragment (#…) or a user and password'
  : null);

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) throw new ConfigError(name, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  return n;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, values: readonly T[]): T | null {
  const raw = env[name]?.trim();
  if (!raw) return null;
  if (!(values as readonly string[]).includes(raw)) throw new ConfigError(name, `must be one of ${values.join(', ')}, got ${JSON.stringify(raw)}`);
  return raw as T;
}

function boardToken(env: NodeJS.ProcessEnv): string | null {
  const raw = env.NUDGE_BOARD_TOKEN ?? '';
  if (!raw) return null;
  if (raw.length < 16) throw new ConfigError('NUDGE_BOARD_TOKEN', 'must be at least 16 characters');
  return raw;
}

function boolean(env: NodeJS.ProcessEnv, name: string, unset = false): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (!raw) return unset;
  if (raw === 'false' || raw === '0') return false;
  if (raw === 'true' || raw === '1') return true;
  throw new ConfigError(name, `must be true or false (or 1 or 0), got ${JSON.stringify(env[name])}`);
}

/**
 * One address, alone or as `Name <address>`: what an SMTP server takes as the sender. `x@`, two
 * addresses, or text nodemailer would have to guess at (`a b c @ d e` went out as `a b e <c@d>`)
 * stop the process here, not every send at the server.
 */
function mailFrom(env: NodeJS.ProcessEnv): string {
  const raw = env.MAIL_FROM?.trim() || 'Nudge <nudge@localhost>';
  const parsed = /[\r\n]/.test(raw) ? [] : addressparser(raw);
  const [only] = parsed;
  const address = (parsed.length === 1 && only && 'address' in only ? only.address : '') ?? '';
  if (!SENDER.test(address) || !(raw === address || raw.endsWith(`<${address}>`))) {
    throw new ConfigError('MAIL_FROM', `must be one address such as "Sales <sales@example.com>" or sales@example.com, got ${JSON.stringify(raw)}`);
  }
  return raw;
}

const SENDER = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+$/;

function secret(env: NodeJS.ProcessEnv, production: boolean, sends: boolean): string {
  const raw = env.NUDGE_SECRET ?? '';
  if (!raw) {
    // A production command that sends nothing gets a secret no one knows, never the public one:
    // a link it renders (the preview's) opens nothing.
    if (production && !sends) return randomBytes(32).toString('hex');
    if (production) throw new ConfigError('NUDGE_SECRET', 'is required when NODE_ENV=production (it signs unsubscribe links)');
    return DEV_SECRET;
  }
  if (raw.length < 16) throw new ConfigError('NUDGE_SECRET', 'must be at least 16 characters');
  if (production && raw === DEV_SECRET) throw new ConfigError('NUDGE_SECRET', 'is the development default; set a secret of your own');
  return raw;
}

/**
 * NUDGE_SECRET_PREVIOUS: other secrets still accepted, comma-separated, newest first. An
 * unsubscribe link must keep working after the secret changes (the emails that carry it are in
 * inboxes for good), and a send kept in a job under the old secret must still open.
 */
function previousSecrets(env: NodeJS.ProcessEnv, production: boolean): string[] {
  const raw = env.NUDGE_SECRET_PREVIOUS?.trim();
  if (!raw) return [];
  // Spaces around the commas are not part of a secret.
  const secrets = raw.split(',').map((s) => s.trim());
  secrets.forEach((s, i) => {
    const which = `secret ${i + 1} of ${secrets.length} (comma-separated)`;
    if (s === '') throw new ConfigError('NUDGE_SECRET_PREVIOUS', `${which} is empty: a comma too many?`);
    if (s.length < 16) throw new ConfigError('NUDGE_SECRET_PREVIOUS', `${which} is shorter than 16 characters`);
    // Public: anyone could sign a link that unsubscribes any contact.
    if (production && s === DEV_SECRET) throw new ConfigError('NUDGE_SECRET_PREVIOUS', `${which} is the development default, which anyone can sign with: leave it out`);
  });
  return secrets;
}

/** Whether the configuration uses development fallbacks worth a warning at start. */
export function configWarnings(config: Config): string[] {
  const out: string[] = [];
  if (!config.smtpUrl) out.push(`SMTP_URL is not set: emails are written as .eml files to ${config.outboxDir} (development only)`);
  if (config.secret === DEV_SECRET) out.push('NUDGE_SECRET is not set: unsubscribe links are signed with the development secret');
  return out;
}
