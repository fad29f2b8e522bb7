import { promises as dns } from 'node:dns';
import { isPublicAddress, ReverseDnsCache } from '../../enrich/index.js';
import type { Store } from '../../store/index.js';

export interface RdnsFillerOptions {
  readonly log: (msg: string, fields?: object) => void;
  /** How often to look for addresses not resolved yet, ms. */
  readonly intervalMs?: number;
  /** Addresses resolved per round at most: the filler never falls behind by more than it can chew. */
  readonly perRound?: number;
  /** For tests: answers instead of the system's resolver (there is no outside DNS in CI). */
  readonly resolve?: (ip: string) => Promise<string[]>;
}

export interface RunningRdnsFiller {
  /** One round now (tests call it; the timer calls it every interval). */
  round(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Reverse DNS beside ingest, never on its path: every interval, the remote addresses of endpoints
 * that have no `fqdn_at` yet are resolved through a bounded, cached resolver, and their rows get the
 * name (or none) and when it was asked. A slow or dead resolver delays names, never batches.
 */
export function startRdnsFiller(store: Store, opts: RdnsFillerOptions): RunningRdnsFiller {
  const cache = new ReverseDnsCache({ resolve: opts.resolve ?? ((ip) => dns.reverse(ip)) });
  let busy: Promise<number> | null = null;
  let stopped = false;
  const round = async (): Promise<number> => {
    const pending = await store.db
      .selectFrom('endpoints')
      .select('remote_ip')
      .distinct()
      .where('fqdn_at', 'is', null)
      .where('remote_port', '<>', 0)
      .limit(opts.perRound ?? 200)
      .execute();
    let named = 0;
    for (const { remote_ip } of pending) {
      if (stopped) break;
      const at = Date.now() * 1000;
      const name = isPublicAddress(remote_ip) ? await cache.name(remote_ip) : null;
      if (name !== null) named++;
      await store.db
        .updateTable('endpoints')
        .set({ fqdn: name, fqdn_at: at })
        .where('remote_ip', '=', remote_ip)
        .where('fqdn_at', 'is', null)
        .execute();
    }
    return named;
  };
  const tick = () => {
    if (busy !== null || stopped) return;
    busy = round()
      .catch((e: unknown) => {
        opts.log('reverse DNS round failed; retrying next round', { error: (e as Error).message });
        return 0;
      })
      .finally(() => {
        busy = null;
      });
  };
  const timer = setInterval(tick, opts.intervalMs ?? 10_000);
  timer.unref();
  return {
    round,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await busy;
    },
  };
}
