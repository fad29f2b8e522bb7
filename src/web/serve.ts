import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import { PofrError } from '../errors.js';
import { hasWebTokens } from '../roles/server/web-tokens.js';
import type { Store } from '../store/index.js';
import { buildApp } from './app.js';

export interface WebServerOptions {
  readonly store: Store;
  readonly host: string;
  readonly port: number;
  readonly log: (msg: string, fields?: object) => void;
  /** Default: the front end built next to this module (dist/ui). */
  readonly uiDir?: string;
}

export interface RunningWeb {
  readonly url: string;
  readonly port: number;
  readonly tokenRequired: boolean;
  close(): Promise<void>;
}

/** The front end `npm ci` builds (Vite, at the `prepare` step) beside the compiled server. */
export const BUILT_UI_DIR = fileURLToPath(new URL('../../ui/', import.meta.url));

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * Serves the web UI. On loopback anyone on this machine may read it, as they may run `pofr sql`;
 * on any other address every request needs an access token, and without one created there is
 * nothing to give out: refuse to start rather than serve the record to the network.
 */
export async function startWeb(opts: WebServerOptions): Promise<RunningWeb> {
  const tokenRequired = !isLoopback(opts.host);
  if (tokenRequired && !(await hasWebTokens(opts.store))) {
    throw new PofrError(
      'POFR_USAGE',
      `web UI on ${opts.host}:${opts.port}: an address other than loopback needs an access token; create one with: pofr server token --web --data DIR (or serve on 127.0.0.1)`,
    );
  }
  const app = await buildApp({
    store: opts.store,
    uiDir: opts.uiDir ?? BUILT_UI_DIR,
    requireToken: tokenRequired,
  });
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : opts.port;
  const shown = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `http://${shown}:${port}/`;
  opts.log(
    tokenRequired
      ? 'web UI listening; every request needs an access token (?token=…)'
      : 'web UI listening on loopback',
    {
      url,
      token_required: tokenRequired,
    },
  );
  return { url, port, tokenRequired, close: () => app.close() };
}
