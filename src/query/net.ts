import type { Store } from '../store/index.js';
import { NOT_OBSERVER_HELD } from './process-row.js';
import { limitOf, type WindowOptions } from './window.js';

export interface EndpointQuery extends WindowOptions {
  /** Exact remote address. */
  readonly remote?: string;
  /** Local or remote port. */
  readonly port?: number;
  /** ISO 3166 country code of the remote address (case-insensitive). */
  readonly country?: string;
  readonly proto?: 'tcp' | 'udp';
  readonly pid?: number;
  /** Only the endpoints of these process rows (the images of one process: the process page). */
  readonly processIds?: readonly number[];
  /** false: leave out endpoints of the recorder's own processes (its SSH link to the server…). */
  readonly observer?: boolean;
}

/** One network endpoint (socket) from first to last sight. */
export interface EndpointRow {
  readonly id: number;
  readonly process_id: number | null;
  readonly host: string;
  readonly host_id: string;
  readonly pid: number | null;
  readonly comm: string | null;
  readonly proto: string;
  /** 4 or 6 */
  readonly family: number;
  readonly local_ip: string;
  readonly local_port: number;
  readonly remote_ip: string;
  readonly remote_port: number;
  /** The last state seen (ESTABLISHED, LISTEN, …). */
  readonly state: string;
  readonly inode: number;
  /** Network namespace (inode of /proc/PID/ns/net): which container's network; null if unknown. */
  readonly netns: number | null;
  readonly first_seen: number;
  readonly last_seen: number;
  readonly open: boolean;
  readonly country: string | null;
  readonly city: string | null;
  /** Reverse DNS of the remote address, and when it answered (µs). */
  readonly fqdn: string | null;
  readonly fqdn_at: number | null;
  /** The remote address's autonomous system and its holder, from the ASN data at ingest. */
  readonly asn: number | null;
  readonly as_org: string | null;
  /** Which databases (name, build date) gave country, city and ASN. */
  readonly geo_db: string | null;
  /**
   * The name the process looked up last before this endpoint opened (its `dns_query` records),
   * null when it looked up none: matched by process image and time order, not by answer.
   */
  readonly looked_up: string | null;
  readonly open_ord: number;
  readonly close_ord: number | null;
}

/**
 * The endpoint columns that say which socket it is and whose (select them from `endpoints as e`
 * joined to `hosts as h`, left-joined to `processes as p`).
 */
export const SOCKET_COLUMNS = [
  'e.id',
  'e.process_id',
  'h.name as host',
  'e.host_id',
  'e.pid',
  'p.comm',
  'e.proto',
  'e.family',
  'e.local_ip',
  'e.local_port',
  'e.remote_ip',
  'e.remote_port',
] as const;

/** What enrichment added to an endpoint (select them from `endpoints as e`). */
export const ENRICHMENT_COLUMNS = [
  'e.country',
  'e.city',
  'e.fqdn',
  'e.fqdn_at',
  'e.asn',
  'e.as_org',
  'e.geo_db',
] as const;

/**
 * Endpoints alive in the window (first_seen <= to, and last_seen >= from or still open), in the
 * order they appeared.
 *
 * @example
 * const rows = await findEndpoints(store, { port: 443, country: 'RU' });
 */
export async function findEndpoints(store: Store, opts: EndpointQuery = {}): Promise<readonly EndpointRow[]> {
  if (opts.hosts?.length === 0 || opts.processIds?.length === 0) return Object.freeze([]);
  let q = store.db
    .selectFrom('endpoints as e')
    .innerJoin('hosts as h', 'h.host_id', 'e.host_id')
    .leftJoin('processes as p', 'p.id', 'e.process_id')
    .select([
      ...SOCKET_COLUMNS,
      'e.state',
      'e.inode',
      'e.netns',
      'e.first_seen',
      'e.last_seen',
      'e.is_open',
      ...ENRICHMENT_COLUMNS,
      (eb) =>
        eb
          .selectFrom('dns_queries as d')
          .select('d.name')
          .whereRef('d.process_id', '=', 'e.process_id')
          .whereRef('d.t', '<=', 'e.first_seen')
          .orderBy('d.t', 'desc')
          .orderBy('d.ord', 'desc')
          .limit(1)
          .as('looked_up'),
      'e.open_ord',
      'e.close_ord',
    ]);
  if (opts.hosts) q = q.where('e.host_id', 'in', opts.hosts);
  const { from, to, remote, port, country, proto, pid } = opts;
  if (to !== undefined) q = q.where('e.first_seen', '<=', to);
  if (from !== undefined)
    q = q.where((eb) => eb.or([eb('e.last_seen', '>=', from), eb('e.is_open', '=', 1)]));
  if (remote !== undefined) q = q.where('e.remote_ip', '=', remote);
  if (port !== undefined)
    q = q.where((eb) => eb.or([eb('e.local_port', '=', port), eb('e.remote_port', '=', port)]));
  if (country !== undefined) q = q.where('e.country', '=', country.toUpperCase());
  if (proto !== undefined) q = q.where('e.proto', '=', proto);
  if (pid !== undefined) q = q.where('e.pid', '=', pid);
  if (opts.processIds) q = q.where('e.process_id', 'in', opts.processIds);
  if (opts.observer === false) q = q.where(NOT_OBSERVER_HELD);
  const rows = await q
    .orderBy('e.first_seen')
    .orderBy('e.open_ord')
    .orderBy('e.id')
    .limit(limitOf(opts))
    .execute();
  return Object.freeze(
    rows.map((r) => {
      const { is_open, ...rest } = r;
      return Object.freeze({ ...rest, open: Number(is_open) !== 0 });
    }),
  );
}

/** "10.0.0.1:5555", "[::1]:443". */
export function formatAddress(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** "tcp 10.0.0.1:5555 → 1.2.3.4:443 ESTABLISHED"; a listener has no remote side to show. */
export function describeEndpoint(
  e: Pick<
    EndpointRow,
    'proto' | 'local_ip' | 'local_port' | 'remote_ip' | 'remote_port' | 'state' | 'fqdn' | 'country'
  >,
): string {
  const local = formatAddress(e.local_ip, e.local_port);
  const unbound = e.remote_port === 0 && /^(0\.0\.0\.0|::|\*)?$/.test(e.remote_ip);
  const remote = unbound ? '' : ` → ${formatAddress(e.remote_ip, e.remote_port)}`;
  const where = [e.fqdn, e.country].filter((x) => x).join(', ');
  return `${e.proto} ${local}${remote}${e.state ? ` ${e.state}` : ''}${where ? ` (${where})` : ''}`;
}
