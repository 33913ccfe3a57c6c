/**
 * The preview's HTTP server (fastify): the page, the part of it that is rebuilt after a file
 * change, and a Server-Sent Events stream that says when that happened. It shows customer data,
 * so it binds to 127.0.0.1 unless told otherwise, answers only to local host names there (a web
 * page elsewhere cannot read it through DNS rebinding), and logs no query strings: they hold
 * search text, which may be a title.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { liveHtml, pageHtml } from './page.ts';
import { viewBuilder, type PreviewDeps, type ViewQuery } from './view.ts';

export interface PreviewServer {
  /** `http://127.0.0.1:3000/` */
  url: string;
  close(): Promise<void>;
}

export interface ListenOptions {
  /** @defaultValue 127.0.0.1 */
  host: string;
  /** 0 picks a free port. */
  port: number;
}

const QUERY_SCHEMA = {
  type: 'object',
  properties: {
    step: { type: 'string', maxLength: 100 },
    template: { type: 'string', maxLength: 200 },
    opportunity: { type: 'string', pattern: '^(\\d{1,19}|sample)?$' },
    locale: { type: 'string', pattern: '^([A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*)?$' },
    q: { type: 'string', maxLength: 200 },
  },
} as const;

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);
const HEARTBEAT_MS = 15_000;

export async function startPreviewServer(deps: PreviewDeps, options: ListenOptions): Promise<PreviewServer> {
  const app = Fastify({ logger: false, forceCloseConnections: true });
  const loopback = LOOPBACK_NAMES.has(options.host) || options.host === '::1';
  app.addHook('onRequest', async (request, reply) => {
    if (loopback && !LOOPBACK_NAMES.has(hostName(request.headers.host))) {
      return reply.code(403).type('text/plain; charset=utf-8').send('The preview answers to localhost only.\n');
    }
  });
  app.addHook('onSend', async (_request, reply) => {
    reply.header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store').header('x-frame-options', 'DENY');
  });
  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, _request, reply) => {
    const status = error.statusCode && error.statusCode < 500 ? error.statusCode : 500;
    // The message may quote what the CRM wrote: it goes to the page, the log gets the kind only.
    deps.logger.error({ status, err: error.name, code: error.code }, 'preview request failed');
    return reply.code(status).type('text/plain; charset=utf-8').send(`${status === 500 ? 'The preview failed' : 'Bad request'}: ${error.message}\n`);
  });
  routes(app, deps);
  await app.listen({ host: options.host, port: options.port });
  const { port } = app.server.address() as AddressInfo;
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return { url: `http://${shownHost}:${port}/`, close: () => app.close() };
}

function routes(app: FastifyInstance, deps: PreviewDeps): void {
  const view = viewBuilder(deps);
  type Get = FastifyRequest<{ Querystring: ViewQuery }>;
  app.get('/', { schema: { querystring: QUERY_SCHEMA } }, async (request: Get, reply) => {
    const nonce = randomBytes(16).toString('base64');
    reply.header('content-security-policy', contentSecurityPolicy(nonce));
    return reply.type('text/html; charset=utf-8').send(pageHtml(await view(request.query), nonce));
  });
  app.get('/fragment', { schema: { querystring: QUERY_SCHEMA } }, async (request: Get, reply) => {
    reply.header('content-security-policy', contentSecurityPolicy(null));
    return reply.type('text/html; charset=utf-8').send(liveHtml(await view(request.query)).text);
  });
  app.get('/events', (request, reply) => events(deps, request, reply));
}

/** `event: version` now and after every reload; the page fetches `/fragment` when it differs. */
function events(deps: PreviewDeps, request: FastifyRequest, reply: FastifyReply): void {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'connection': 'keep-alive',
    'x-content-type-options': 'nosniff',
  });
  res.write('retry: 1000\n\n');
  const send = (version: number) => res.write(`event: version\ndata: ${version}\n\n`);
  send(deps.content.current().version);
  const unsubscribe = deps.content.subscribe((content) => send(content.version));
  const heartbeat = setInterval(() => res.write(': still here\n\n'), HEARTBEAT_MS);
  request.raw.on('close', () => {
    unsubscribe();
    clearInterval(heartbeat);
  });
}

/**
 * Scripts only with this response's nonce; styles inline (the email's own are inline too, and a
 * `srcdoc` frame inherits this policy); images from anywhere, as an email client would load them.
 */
function contentSecurityPolicy(nonce: string | null): string {
  return [
    "default-src 'none'", nonce ? `script-src 'nonce-${nonce}'` : "script-src 'none'", "style-src 'unsafe-inline'",
    'img-src data: https: http:', 'font-src data: https:', "connect-src 'self'", "form-action 'self'",
    "base-uri 'none'", "frame-ancestors 'none'",
  ].join('; ');
}

/** The Host header without its port: `[::1]:3000` -> `[::1]`. */
function hostName(host: string | undefined): string {
  return (/^(\[[^\]]*\]|[^:]*)/.exec(host ?? '')?.[1] ?? '').toLowerCase();
}
