/**
 * Builds what the commands and workers share from one Config: the database, Redis, the queues,
 * the mailer and the validated content. Each piece is opened only when asked for.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { ConfigError, redisDatabaseOf, type Config } from './config.ts';
import { loadContent, LiveContent, type Content } from './content.ts';
import { createDb, textTimestampParsers, type Db } from './db/database.ts';
import { listStages } from './db/opportunities.ts';
import { createMailer, type Mailer } from './email/mailer.ts';
import type { Logger } from './logger.ts';
import { repeatLimited, type RepeatLimitedLog } from './log-repeats.ts';
import {
  DELIVER_QUEUE, deliverJobOptions, deliverQueue, queuePrefix, redisConnection, SCAN_QUEUE, type DeliverJob, type RedisConnection,
} from './queue/queues.ts';
import { noMetrics, prometheusMetrics, type Metrics, type PrometheusMetrics } from './metrics.ts';
import type { ScanDeps } from './scan.ts';
import { PAGES_AHEAD, SCAN_CHAINS } from './scan-pages.ts';
import { NoAnswerError, settleAll, within } from './settle.ts';

/** How long `close` waits for Redis to answer QUIT before closing the connection outright. */
const QUIT_WAIT_MS = 5_000;
/**
 * How long `close` waits for each pool, queue or connection to close: past it, a warning, and the
 * next one. Longer than any of them takes when its server answers.
 */
const CLOSE_WAIT_MS = 15_000;

export class InvalidContentError extends Error {
  /** `journeyOnly`: the problems are the journey file's, met by a command that sends nothing. */
  constructor(readonly problems: string[], readonly journeyOnly = false) {
    super(`invalid journey${journeyOnly ? ' file' : ' or templates'}:\n${problems.join('\n')}`);
    this.name = 'InvalidContentError';
  }
}

/** What ioredis and BullMQ say when Redis cannot be reached, as opposed to what Redis answers. */
const REDIS_CONNECTION_ERROR = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|EPIPE|Connection is closed|Stream isn't writeable|connect ETIMEDOUT|Failed to refresh slots cache|None of startup nodes is available/;

/**
 * BullMQ's answer when a worker ends (or renews the lock of) a job the queue no longer holds as the
 * worker left it: Redis emptied or restarted while the job ran (every job in flight then fails this way), or its lock
 * lapsed and another worker took it. Nothing is lost: what the job did is in PostgreSQL, and a job
 * taken again (or enqueued again by a scan) finds its step decided.
 */
const JOB_LOST = /^(?:Missing key for job|Missing lock for job|Lock mismatch for job|could not renew lock for job|Job) (\S+?)(?:\. | is not in the|$)/;
const JOB_LOST_MSG = 'the queue no longer holds a job this worker ran (Redis emptied or restarted, or its lock lapsed and another worker took it); what the job did is recorded in PostgreSQL';

/** Jobs per `addBulk` (one pipeline, not a transaction). */
const ENQUEUE_CHUNK = 1000;

/**
 * How long the daemon's pools keep an idle connection (pg closes one after 10 s): through the
 * quiet minutes between due times, and from one scan to the next (a minute by default). Each new
 * connection costs a set-up and the parsing of every prepared statement, paid by the first sends
 * after a quiet spell (due-to-sent) and by every scan.
 */
const KEEP_IDLE_MS = 5 * 60_000;

export interface ScanReadOptions {
  /** Chains of pages read at once (NUDGE_SCAN_CHAINS). */
  chains?: number;
  /** NUDGE_PREPARED_STATEMENTS. @defaultValue true */
  preparedStatements?: boolean;
  /** Told when a pooler refuses the pool's startup options. */
  logger?: Logger;
  /** The variable naming the database, put on its errors (`DbOptions.variable`). */
  variable?: string;
}

/**
 * The scan's read pool: for each chain read at once, a page read and `PAGES_AHEAD` pages prepared
 * (src/scan-pages.ts), each with a connection of its own, and never fewer than four. Its
 * sessions turn parallel plans off: a keyset page (then of 500 rows) planned as a parallel Gather Merge
 * measured six times slower at 1,000,000 rows than the plain index scan. Timestamps come as text
 * (`textTimestampParsers`): triage settles most rows without reading one.
 */
export function createScanReadDb(url: string, { chains = SCAN_CHAINS, preparedStatements = true, logger, variable }: ScanReadOptions = {}): Db {
  return createDb(url, {
    max: Math.max(4, (1 + PAGES_AHEAD) * chains), applicationName: 'nudge-scan', options: '-c max_parallel_workers_per_gather=0', types: textTimestampParsers,
    idleTimeoutMs: KEEP_IDLE_MS, preparedStatements, variable,
    // A pooler that passes no startup options on (PgBouncer by default): the scan connects
    // without, and PostgreSQL may plan its pages in parallel, slower.
    onOptionsRefused: (err) => logger?.warn({ err }, 'the connection pooler refuses startup options: the scan reads with parallel plans as the server has them (slower pages); to keep them off, set max_parallel_workers_per_gather = 0 for Nudge\'s role (alter role … set …)'),
  }).db;
}


export class Runtime {
  private closers: (() => Promise<unknown>)[] = [];
  private _db: Db | null = null;
  private _redis: RedisConnection | null = null;
  private _queue: Queue<DeliverJob> | null = null;
  private _readDb: Db | null = null;
  private _readProbe: Db | null = null;
  /** The Redis connection's last error since it was last ready. */
  private lastRedisError: string | null = null;
  /** No-op until `enablePrometheus` (the daemon) turns it on. */
  metrics: Metrics = noMetrics;
  /**
   * How long Redis may take to answer the commands of `redisBound` before they fail: set by the
   * one-shot commands (`tick`, `work --drain`: NUDGE_REDIS_WAIT_MS), which must exit. Null for the
   * daemon: its commands wait for Redis to come back.
   */
  redisWaitMs: number | null = null;

  private readonly repeats: RepeatLimitedLog;
  /**
   * The rejections of what `redisBound` waits for, failed by `abandonRedis`. (Not a race with one
   * long-lived promise: each race would leave it a reaction holding its answer, for months.)
   */
  private readonly redisWaits = new Set<(error: Error) => void>();
  /** Set by `abandonRedis`: what `redisBound` is given after it fails at once. */
  private redisAbandoned: Error | null = null;
  private redisUrlChecked: Promise<void> | null = null;

  constructor(readonly config: Readonly<Config>, readonly logger: Logger) {
    this.repeats = repeatLimited(logger);
  }

  /**
   * The listener for the `error` events of the Redis connection, a Queue or a Worker (`source`).
   * While Redis is down all of them fail on each reconnect: a connection error is logged as a
   * warning once a minute at most, whichever emits it (src/log-repeats.ts), and the line that says
   * Redis is back counts those held back. Any other error (a lock that could not be renewed, Redis
   * out of memory or read-only) is an error, held back only when the same one repeats within the
   * minute. A Queue without a listener prints each in plain text, stack and all.
   */
  redisError(source: string): (err: Error) => void {
    return (err) => {
      const lost = JOB_LOST.exec(err.message);
      if (REDIS_CONNECTION_ERROR.test(err.message)) this.repeats('warn', 'Redis connection error; reconnecting', { source, err: err.message });
      // A job id in the message would make each one new to the limiter: it is kept out of `err`.
      else if (lost) this.repeats('warn', JOB_LOST_MSG, { source, err: err.message.replace(lost[1]!, '<job>'), jobId: lost[1] });
      else this.repeats('error', 'Redis or queue error', { source, err: err.message });
    };
  }

  /** The pool the scan reads its pages from (`createScanReadDb`): DATABASE_READ_URL (a replica) when set, else the primary. */
  get readDb(): Db {
    if (!this._readDb) {
      const db = createScanReadDb(this.config.readDatabaseUrl ?? this.config.databaseUrl, {
        chains: this.config.scanChains, preparedStatements: this.config.preparedStatements, logger: this.logger,
        variable: this.config.readDatabaseUrl ? 'DATABASE_READ_URL' : 'DATABASE_URL',
      });
      this._readDb = db;
      this.closers.push(() => db.destroy());
    }
    return this._readDb;
  }

  /**
   * One connection of its own to DATABASE_READ_URL, for /readyz: the scan's pool is all in use
   * while a long scan runs, and a probe waiting behind its pages would call a good replica slow.
   */
  get readProbe(): Db {
    if (!this._readProbe) {
      const { db } = createDb(this.config.readDatabaseUrl ?? this.config.databaseUrl, { max: 1, applicationName: 'nudge-ready' });
      this._readProbe = db;
      this.closers.push(() => db.destroy());
    }
    return this._readProbe;
  }

  enablePrometheus(): PrometheusMetrics {
    const metrics = prometheusMetrics(() => this.queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized'));
    this.metrics = metrics;
    return metrics;
  }

  scanDeps(journey: ScanDeps['journey']): ScanDeps {
    return {
      db: this.db, readDb: this.readDb, journey, enqueue: this.enqueuer(), logger: this.logger, metrics: this.metrics,
      claimLeaseMs: this.config.claimLeaseMs, chains: this.config.scanChains,
    };
  }

  get db(): Db {
    if (!this._db) {
      const { db } = createDb(this.config.databaseUrl, {
        max: this.config.concurrency + 4, idleTimeoutMs: KEEP_IDLE_MS, preparedStatements: this.config.preparedStatements, variable: 'DATABASE_URL',
      });
      this._db = db;
      this.closers.push(() => db.destroy());
    }
    return this._db;
  }

  get redis(): RedisConnection {
    if (!this._redis) {
      const redis = redisConnection(this.config.redisUrl, this.config.redisCluster);
      let failing = false;
      const onError = this.redisError('connection');
      redis.on('error', (err) => {
        failing = true;
        this.lastRedisError = err.message;
        onError(err);
      });
      redis.on('ready', () => {
        if (failing) this.logger.info({ heldBack: this.repeats.reset() }, 'Redis connection back');
        failing = false;
        this.lastRedisError = null;
      });
      this._redis = redis;
      // QUIT is a courtesy: a connection that does not answer it (a Redis gone, a Cluster node
      // reconnecting) is closed outright, so that the process can exit.
      this.closers.push(async () => {
        if (this.redisAbandoned) return;
        if (redis.status !== 'ready') return redis.disconnect();
        await within(QUIT_WAIT_MS, 'Redis QUIT', redis.quit()).catch(() => redis.disconnect());
      });
    }
    return this._redis;
  }

  /**
   * Gives Redis up, for a process that stops without it: what `redisBound` waits for fails at once
   * (a scan's enqueue, a job's writes to its data), and `close` leaves the connection as it is, for
   * the exit to end. Not closed: ioredis 5 leaves the commands queued on a connection that is
   * reconnecting waiting for ever anyway (redis/ioredis#2169), and where it fails them (a Redis
   * that hangs, its connection open) BullMQ's closing worker tries each again at once, for ever,
   * in a loop that never lets the event loop run.
   */
  abandonRedis(): void {
    this.redisAbandoned = new Error('Redis was given up: the process stops without it');
    for (const fail of this.redisWaits) fail(this.redisAbandoned);
    this.redisWaits.clear();
  }

  /** Whether `abandonRedis` was called: the workers then start no job or scan they are handed. */
  get redisGivenUp(): boolean {
    return this.redisAbandoned !== null;
  }

  /** Whether the Redis connection has been opened (it is, on first use). */
  get redisOpened(): boolean {
    return this._redis !== null;
  }

  /** Why the Redis connection is down, as /readyz says it: its state and its last error. Null while it is ready (or not opened). */
  get redisDownBecause(): string | null {
    if (!this.redisDown) return null;
    return `connection ${this._redis!.status}${this.lastRedisError ? `: ${this.lastRedisError}` : ''}`;
  }

  /**
   * Whether Redis answers where the queues live: a PING, or on a Redis Cluster a keyed read in
   * each queue's slot (its keys are hash-tagged to one slot), which goes to the master serving it.
   * A Cluster's PING goes to a node picked at random, and its connection stays ready while one
   * master is gone or hangs: a PING could miss the one that matters, or blame one that does not.
   */
  async pingRedis(): Promise<void> {
    const redis = this.redis;
    if (!this.config.redisCluster) {
      const answer = await redis.ping();
      if (answer !== 'PONG') throw new Error(`Redis answered a PING with ${answer}`);
      return;
    }
    await Promise.all([DELIVER_QUEUE, SCAN_QUEUE].map((q) => redis.exists(`${queuePrefix(this.config.queuePrefix, q)}:probe`)));
  }

  /**
   * Whether REDIS_URL names what it should, asked once, when Redis first answers (the daemon waits
   * for that as for any command):
   * - not a Cluster's node unless NUDGE_REDIS_CLUSTER says so (`INFO cluster`);
   * - a database the server has. One without it (`/99` on one with 16) refuses the SELECT ioredis
   *   sends on connecting, and ioredis carries on in database 0, where the queues would live beside
   *   another installation's. Selected again, so that a refusal stops the command: any Redis
   *   version answers SELECT, and a user the server does not allow it could not have used it anyway.
   */
  checkRedisUrl(): Promise<void> {
    this.redisUrlChecked ??= (async () => {
      if (this.config.redisCluster) return;
      // A Cluster's node taken for a plain Redis: each command redirected (MOVED) but those whose
      // keys live on that node, so it would half work. A server that will not say (INFO refused
      // by an ACL) is taken at its word.
      const info = await this.redisBound('Redis (INFO cluster)', (this.redis as Redis).info('cluster')).catch((error: Error) => {
        if (error.name !== 'ReplyError') throw error;
        return '';
      });
      if (/^cluster_enabled:1\b/m.test(info)) {
        throw new ConfigError('NUDGE_REDIS_CLUSTER', 'is not set, but REDIS_URL names a node of a Redis Cluster: set NUDGE_REDIS_CLUSTER=true');
      }
      const wanted = redisDatabaseOf(this.config.redisUrl);
      if (wanted === 0) return;
      // Not on a Cluster (returned above): a plain connection, which SELECT is one of.
      await this.redisBound('Redis (SELECT)', (this.redis as Redis).select(wanted)).catch((error: Error) => {
        // A reply of the server's (not a connection lost): REDIS_URL names what it will not give.
        if (error.name !== 'ReplyError') throw error;
        throw new ConfigError('REDIS_URL', `names database ${wanted}, which this Redis refused (${error.message}; see its \`databases\` setting): the queues would have gone to database 0`);
      });
    })();
    return this.redisUrlChecked;
  }

  /** Whether the Redis connection, once opened, is not ready (down, reconnecting). */
  get redisDown(): boolean {
    return this._redis !== null && this._redis.status !== 'ready';
  }

  /**
   * `promise`, a Redis command's answer: within `redisWaitMs` when it is set (and `timed` is not
   * false), or a rejection naming `what`; a rejection too once `abandonRedis` is called.
   */
  redisBound<T>(what: string, promise: Promise<T>, options: { timed?: boolean } = {}): Promise<T> {
    if (this.redisAbandoned) {
      promise.catch(() => {});
      return Promise.reject(this.redisAbandoned);
    }
    const answer = new Promise<T>((resolve, reject) => {
      this.redisWaits.add(reject);
      promise.then(resolve, reject).finally(() => this.redisWaits.delete(reject));
    });
    return this.redisWaitMs === null || options.timed === false ? answer : within(this.redisWaitMs, what, answer);
  }

  get queue(): Queue<DeliverJob> {
    if (!this._queue) {
      const queue = deliverQueue(this.redis, this.config.queuePrefix);
      queue.on('error', this.redisError('delivery queue'));
      this._queue = queue;
      // Closing waits for a connection that never came up: not then (the connection is dropped).
      this.closers.unshift(async () => {
        if (this._redis?.status === 'ready' && !this.redisAbandoned) await queue.close();
      });
    }
    return this._queue;
  }

  mailer(): Mailer {
    const mailer = createMailer(this.config);
    this.closers.unshift(() => mailer.close());
    return mailer;
  }

  /** The journey and templates, validated against the stages in the database; throws when invalid. */
  async content(): Promise<Content> {
    const { content, problems } = loadContent(this.config, await listStages(this.db));
    if (!content) throw new InvalidContentError(problems);
    return content;
  }

  async liveContent(): Promise<LiveContent> {
    return new LiveContent(await this.content(), this.config, () => listStages(this.db), this.logger);
  }

  enqueuer(): ScanDeps['enqueue'] {
    const options = deliverJobOptions({ prefix: this.config.queuePrefix, attempts: this.config.attempts, retryBaseMs: this.config.retryBaseMs });
    return async (jobs) => {
      const chunks: (typeof jobs)[] = [];
      for (let i = 0; i < jobs.length; i += ENQUEUE_CHUNK) chunks.push(jobs.slice(i, i + ENQUEUE_CHUNK));
      // Two chunks in flight: one is built and sent while Redis runs the other's scripts.
      let next = 0;
      let failed = false;
      let added = 0;
      const lane = async () => {
        while (!failed && next < chunks.length) {
          const chunk = chunks[next++]!;
          try {
            // BullMQ adds nothing for an id already in the queue (waiting, delayed for a retry, or
            // active) and does not say so: those are counted in one command (the keys share a
            // slot), answered before the adds are sent. (Sent just before them on the same
            // connection, without waiting, the count came out a whole chunk low in one run in five
            // of its test on a busy machine: the adds had run first.) The count is a report, not a
            // guard, and may come out low: a job that finishes in between is added again uncounted
            // (its worker then finds it decided). A failed count does not fail the tick: the chunk
            // then counts whole. A count Redis did not answer does: the adds would wait as long.
            const queued = await this.redisBound('Redis (counting queued jobs)', this.redis.exists(...chunk.map((j) => this.queue.toKey(j.id))))
              .catch((error: Error) => {
                if (error instanceof NoAnswerError) throw error;
                this.logger.warn({ err: error.message }, 'could not count the jobs already queued; counting the chunk as added');
                return 0;
              });
            await this.redisBound('Redis (adding jobs)',
              this.queue.addBulk(chunk.map((j) => ({ name: 'deliver', data: j.data, opts: { ...options, jobId: j.id } }))));
            added += chunk.length - queued;
          } catch (error) {
            failed = true;
            throw error;
          }
        }
      };
      // Both lanes settle before this returns: nothing is added after a failure is reported.
      await settleAll([lane(), lane()]);
      return added;
    };
  }

  async close(): Promise<void> {
    for (const close of this.closers.splice(0)) {
      await within(CLOSE_WAIT_MS, 'closing a connection', close()).catch((err: Error) => this.logger.warn({ err: err.message }, 'error while closing'));
    }
  }
}
