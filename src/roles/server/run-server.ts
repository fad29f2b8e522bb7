import { type GeoLookup, openGeoip } from '../../enrich/index.js';
import { PofrError } from '../../errors.js';
import { ingestBatch } from '../../ingest/index.js';
import { openStore, readStoreConfig, type Store } from '../../store/index.js';
import { type BatchAck, type ServerHandlers, startSshServer } from '../../transport/index.js';
import { authorizeHostKey, enrollWithPassword, enrollWithToken, recordClientVersion } from './enrollment.js';
import { ensureHostKey } from './host-key.js';
import { startRdnsFiller } from './rdns-filler.js';

export type Log = (msg: string, fields?: object) => void;

export interface ServerOptions {
  readonly dataDir: string;
  readonly host: string;
  readonly port: number;
  readonly log: Log;
  /** Country database for endpoints: a .mmdb path, undefined for the bundled one, null for none. */
  readonly geoip?: string | null;
  /** City database (.mmdb) the operator supplies; none by default. */
  readonly geoipCity?: string;
  /** ASN database (.mmdb, GeoLite2-ASN); undefined for the bundled DB-IP ASN Lite data, null for none. */
  readonly geoipAsn?: string | null;
  /** Reverse DNS of remote addresses beside ingest (default true; `--no-rdns`). */
  readonly rdns?: boolean;
}

export interface RunningServer {
  readonly port: number;
  readonly fingerprint: string;
  readonly store: Store;
  close(): Promise<void>;
}

/**
 * The country database, once per server. A file the operator named must load (a typo should not
 * silently leave countries empty); the bundled one missing is a packaging fault: say so, go on.
 */
function loadGeoip(opts: ServerOptions, log: Log): GeoLookup | undefined {
  const path = opts.geoip;
  if (path === null) return undefined;
  try {
    const geo = openGeoip(path, { city: opts.geoipCity, asn: opts.geoipAsn });
    log('endpoint countries from', { geoip: geo.source });
    return geo;
  } catch (e) {
    // A file the operator named must load; the bundled data missing is a packaging fault.
    const named = [
      path && `--geoip ${path}`,
      opts.geoipCity && `--geoip-city ${opts.geoipCity}`,
      typeof opts.geoipAsn === 'string' && `--geoip-asn ${opts.geoipAsn}`,
    ].filter((x) => x);
    if (named.length > 0) {
      throw new PofrError(
        'POFR_USAGE',
        `${named.join(', ')}: cannot read it as a MaxMind .mmdb database (${(e as Error).message})`,
      );
    }
    log('no country database: endpoint countries stay empty', { error: (e as Error).message });
    return undefined;
  }
}

/**
 * Composes the server: the SSH listener is handed `ingest = batch => ingestBatch(store, batch)`;
 * transport knows nothing of the store, ingest nothing of SSH.
 */
export async function runServer(opts: ServerOptions): Promise<RunningServer> {
  const geo = loadGeoip(opts, opts.log);
  const store = await openStore(readStoreConfig(opts.dataDir));
  const hostKey = ensureHostKey(opts.dataDir);
  // The version each host's client last announced, so it is written once per change, not per batch.
  const knownVersions = new Map<string, string>();
  const handlers: ServerHandlers = {
    async authorize(username, key) {
      if (username === 'enroll') return { ok: true, principal: 'enroll' };
      const decision = await authorizeHostKey(store, username, key.fingerprint);
      if (!decision.ok)
        opts.log('refused SSH key', { username, fingerprint: key.fingerprint, reason: decision.reason });
      return decision.ok ? { ok: true, principal: decision.hostId } : decision;
    },
    async enroll(req, ctx) {
      const common = {
        name: req.name,
        signingKey: req.signing_key,
        sshKey: ctx.key.openssh,
        sshFingerprint: ctx.key.fingerprint,
        remote: ctx.remote,
        clientVersion: ctx.clientVersion,
      };
      const outcome =
        req.method === 'password'
          ? await enrollWithPassword(store, { ...common, password: req.password ?? '' })
          : await enrollWithToken(store, { ...common, token: req.token ?? '' });
      opts.log(outcome.ok ? 'enrolled client' : 'refused enrollment', {
        remote: ctx.remote,
        name: req.name,
        method: req.method,
        ...outcome,
      });
      // A refused guess costs the guesser a second on top of scrypt: passwords and tokens are not
      // worth brute-forcing through this channel.
      if (!outcome.ok) await new Promise((r) => setTimeout(r, 1000));
      return outcome;
    },
    async ingest(principal, batch, ctx): Promise<BatchAck> {
      if (ctx.clientVersion !== null && knownVersions.get(principal) !== ctx.clientVersion) {
        await recordClientVersion(store, principal, ctx.clientVersion);
        knownVersions.set(principal, ctx.clientVersion);
      }
      // Throws only when the store itself failed: the transport then closes the channel without an
      // ACK and the client keeps the batch for a retry.
      const result = await ingestBatch(store, batch, { principal, geo });
      if (result.status === 'refused') {
        opts.log('refused batch', {
          remote: ctx.remote,
          host: principal,
          seq: result.seq,
          code: result.code,
          reason: result.reason,
        });
        return { seq: result.seq, status: 'refused', code: result.code, reason: result.reason };
      }
      if (result.status === 'accepted' && result.chain !== 'ok' && result.chain !== 'genesis') {
        opts.log('chain break recorded', { host: principal, seq: result.seq, chain: result.chain });
      }
      return { seq: result.seq, status: result.status };
    },
  };
  let server: { port: number; close(): Promise<void> };
  try {
    server = await startSshServer({
      hostKey: hostKey.privateKey,
      host: opts.host,
      port: opts.port,
      handlers,
      log: opts.log,
    });
  } catch (e) {
    await store.close();
    throw e;
  }
  const rdns = opts.rdns === false ? null : startRdnsFiller(store, { log: opts.log });
  opts.log('pofr server listening', {
    host: opts.host,
    port: server.port,
    fingerprint: hostKey.fingerprint,
    store: store.caps.engine,
  });
  return {
    port: server.port,
    fingerprint: hostKey.fingerprint,
    store,
    async close() {
      await server.close();
      await rdns?.stop();
      await store.close();
    },
  };
}
