import pg from 'pg';
import { Kysely, type Compilable, type InferResult } from 'kysely';
import { postgresDialect } from './commit-hook.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

// A SQL `date` is a calendar day: keep it as the string PostgreSQL sends, never a local-midnight
// Date (which shifts the day when TZ is not UTC).
const DATE_OID = 1082;
const INT8_OID = 20;

/**
 * Ids as numbers. One beyond 2^53 stays the exact decimal string (SPEC: ids may be JSON strings)
 * rather than failing the whole query it is in.
 */
export function parseInt8(text: string): number {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : (text as unknown as number);
}

/**
 * A `bigint` id written as decimal digits (1 to 19, no sign), as `parseInt8` reads it from the
 * database; null when it is not one or is beyond bigint's maximum.
 */
export function bigintId(text: string): number | null {
  return /^\d{1,19}$/.test(text) && BigInt(text) <= MAX_BIGINT ? parseInt8(text) : null;
}

export const MAX_BIGINT = 9_223_372_036_854_775_807n;

const asText = (text: string) => text;

/**
 * Where the days and instants PostgreSQL holds but the engine cannot compute with go (`infinity`,
 * a day BC, the year 300000: a bad row must not fail every decision that reads it): far beyond
 * the reach of any step (3,650 days), with four-digit years. Past stays past, future stays future.
 */
const FAR_PAST_DAY = '1000-01-01';
const FAR_FUTURE_DAY = '9000-01-01';
const FAR_PAST = Date.UTC(1000, 0, 1);
const FAR_FUTURE = Date.UTC(9000, 0, 1);

/** A `date` as its `YYYY-MM-DD` (ISO DateStyle, set on every connection), bounded as above. */
export function boundedDay(text: string): string {
  if (text.length === 10 && text >= FAR_PAST_DAY && text < FAR_FUTURE_DAY) return text;
  if (text === 'infinity') return FAR_FUTURE_DAY;
  if (text === '-infinity' || text.endsWith(' BC')) return FAR_PAST_DAY;
  return Number.parseInt(text, 10) >= 9000 ? FAR_FUTURE_DAY : FAR_PAST_DAY;
}

/** An instant, as milliseconds or ±Infinity (pg's reading of `infinity`), bounded as above. */
export function boundedInstant(value: Date | number): Date {
  const t = typeof value === 'number' ? value : value.getTime();
  if (t >= FAR_PAST && t < FAR_FUTURE) return typeof value === 'number' ? new Date(t) : value;
  return new Date(t >= FAR_FUTURE ? FAR_FUTURE : FAR_PAST);
}

export const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === DATE_OID) return boundedDay;
    if (oid === TIMESTAMPTZ_OID) return parseInstant;
    if (oid === INT8_OID) return parseInt8;
    return pg.types.getTypeParser(oid, format);
  },
};

const TIMESTAMPTZ_OID = 1184;
const parseTimestamptz = pg.types.getTypeParser(TIMESTAMPTZ_OID) as (text: string) => Date | number;
const parseInstant = (text: string) => {
  const parsed = parseTimestamptz(text);
  // pg's parser gives an Invalid Date past the year 275759, which PostgreSQL still holds.
  if (typeof parsed !== 'number' && Number.isNaN(parsed.getTime())) return boundedInstant(/^\d{6,}-/.test(text) && !text.endsWith(' BC') ? Infinity : -Infinity);
  return boundedInstant(parsed);
};

/**
 * `typeParsers`, but a `timestamptz` stays PostgreSQL's text until `timestamp` reads it: for the
 * scan, whose pages hold three per row and which settles most rows without reading any (parsing
 * them was a fifth of what a scan allocated).
 */
export const textTimestampParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    return oid === TIMESTAMPTZ_OID ? asText : typeParsers.getTypeParser(oid, format);
  },
};

/** A `timestamptz` as a Date, whether its pool parsed it (`typeParsers`) or left it text (`textTimestampParsers`). */
export function timestamp(value: Date | string): Date {
  return typeof value === 'string' ? parseInstant(value) : value;
}

/**
 * Whether a failed statement may succeed if tried again in a while: the connection could not be
 * made or was lost (refused, cut, timed out; no answer from PostgreSQL at all), or the server was
 * shutting down, starting or out of connections, or the transaction lost a serialization race.
 * Not a statement PostgreSQL answered with any other error (a constraint, a bug): that fails the
 * same way every time.
 */
export function mayPassOnRetry(error: unknown): boolean {
  if (!(error instanceof pg.DatabaseError)) return true;
  const code = error.code ?? '';
  return code.startsWith('08') || code.startsWith('57P') || code === '53300' || code === '40001' || code === '40P01';
}

/**
 * No connection to PostgreSQL, or one it refused for now: what waiting can mend (a daemon waits
 * for it at start). Narrower than `mayPassOnRetry`: a statement's serialization race, or an error
 * that is not PostgreSQL's at all, is no reason to wait for the server.
 */
export function postgresUnreachable(error: unknown): boolean {
  if (error instanceof pg.DatabaseError) return RETRYABLE_SQLSTATES.has(error.code ?? '');
  const e = error as { code?: string; message?: string } | null;
  if (e?.code && NETWORK_ERRORS.has(e.code)) return true;
  // pg's own, without a code: a connection cut, not made within the pool's timeout, or cut
  // before a statement it was given could go out.
  return /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(e?.message ?? '');
}

/**
 * Connection exceptions but 08P01 (PgBouncer's code for its own fatal errors, a missing database
 * or an unsupported startup parameter among them, which no wait mends); the server shutting down,
 * crashed or starting; too many connections.
 */
const RETRYABLE_SQLSTATES = new Set(['08000', '08001', '08003', '08004', '08006', '57P01', '57P02', '57P03', '53300']);

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

/** The texts registered with `prepared`, by statement name. */
const PREPARED = new Map<string, string>();

/**
 * Registers a fixed statement text to be sent as a named prepared statement: each connection has
 * PostgreSQL parse and plan it once, then only binds and executes it. For the few statements run
 * at every send (a 30-line CTE spent 0.3 ms of PostgreSQL's CPU in planning alone, on the cores
 * the worker shares with it); each stays prepared on every pooled connection, so only constants,
 * never texts built from data. Returns the text, to be executed as usual (`CompiledQuery.raw`).
 */
export function prepared(text: string): string {
  if (!PREPARED.has(text)) PREPARED.set(text, `nudge_${PREPARED.size + 1}`);
  return text;
}

/**
 * Runs a built query as a named prepared statement (`prepared`): for the statements the scan runs
 * on every page, whose texts depend on their shape only (ids go in one array parameter).
 */
export async function executePrepared<Q extends Compilable<unknown>>(db: Db, query: Q): Promise<InferResult<Q>> {
  const compiled = query.compile();
  prepared(compiled.sql);
  return (await db.executeQuery(compiled)).rows as InferResult<Q>;
}

export interface DbOptions {
  /** Connections in the pool. @defaultValue 10 */
  max?: number;
  /** Label shown in pg_stat_activity. */
  applicationName?: string;
  /** Session settings, e.g. `-c max_parallel_workers_per_gather=0`. */
  options?: string;
  /** How the pool's connections parse values. @defaultValue typeParsers */
  types?: typeof typeParsers;
  /** Milliseconds a connection may sit idle before the pool closes it. @defaultValue 10000 (pg's) */
  idleTimeoutMs?: number;
  /**
   * Send the texts registered with `prepared` by their names (false: unnamed, planned each time,
   * for a pooler that keeps no prepared statement across transactions). @defaultValue true
   */
  preparedStatements?: boolean;
  /**
   * Called once when a pooler refuses `options` as a startup parameter (PgBouncer without
   * `options` in its `ignore_startup_parameters`): the pool then connects without them, and
   * the connection that was refused is made again.
   */
  onOptionsRefused?: (message: string) => void;
  /**
   * The environment variable that names this database (`DATABASE_URL`, `DATABASE_READ_URL`): put
   * on the errors its connections and statements fail with (`databaseOf`), so that a message can
   * say which one to check.
   */
  variable?: string;
}

/** The variable naming the database an error came from (`DbOptions.variable`), when it is known. */
export function databaseOf(error: unknown): string | undefined {
  const variable = (error as { nudgeDatabase?: unknown } | null)?.nudgeDatabase;
  return typeof variable === 'string' ? variable : undefined;
}

function withDatabase(error: unknown, variable: string | undefined): unknown {
  if (variable && typeof error === 'object' && error !== null) (error as { nudgeDatabase?: string }).nudgeDatabase = variable;
  return error;
}

/**
 * A pooler's refusal of the startup `options`: PgBouncer before 1.20 refuses the parameter
 * (`unsupported startup parameter: options`), later ones a setting inside it that is not in
 * `track_extra_parameters` (`unsupported startup parameter in options: max_parallel_workers_per_gather`).
 */
export function refusesStartupOptions(message: string): boolean {
  return /unsupported startup parameter(: options\b| in options:)/.test(message);
}

const BEGUN = Object.freeze({ command: 'BEGIN', rowCount: null, rows: [], fields: [] });

export function createPool(url: string, options: DbOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'nudge',
    ...(options.options ? { options: options.options } : {}),
    types: options.types ?? typeParsers,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: options.idleTimeoutMs ?? 10_000,
    pipeline: true,
  } as pg.PoolConfig);
  const named = options.preparedStatements ?? true;
  if (options.options) withoutRefusedOptions(pool, options.onOptionsRefused);
  if (options.variable) namedConnectErrors(pool, options.variable);
  // An idle client losing its connection (PostgreSQL restarted) must not crash the process.
  pool.on('error', () => {});
  // Nor one checked out for a transaction waiting between statements (a send waiting for the SMTP
  // handover): its next statement fails instead, and the pool drops the client when it returns.
  pool.on('connect', (client) => {
    client.on('error', () => {});
    // Dates and timestamps are read in PostgreSQL's ISO style, whatever the database's or role's
    // DateStyle: with `German`, a closing date came as 30.11.2026 and the forecast counted it in
    // no window. Queued before any statement of this connection; a pooler keeps it per client.
    client.query('SET DateStyle TO ISO, YMD', () => {});
    // kysely sends every statement as `query(text, parameters)`; a registered text goes by its name.
    // Its result comes through a callback, not pg's own promise: measured on the scan's pages, a
    // result pg resolved its promise with stayed reachable past two young-generation collections
    // (promoted, then left for a full collection: 143 MB for 186 pages of 1,000 rows, against
    // 5 MB through a callback), which doubled the scan's collection time and raised its peak.
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    const send = (text: string, values: unknown) => new Promise((resolve, reject) => {
      const name = named ? PREPARED.get(text) : undefined;
      query(name === undefined ? text : { name, text }, values, (error: Error | null, result: unknown) => (error ? reject(error) : resolve(result)));
    }).catch((error: Error) => {
      // As pg does: a stack that leads back to the statement, not to the socket.
      Error.captureStackTrace(error);
      throw withDatabase(error, options.variable);
    });
    // A transaction's BEGIN is written and not waited for: the connection pipelines, so the
    // transaction's first statements go right behind it, in the same packet (the socket is held
    // until this turn of the event loop ends, or a COMMIT or ROLLBACK comes), and its answer comes
    // back with theirs. One round trip per transaction fewer: a send is one transaction.
    const stream = (client as unknown as { connection: { stream: { cork(): void; uncork(): void } } }).connection.stream;
    let held = false;
    const flush = () => {
      if (!held) return;
      held = false;
      stream.uncork();
    };
    let begun: Promise<unknown> | null = null;
    (client as { query: unknown }).query = (config: unknown, ...rest: unknown[]) => {
      // Anything but (text) or (text, values) goes to pg as it came: its callback or cursor forms.
      if (typeof config !== 'string' || rest.length > 1 || typeof rest[0] === 'function') {
        flush();
        return query(config, ...rest);
      }
      if (config === 'begin' && !begun) {
        if (!held) {
          held = true;
          stream.cork();
          setImmediate(flush);
        }
        const b = send(config, rest[0]);
        b.catch(() => {});
        begun = b;
        return Promise.resolve(BEGUN);
      }
      const result = send(config, rest[0]);
      // The commit hook (commit-hook.ts) counts on a COMMIT being on the wire when this returns.
      if (config === 'commit' || config === 'rollback') flush();
      if (!begun) return result;
      const b = begun;
      begun = null;
      // Answers come in order, BEGIN's first: a BEGIN that failed fails the statement behind it.
      // The statement's own failure may come first (pg refuses a value it cannot serialise without
      // asking PostgreSQL): it is reported once BEGIN has answered, and never left unhandled.
      // (A BEGIN that PostgreSQL refused while the connection lives, which nothing in Nudge
      // provokes, would leave the statements behind it run outside a transaction.)
      result.catch(() => {});
      return b.then(() => result);
    };
  });
  return pool;
}

/** A connection `pool` cannot make fails with the variable that names the database (`databaseOf`). */
function namedConnectErrors(pool: pg.Pool, variable: string): void {
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
  (pool as { connect: unknown }).connect = (...args: unknown[]) => {
    // pg's callback form, which nothing in Nudge uses, goes as it came.
    if (args.length > 0) return connect(...args);
    return (connect() as Promise<pg.PoolClient>).catch((error: unknown) => { throw withDatabase(error, variable); });
  };
}

/**
 * Has `pool` connect without its startup `options` from the first time a pooler refuses them,
 * making the refused connection again at once: the settings they carried are lost (say so), the
 * connections are not.
 */
function withoutRefusedOptions(pool: pg.Pool, onRefused?: (message: string) => void): void {
  const settings = (pool as unknown as { options: { options?: string } }).options;
  const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
  (pool as { connect: unknown }).connect = async (...args: unknown[]) => {
    // pg's callback form, which nothing in Nudge uses, goes as it came.
    if (args.length > 0) return (connect as (...a: unknown[]) => unknown)(...args);
    try {
      return await connect();
    } catch (error) {
      if (!refusesStartupOptions((error as Error).message)) throw error;
      // Connections started at once were all refused: each is made again, the warning said once.
      if (settings.options !== undefined) {
        delete settings.options;
        onRefused?.((error as Error).message);
      }
      return connect();
    }
  };
}

export function createDb(url: string, options: DbOptions = {}): { db: Db; pool: pg.Pool } {
  const pool = createPool(url, options);
  return { db: new Kysely<Database>({ dialect: postgresDialect({ pool }) }), pool };
}
