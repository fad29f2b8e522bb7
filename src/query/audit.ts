import type { Store } from '../store/index.js';
import { limitOf, type WindowOptions } from './window.js';

/** One row of the audit trail as `pofr server audit` and the web UI show it. */
export interface AuditRow {
  readonly id: number;
  /** µs since the epoch, UTC. */
  readonly time: number;
  readonly remote: string | null;
  readonly source: string | null;
  readonly fingerprint: string | null;
  /** The host's name when the refusal named an enrolled host, else its id, else null. */
  readonly host: string | null;
  readonly host_id: string | null;
  readonly ssh_user: string | null;
  readonly kind: string;
  readonly code: string | null;
  readonly reason: string;
  /** For kind 'suppressed': how many refusals the rate limit counted instead of writing. */
  readonly suppressed: number;
}

export interface AuditQuery extends WindowOptions {
  /** Only these kinds (docs/schema.md "Audit"). */
  readonly kinds?: readonly string[];
  /** Only refusals from this address. */
  readonly source?: string;
  /** The latest `limit` refusals, newest first (the web UI's view), instead of the oldest first. */
  readonly newestFirst?: boolean;
}

/**
 * Refused attempts in time order (oldest first), with the host's name where one is known.
 *
 * @example
 * const rows = await listAuditEvents(store, { from: nowMicros - 3_600_000_000, kinds: ['batch_seal'] });
 */
export async function listAuditEvents(store: Store, q: AuditQuery = {}): Promise<readonly AuditRow[]> {
  let query = store.db
    .selectFrom('audit_events as a')
    .leftJoin('hosts as h', 'h.host_id', 'a.host_id')
    .select([
      'a.id',
      'a.at',
      'a.remote',
      'a.source',
      'a.fingerprint',
      'a.host_id',
      'h.name',
      'a.ssh_user',
      'a.kind',
      'a.code',
      'a.reason',
      'a.suppressed',
    ]);
  if (q.from !== undefined) query = query.where('a.at', '>=', q.from);
  if (q.to !== undefined) query = query.where('a.at', '<=', q.to);
  if (q.hosts !== undefined) {
    if (q.hosts.length === 0) return [];
    query = query.where('a.host_id', 'in', q.hosts);
  }
  if (q.kinds !== undefined) {
    if (q.kinds.length === 0) return [];
    query = query.where('a.kind', 'in', q.kinds);
  }
  if (q.source !== undefined) query = query.where('a.source', '=', q.source);
  const order = q.newestFirst ? 'desc' : 'asc';
  const rows = await query.orderBy('a.at', order).orderBy('a.id', order).limit(limitOf(q)).execute();
  return Object.freeze(
    rows.map((r) =>
      Object.freeze({
        id: Number(r.id),
        time: Number(r.at),
        remote: r.remote,
        source: r.source,
        fingerprint: r.fingerprint,
        host: r.name ?? r.host_id,
        host_id: r.host_id,
        ssh_user: r.ssh_user,
        kind: r.kind,
        code: r.code,
        reason: r.reason,
        suppressed: Number(r.suppressed),
      }),
    ),
  );
}
