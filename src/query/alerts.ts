import type { Store } from '../store/index.js';

/** One alert as stored (live detection at ingest writes them; shown as they are). */
export interface AlertRow {
  readonly id: number;
  readonly host: string;
  readonly host_id: string;
  readonly t: number;
  /** The rule's level */
  readonly severity: string;
  /** The rule's id */
  readonly rule: string;
  /** The rule's title */
  readonly summary: string;
  /** The matched row as JSON */
  readonly detail: string | null;
  /** Migration 0014 (null on older rows): the rule's author, the matched row and its evidence batch. */
  readonly author: string | null;
  readonly source_table: string | null;
  readonly row_id: number | null;
  readonly pid: number | null;
  readonly batch_seq: number | null;
  readonly batch_hash: string | null;
}

/** Alerts, newest first (the CLI asks for oldest first, as every other analyst verb prints). */
export async function listAlerts(
  store: Store,
  opts: {
    hosts?: readonly string[];
    limit?: number;
    from?: number;
    to?: number;
    order?: 'asc' | 'desc';
  } = {},
): Promise<readonly AlertRow[]> {
  if (opts.hosts?.length === 0) return [];
  let q = store.db
    .selectFrom('alerts as a')
    .innerJoin('hosts as h', 'h.host_id', 'a.host_id')
    .select([
      'a.id',
      'h.name as host',
      'a.host_id',
      'a.t',
      'a.severity',
      'a.rule',
      'a.summary',
      'a.detail',
      'a.author',
      'a.source_table',
      'a.row_id',
      'a.pid',
      'a.batch_seq',
      'a.batch_hash',
    ]);
  if (opts.hosts) q = q.where('a.host_id', 'in', opts.hosts);
  if (opts.from !== undefined) q = q.where('a.t', '>=', opts.from);
  if (opts.to !== undefined) q = q.where('a.t', '<=', opts.to);
  const order = opts.order ?? 'desc';
  return Object.freeze(
    await q
      .orderBy('a.t', order)
      .orderBy('a.id', order)
      .limit(opts.limit ?? 500)
      .execute(),
  );
}
