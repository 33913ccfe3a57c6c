/**
 * The daemon's HTTP server (fastify): liveness, readiness (PostgreSQL and Redis really answer),
 * Prometheus metrics (Nudge's and BullMQ's own), the one-click unsubscribe of RFC 8058, and the
 * queue dashboard (Bull Board) behind NUDGE_BOARD_TOKEN. A GET on an unsubscribe link only shows a confirmation form: mail
 * scanners follow links, and a link alone must not unsubscribe anyone.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import { SCRAPE_WAIT_MS, type PrometheusMetrics } from '../src/metrics.ts';
import { within } from '../src/settle.ts';
import type { Runtime } from '../src/runtime.ts';
import { verifyUnsubscribeToken } from '../src/unsubscribe-token.ts';

export interface HttpServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Names the installation on /healthz without telling anything about it: a keyed hash of its
 * database, Redis and queue prefix. Processes of one installation share all four.
 */
export const INSTALLATION_HEADER = 'x-nudge-installation';

export function installationTag(rt: Runtime): string {
  const { databaseUrl, redisUrl, queuePrefix, secret } = rt.config;
  return createHmac('sha256', secret).update(`${databaseUrl}\n${redisUrl}\n${queuePrefix}`).digest('hex').slice(0, 16);
}

/** What the process says of itself in /readyz beside its dependencies. */
export interface ProcessState {
  /**
   * Why the process is not ready whatever its dependencies say: not yet scanning nor delivering
   * (waiting for PostgreSQL), or stopping; null while it runs.
   */
  phase: string | null;
  /** Whether the process runs the scan, which reads DATABASE_READ_URL when set: then reported too (not counted). */
  scans?: boolean;
}

export async function startHttpServer(rt: Runtime, port: number, state: ProcessState = { phase: null }): Promise<HttpServer> {
  const app = Fastify({ logger: false });
  // Before any route or plugin: each takes the handler in force when it is registered (set after
  // the board's, it left every route with Fastify's own, which showed clients PostgreSQL's text).
  // A client's mistake (a body that is not JSON, one too large) is answered as such, not as ours.
  app.setErrorHandler((err, _req, reply) => {
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    if (status >= 400 && status < 500) {
      rt.logger.debug({ status, err: (err as Error).message }, 'http request refused');
      return reply.code(status).type('text/plain').send(`${STATUS_CODES[status] ?? 'bad request'}\n`);
    }
    rt.logger.error({ err: (err as Error).message }, 'http handler failed');
    return reply.code(500).type('text/plain').send('internal error\n');
  });
  allowMethods(app);
  // One-click unsubscribe posts a form body; nothing here needs it parsed.
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  // The header tells a second process on this machine that the port is taken by Nudge of the
  // same installation (`startHttpUnlessPortTaken`), not by something else.
  app.get('/healthz', async (_req, reply) => reply.header(INSTALLATION_HEADER, installationTag(rt)).type('text/plain').send('ok\n'));
  app.get('/readyz', async (_req, reply) => {
    const checks = await readiness(rt, state.scans === true);
    if (state.phase) checks.process = state.phase;
    // The replica is said, not counted: HTTP (unsubscribe links) and the workers need only the
    // primary, and a process out of the load balancer for it would answer no link.
    const ok = Object.entries(checks).every(([k, v]) => v === 'ok' || k === 'postgresRead');
    return reply.code(ok ? 200 : 503).send({ ok, checks });
  });
  app.get('/metrics', async (_req, reply) => {
    if (!('registry' in rt.metrics)) return reply.code(404).send('metrics are off\n');
    const registry = (rt.metrics as PrometheusMetrics).registry;
    // Nudge's own metrics, then BullMQ's for the delivery queue (jobs by state, completed and
    // failed totals, from the workers' metrics in Redis); left out while Redis does not answer
    // within the scrape's wait, which /readyz reports.
    // Both read Redis, each waiting at most SCRAPE_WAIT_MS: at once, so a scrape while Redis is
    // down takes one wait, not two.
    const [own, bullmq] = await Promise.all([
      registry.metrics(),
      within(SCRAPE_WAIT_MS, 'Redis', rt.queue.exportPrometheusMetrics()).catch(() => ''),
    ]);
    return reply.type(registry.contentType).send(`${own}${bullmq ? `${namedOurs(bullmq)}\n` : ''}`);
  });
  app.get<{ Params: { token: string } }>('/unsubscribe/:token', (req, reply) => unsubscribePage(rt, req.params.token, reply));
  app.post<{ Params: { token: string } }>('/unsubscribe/:token', (req, reply) => unsubscribe(rt, req.params.token, reply));
  if (rt.config.boardToken) await registerBoard(app, rt, rt.config.boardToken);
  try {
    await app.listen({ port, host: rt.config.httpHost });
  } catch (error) {
    await app.close().catch(() => {});
    throw error;
  }
  const address = app.server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    async close() {
      // Requests in flight get a moment to end; a client that does not read its response (a big
      // dashboard script, say) would otherwise hold the stop until the grace period is over.
      const timer = setTimeout(() => app.server.closeAllConnections(), HTTP_CLOSE_MS);
      try {
        await app.close();
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * A known path asked with a method it does not take (`POST /healthz`, `DELETE /unsubscribe/…`)
 * is answered 405 with the methods it takes in `Allow`, not 404 as if it were not there.
 */
function allowMethods(app: FastifyInstance): void {
  const routes: { path: RegExp; methods: string[] }[] = [];
  app.addHook('onRoute', (route) => {
    const pattern = route.url.split('/').map((part) => (part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/');
    routes.push({ path: new RegExp(`^${pattern}$`), methods: [route.method].flat() });
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    const allowed = [...new Set(routes.filter((r) => r.path.test(path)).flatMap((r) => r.methods))];
    // A route that takes this method and found nothing (a file the board does not have) is a 404.
    if (allowed.length === 0 || allowed.includes(req.method)) return reply.code(404).type('text/plain').send('not found\n');
    return reply.code(405).header('allow', allowed.join(', ')).type('text/plain').send('method not allowed\n');
  });
}

/** How long the HTTP server's stop waits for responses still being sent before it cuts them. */
const HTTP_CLOSE_MS = 2_000;

/** Each dependency answers within two seconds, or the process is not ready (the replica: said, not counted). */
async function readiness(rt: Runtime, scans: boolean): Promise<Record<string, string>> {
  const check = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await within(READY_CHECK_MS, what, fn());
      return 'ok';
    } catch (err) {
      return `failing: ${(err as Error).message}`;
    }
  };
  // A connection known to be down (refused, reconnecting) is said so, with why, at once; one that
  // is up must answer a PING (a Redis that hangs keeps its connections open); on a Cluster, the
  // masters of the queues' slots must answer (`pingRedis`).
  const redisDown = rt.redisDownBecause;
  const [postgres, redis, replica] = await Promise.all([
    check('PostgreSQL (select 1)', () => sql`select 1`.execute(rt.db)),
    redisDown ? `failing: ${redisDown}` : check(rt.config.redisCluster ? 'Redis (the queues\' slots)' : 'Redis (PING)', () => rt.pingRedis()),
    // The scan reads there: a replica that cannot be read stops every scan.
    scans && rt.config.readDatabaseUrl ? check('DATABASE_READ_URL (select 1)', () => sql`select 1`.execute(rt.readProbe)) : null,
  ]);
  return replica === null ? { postgres, redis } : { postgres, redis, postgresRead: replica };
}

/** How long /readyz waits for each dependency to answer. */
const READY_CHECK_MS = 2_000;

function unsubscribePage(rt: Runtime, token: string, reply: FastifyReply): FastifyReply {
  if (verifyUnsubscribeToken(token, rt.config) === null) return invalidLink(reply);
  const form = '<form method="post"><button type="submit">Unsubscribe</button></form>';
  return html(reply, 200, page('Unsubscribe?', `Press the button to stop these emails.${form}`));
}

async function unsubscribe(rt: Runtime, token: string, reply: FastifyReply): Promise<FastifyReply> {
  const contactId = verifyUnsubscribeToken(token, rt.config);
  if (contactId === null) return invalidLink(reply);
  const [changed] = await rt.db.updateTable('contacts').set({ unsubscribed_at: new Date() })
    .where('id', '=', contactId).where('unsubscribed_at', 'is', null).execute();
  // The same page whether or not anything changed (unsubscribed already, no such contact): the
  // answer says nothing of who is on the list. The log says what happened.
  if (changed && changed.numUpdatedRows > 0n) rt.logger.info({ contactId }, 'contact unsubscribed');
  else rt.logger.debug({ contactId }, 'unsubscribe: nothing to change (unsubscribed already, or no such contact)');
  return html(reply, 200, page('You are unsubscribed', 'You will receive no more of these emails.'));
}

function invalidLink(reply: FastifyReply): FastifyReply {
  return html(reply, 400, page('This link is not valid', 'The unsubscribe link is damaged or was not issued by us.'));
}

/** Bull Board under /board: HTTP Basic (any user name, the token as password) or a Bearer token. */
async function registerBoard(app: FastifyInstance, rt: Runtime, token: string): Promise<void> {
  // Loaded only for a daemon that serves the board: 0.2 s of every other daemon's start.
  const [{ createBullBoard }, { BullMQAdapter }, { FastifyAdapter }] = await Promise.all([
    import('@bull-board/api'), import('@bull-board/api/bullMQAdapter'), import('@bull-board/fastify'),
  ]);
  const adapter = new FastifyAdapter();
  adapter.setBasePath('/board');
  createBullBoard({ queues: [new BullMQAdapter(rt.queue, { readOnlyMode: false })], serverAdapter: adapter });
  await app.register(async (board) => {
    board.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
      if (!authorized(req.headers.authorization, token)) {
        return reply.code(401).header('www-authenticate', 'Basic realm="nudge board"').type('text/plain').send('token required\n');
      }
    });
    await board.register(adapter.registerPlugin(), { prefix: '/board' });
  });
}

function authorized(header: string | undefined, token: string): boolean {
  const m = /^(Bearer|Basic) ([^\s]+)$/i.exec(header?.trim() ?? '');
  if (!m) return false;
  const given = m[1]!.toLowerCase() === 'bearer' ? m[2]! : Buffer.from(m[2]!, 'base64').toString('utf8').replace(/^[^:]*:/, '');
  // Digests compared, not the texts: equal lengths whatever was sent, so the time taken says
  // nothing of the token's length either.
  return timingSafeEqual(digest(given), digest(token));
}

const digest = (text: string) => createHash('sha256').update(text).digest();

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${title}</title></head><body style="font-family:sans-serif;max-width:32rem;margin:4rem auto"><h1>${title}</h1><p>${body}</p></body></html>\n`;
}

/** The unsubscribe pages: public, so framed by nobody (its one button must not be clicked unseen), and leaking no link. */
function html(reply: FastifyReply, status: number, body: string): FastifyReply {
  return reply.code(status).headers({
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  }).type('text/html; charset=utf-8').send(body);
}

/**
 * BullMQ's metrics under Nudge's prefix (`bullmq_job_count` → `nudge_bullmq_job_count`): every
 * metric a process exposes is named `nudge_*`, whatever else the Prometheus server scrapes.
 */
function namedOurs(text: string): string {
  return text.replace(/^(# (?:HELP|TYPE) )?bullmq_/gm, '$1nudge_bullmq_');
}
