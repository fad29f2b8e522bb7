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

/** One refused attempt: a batch the server would not store, or an enrollment it would not grant. */
export interface AuditRow {
  readonly time: number;
  /** batch | enrollment */
  readonly kind: string;
  readonly host_id: string | null;
  readonly remote: string | null;
  readonly code: string;
  readonly reason: string;
}

/** Every refusal on record, newest first: refused batches and refused enrollments. */
export async function listAudit(store: Store, opts: { limit?: number } = {}): Promise<readonly AuditRow[]> {
  const limit = opts.limit ?? 500;
  const batches = await store.db
    .selectFrom('refused_batches')
    .select(['received_at', 'host_id', 'seq', 'code', 'reason'])
    .orderBy('received_at', 'desc')
    .limit(limit)
    .execute();
  const enrollments = await store.db
    .selectFrom('enrollments')
    .select(['at', 'host_id', 'remote', 'method', 'reason'])
    .where('outcome', '=', 'refused')
    .orderBy('at', 'desc')
    .limit(limit)
    .execute();
  const rows: AuditRow[] = [
    ...batches.map((b) => ({
      time: b.received_at,
      kind: 'batch',
      host_id: b.host_id,
      remote: null,
      code: b.code,
      reason: b.seq === null ? b.reason : `batch ${b.seq}: ${b.reason}`,
    })),
    ...enrollments.map((e) => ({
      time: e.at,
      kind: 'enrollment',
      host_id: e.host_id,
      remote: e.remote,
      code: `enrollment by ${e.method}`,
      reason: e.reason ?? '',
    })),
  ];
  return Object.freeze(rows.sort((a, b) => b.time - a.time).slice(0, limit));
}
