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
 * Endpoints alive in the window counted by remote country, by remote port (the service spoken to;
 * listeners count under their local port) and by process name — the network page's charts.
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
  const byPort = await base()
    .select((eb) => [
      sql<string>`case when e.remote_port = 0 then 'listen ' || cast(e.local_port as text) else e.proto || ' ' || cast(e.remote_port as text) end`.as(
        'key',
      ),
      ...count(eb),
    ])
    .groupBy(['e.proto', 'e.remote_port', 'e.local_port'])
    .orderBy('n', 'desc')
    .limit(TOP * 4)
    .execute();
  const byProcess = await base()
    .select((eb) => [eb.fn.coalesce('p.comm', sql.lit('(no process)')).as('key'), ...count(eb)])
    .groupBy('p.comm')
    .orderBy('n', 'desc')
    .limit(TOP)
    .execute();
  // Listeners group by local port, others by remote port: merge the rows that name the same key.
  const ports = new Map<string, { n: number; r: number }>();
  for (const r of byPort) {
    const k = String(r.key);
    const acc = ports.get(k) ?? { n: 0, r: 0 };
    acc.n += Number(r.n);
    acc.r += Number(r.r);
    ports.set(k, acc);
  }
  return Object.freeze({
    byCountry: Object.freeze(shape(byCountry)),
    byPort: Object.freeze(
      [...ports]
        .map(([key, v]) => Object.freeze({ key, endpoints: v.n, remotes: v.r }))
        .sort((a, b) => b.endpoints - a.endpoints)
        .slice(0, TOP),
    ),
    byProcess: Object.freeze(shape(byProcess)),
  });
}
