import { existsSync } from 'node:fs';
import helmet from '@fastify/helmet';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { isPofrError } from '../errors.js';
import { checkWebToken } from '../roles/server/web-tokens.js';
import type { Store } from '../store/index.js';
import { fleetRoutes } from './routes/fleet-routes.js';
import { hostRoutes } from './routes/host-routes.js';
import { networkRoutes } from './routes/network-routes.js';
import { processRoutes } from './routes/process-routes.js';
import { searchRoutes } from './routes/search-routes.js';

declare module 'fastify' {
  interface FastifyInstance {
    readonly store: Store;
  }
}

export interface WebAppOptions {
  readonly store: Store;
  readonly logger?: FastifyBaseLogger | boolean;
  /** The built front end (dist/ui); without it only the API is served. */
  readonly uiDir?: string;
  /** Every request needs a web access token (any bind but loopback). */
  readonly requireToken?: boolean;
}

const COOKIE = 'pofr_web';
/** The pages the front end routes itself: each serves index.html, so deep links open directly. */
const PAGES = /^\/(|host\/[^/]+|process\/\d+|network|search|diff|alerts|audit)$/;

/**
 * The web UI's server: a read-only JSON API over query/ (one encapsulated plugin per resource, every
 * answer with the SQL behind it), its OpenAPI document, and the built front end. It never listens:
 * `startWeb` does, tests use `inject()`.
 *
 * @example
 * const app = await buildApp({ store });
 * const res = await app.inject('/api/fleet');
 */
export async function buildApp(opts: WebAppOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: opts.logger ?? false, trustProxy: false });
  app.decorate('store', opts.store);
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    crossOriginEmbedderPolicy: false,
    referrerPolicy: { policy: 'no-referrer' },
  });
  if (opts.requireToken) {
    app.addHook('onRequest', async (req, reply) => {
      const url = new URL(req.url, 'http://pofr');
      const offered = url.searchParams.get('token');
      if (offered !== null && (await checkWebToken(opts.store, offered))) {
        // The token leaves the address bar (and the history) for a cookie scripts cannot read.
        url.searchParams.delete('token');
        reply.header('set-cookie', `${COOKIE}=${offered}; HttpOnly; SameSite=Strict; Path=/`);
        return reply.redirect(`${url.pathname}${url.search}`, 303);
      }
      const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
      const cookie = readCookie(req.headers.cookie, COOKIE);
      const token = bearer ?? cookie;
      if (token !== undefined && (await checkWebToken(opts.store, token))) return;
      return reply
        .code(401)
        .type('text/plain; charset=utf-8')
        .send(
          'pofr web: an access token is needed here; open this address with ?token=… (create one with: pofr server token --web)\n',
        );
    });
  }
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'pofr web API',
        version: '1',
        description: 'Read-only questions over a pofr store. Times are µs since the epoch, UTC.',
      },
    },
  });
  app.setErrorHandler((err, req, reply) => {
    if (isPofrError(err)) {
      const status = err.code === 'POFR_HOST_UNKNOWN' ? 404 : 400;
      return reply.code(status).send({ error: err.code, message: err.message });
    }
    const e = err as { validation?: unknown; statusCode?: number; message: string };
    if (e.validation) return reply.code(400).send({ error: 'POFR_USAGE', message: e.message });
    req.log.error({ err }, 'web API request failed');
    return reply
      .code(e.statusCode && e.statusCode < 500 ? e.statusCode : 500)
      .send({ error: 'internal', message: e.message });
  });
  await app.register(
    async (api) => {
      await api.register(fleetRoutes);
      await api.register(hostRoutes);
      await api.register(processRoutes);
      await api.register(networkRoutes);
      await api.register(searchRoutes);
      api.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
    },
    { prefix: '/api' },
  );
  if (opts.uiDir !== undefined && existsSync(opts.uiDir)) {
    await app.register(fastifyStatic, { root: opts.uiDir, index: false, wildcard: false, prefix: '/' });
    app.get('/assets/*', async (req, reply) => reply.sendFile(req.url.slice(1).split('?')[0]));
  }
  app.setNotFoundHandler(async (req, reply) => {
    const path = req.url.split('?')[0];
    if (req.method === 'GET' && PAGES.test(path) && opts.uiDir !== undefined && existsSync(opts.uiDir)) {
      return reply.type('text/html; charset=utf-8').sendFile('index.html');
    }
    return reply
      .code(404)
      .send({ error: 'not_found', message: `${req.method} ${path}: nothing here (the API is read-only)` });
  });
  return app;
}

function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}
