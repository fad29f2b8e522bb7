import type { Store } from '../store/index.js';

/** One alert as stored (detection rules write them; shown as they are). */
export interface AlertRow {
  readonly id: number;
  readonly host: string;
  readonly host_id: string;
  readonly t: number;
  readonly severity: string;
  readonly rule: string;
  readonly summary: string;
  readonly detail: string | null;
}

/** Alerts, newest first. */
export async function listAlerts(
  store: Store,
  opts: { hosts?: readonly string[]; limit?: number } = {},
): Promise<readonly AlertRow[]> {
  if (opts.hosts?.length === 0) return [];
  let q = store.db
    .selectFrom('alerts as a')
    .innerJoin('hosts as h', 'h.host_id', 'a.host_id')
    .select(['a.id', 'h.name as host', 'a.host_id', 'a.t', 'a.severity', 'a.rule', 'a.summary', 'a.detail']);
  if (opts.hosts) q = q.where('a.host_id', 'in', opts.hosts);
  return Object.freeze(
    await q
      .orderBy('a.t', 'desc')
      .limit(opts.limit ?? 500)
      .execute(),
  );
}
