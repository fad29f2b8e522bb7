import { type GeoLookup, openGeoip } from '../../enrich/index.js';
import { PofrError } from '../../errors.js';
import { openStore, readConfiguredRules, readStoreConfig, type Store } from '../../store/index.js';
import { type SshServer, startSshServer } from '../../transport/index.js';
import { AuditTrail } from './audit-trail.js';
import { ensureSharedHostKey } from './host-key.js';
import { loadLiveRules } from './live-rules.js';
import { type PartitionKeeper, startPartitionKeeper } from './partition-keeper.js';
import { startRdnsFiller } from './rdns-filler.js';
import { watchRevocations } from './revocation-watch.js';
import { createServerHandlers } from './server-handlers.js';

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
  /**
   * Sigma rule files, directories or "bundled", evaluated on every ingested batch (`--rules`);
   * default: those `server init --rules` recorded in the data directory.
   */
  readonly rules?: readonly string[];
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
  let rules: ReturnType<typeof loadLiveRules>;
  try {
    rules = loadLiveRules(opts.rules ?? readConfiguredRules(opts.dataDir), store.caps, opts.log);
  } catch (e) {
    await store.close();
    throw e;
  }
  const hostKey = await ensureSharedHostKey(store, opts.dataDir);
  let partitions: PartitionKeeper;
  try {
    partitions = await startPartitionKeeper(store, opts.log);
  } catch (e) {
    await store.close();
    throw e;
  }
  const audit = AuditTrail.inMemory(store, opts.log);
  const handlers = createServerHandlers({ store, audit, log: opts.log, geo, rules });
  let server: SshServer;
  try {
    server = await startSshServer({
      hostKey: hostKey.privateKey,
      host: opts.host,
      port: opts.port,
      handlers,
      log: opts.log,
    });
  } catch (e) {
    partitions.stop();
    await audit.close();
    await store.close();
    throw e;
  }
  const revocations = watchRevocations(store, server, audit, opts.log);
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
      revocations.stop();
      partitions.stop();
      await server.close();
      await audit.close();
      await rdns?.stop();
      await store.close();
    },
  };
}
