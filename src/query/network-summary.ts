import { type ExpressionBuilder, sql } from 'kysely';
import type { Database, EndpointsTable, Store } from '../store/index.js';
import { NOT_OBSERVER_HELD } from './process-row.js';
import type { WindowOptions } from './window.js';

export interface NetworkSummaryQuery extends WindowOptions {
  readonly observer?: boolean;
}

/** Endpoints counted one way (by remote country, remote port or owning process). */
export interface NetworkCount {
  readonly key: string;
  readonly endpoints: number;
  /** Distinct remote addresses among them. */
  readonly remotes: number;
}

export interface NetworkSummary {
  readonly byCountry: readonly NetworkCount[];
  readonly byPort: readonly NetworkCount[];
  readonly byProcess: readonly NetworkCount[];
}

const TOP = 25;

/**
 * Endpoints alive in the window counted by remote country, by service port and direction (`tcp 443
 * in`, `tcp 5432 out`, `listen 22`) and by process name — the network page's charts.
 */
export async function networkSummary(store: Store, opts: NetworkSummaryQuery = {}): Promise<NetworkSummary> {
  if (opts.hosts?.length === 0) return Object.freeze({ byCountry: [], byPort: [], byProcess: [] });
  const base = () => {
    let q = store.db.selectFrom('endpoints as e').leftJoin('processes as p', 'p.id', 'e.process_id');
    if (opts.hosts) q = q.where('e.host_id', 'in', opts.hosts);
    if (opts.to !== undefined) q = q.where('e.first_seen', '<=', opts.to);
    if (opts.from !== undefined) {
      const from = opts.from;
      q = q.where((eb) => eb.or([eb('e.last_seen', '>=', from), eb('e.is_open', '=', 1)]));
    }
    if (opts.observer === false) q = q.where(NOT_OBSERVER_HELD);
    return q;
  };
  const shape = (rows: { key: unknown; n: unknown; r: unknown }[]): NetworkCount[] =>
    rows.map((r) =>
      Object.freeze({ key: String(r.key ?? '—'), endpoints: Number(r.n), remotes: Number(r.r) }),
    );
  const count = (eb: ExpressionBuilder<Database & { e: EndpointsTable }, 'e'>) =>
    [eb.fn.countAll<number>().as('n'), eb.fn.count<number>('e.remote_ip').distinct().as('r')] as const;
  const byCountry = await base()
    .select((eb) => [eb.fn.coalesce('e.country', sql.lit('private or unknown')).as('key'), ...count(eb)])
    .where('e.remote_port', '<>', 0)
    .groupBy('e.country')
    .orderBy('n', 'desc')
    .limit(TOP)
    .execute();
  // The service spoken to: a listener's port; the local port of a connection accepted on a port
  // lower than the peer's (ephemeral) one; otherwise the remote port this host connected to.
  const service = sql<string>`case when e.remote_port = 0 then 'listen ' || cast(e.local_port as text) when e.local_port < e.remote_port then e.proto || ' ' || cast(e.local_port as text) || ' in' else e.proto || ' ' || cast(e.remote_port as text) || ' out' end`;
  const byPort = await base()
    .select((eb) => [service.as('key'), ...count(eb)])
    .groupBy(service)
    .orderBy('n', 'desc')
    .limit(TOP)
    .execute();
  const byProcess = await base()
    .select((eb) => [eb.fn.coalesce('p.comm', sql.lit('(no process)')).as('key'), ...count(eb)])
    .groupBy('p.comm')
    .orderBy('n', 'desc')
    .limit(TOP)
    .execute();
  return Object.freeze({
    byCountry: Object.freeze(shape(byCountry)),
    byPort: Object.freeze(shape(byPort)),
    byProcess: Object.freeze(shape(byProcess)),
  });
}
