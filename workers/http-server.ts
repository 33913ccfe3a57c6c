/**
 * The daemon's HTTP server: liveness, readiness (PostgreSQL and Redis really answer) and the
 * one-click unsubscribe of RFC 8058. A GET only shows a confirmation form: mail scanners follow
 * links, and a link alone must not unsubscribe anyone.
 */
import http from 'node:http';
import { sql } from 'kysely';
import type { PrometheusMetrics } from '../src/metrics.ts';
import type { Runtime } from '../src/runtime.ts';
import { verifyUnsubscribeToken } from '../src/unsubscribe-token.ts';

export interface HttpServer {
  port: number;
  close(): Promise<void>;
}

export async function startHttpServer(rt: Runtime, port: number): Promise<HttpServer> {
  const server = http.createServer((req, res) => {
    handle(rt, req, res).catch((err) => {
      rt.logger.error({ err: (err as Error).message }, 'http handler failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

async function handle(rt: Runtime, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
  if (url.pathname === '/metrics' && 'registry' in rt.metrics) {
    const registry = (rt.metrics as PrometheusMetrics).registry;
    return send(res, 200, registry.contentType, await registry.metrics());
  }
  if (url.pathname === '/readyz') {
    const checks = await readiness(rt);
    const ok = Object.values(checks).every((v) => v === 'ok');
    return send(res, ok ? 200 : 503, 'application/json', `${JSON.stringify({ ok, checks })}\n`);
  }
  const m = /^\/unsubscribe\/([^/]+)$/.exec(url.pathname);
  if (m) return unsubscribe(rt, req, res, decodeURIComponent(m[1]!));
  return send(res, 404, 'text/plain', 'not found\n');
}

/** Each dependency answers within two seconds, or the process is not ready. */
async function readiness(rt: Runtime): Promise<Record<string, string>> {
  const timeout = <T>(p: Promise<T>) => Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 2_000))]);
  const check = async (fn: () => Promise<unknown>) => {
    try {
      await timeout(fn());
      return 'ok';
    } catch (err) {
      return `failing: ${(err as Error).message}`;
    }
  };
  const [postgres, redis] = await Promise.all([
    check(() => sql`select 1`.execute(rt.db)),
    check(async () => {
      if ((await rt.redis.ping()) !== 'PONG') throw new Error('no PONG');
    }),
  ]);
  return { postgres, redis };
}

async function unsubscribe(rt: Runtime, req: http.IncomingMessage, res: http.ServerResponse, token: string): Promise<void> {
  const contactId = verifyUnsubscribeToken(token, rt.config.secret);
  if (contactId === null) return send(res, 400, 'text/html; charset=utf-8', page('This link is not valid', 'The unsubscribe link is damaged or was not issued by us.'));
  if (req.method === 'POST') {
    req.resume();
    await rt.db.updateTable('contacts').set({ unsubscribed_at: new Date() })
      .where('id', '=', contactId).where('unsubscribed_at', 'is', null).execute();
    rt.logger.info({ contactId }, 'contact unsubscribed');
    return send(res, 200, 'text/html; charset=utf-8', page('You are unsubscribed', 'You will receive no more of these emails.'));
  }
  if (req.method === 'GET' || req.method === 'HEAD') {
    const form = `<form method="post"><button type="submit">Unsubscribe</button></form>`;
    return send(res, 200, 'text/html; charset=utf-8', page('Unsubscribe?', `Press the button to stop these emails.${form}`));
  }
  return send(res, 405, 'text/plain', 'method not allowed\n');
}

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${title}</title></head><body style="font-family:sans-serif;max-width:32rem;margin:4rem auto"><h1>${title}</h1><p>${body}</p></body></html>\n`;
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}
