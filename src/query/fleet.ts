import { sql } from 'kysely';
import type { Store } from '../store/index.js';
import { type HostRow, hostStates, listHosts } from './hosts.js';

/**
 * recording: batches arrive; late: none for longer than LATE_AFTER; silent: none for longer than
 * SILENT_AFTER (or never); revoked and pending as enrolled.
 */
export type HostStatus = 'recording' | 'late' | 'silent' | 'revoked' | 'pending' | 'waiting';

/** A recorder seals a batch every 5 s and sends it at once: minutes without one are worth a look. */
export const LATE_AFTER_US = 5 * 60_000_000;
export const SILENT_AFTER_US = 60 * 60_000_000;

/**
 * A host's recording status from when its last batch arrived alone: the fallback where the
 * recorder's own health records (hosts.ts `hostStates`, heartbeats and promises) say nothing.
 */
export function hostStatus(h: Pick<HostRow, 'status' | 'last_batch_at'>, now: number): HostStatus {
  if (h.status === 'revoked' || h.status === 'pending') return h.status;
  if (h.last_batch_at === null || now - h.last_batch_at > SILENT_AFTER_US) return 'silent';
  return now - h.last_batch_at > LATE_AFTER_US ? 'late' : 'recording';
}

/** One host on the fleet page. */
export interface FleetHost extends HostRow {
  readonly recording: HostStatus;
  /** Since when it is in that state (µs), when the health records tell. */
  readonly state_since: number | null;
  /** µs between the end of the record and now (how far behind the record is). */
  readonly lag: number | null;
  readonly batches: number;
  readonly gaps: number;
  readonly refused: number;
  readonly alerts: number;
  /** Records received per bucket over the activity window, oldest first. */
  readonly activity: readonly number[];
}

export interface FleetQuery {
  /** µs UTC; default now. */
  readonly now?: number;
  /** The activity sparkline covers this many µs before the end of each host's record. */
  readonly window?: number;
  readonly buckets?: number;
}

/**
 * Every host with what the fleet page flags: status, lag, counts of gaps, refused batches and
 * alerts, and its records per bucket over the last day of its record (from `batches`, which is
 * small: one row per batch, not per event).
 *
 * @example
 * for (const h of await fleetOverview(store)) console.log(h.name, h.recording, h.gaps);
 */
export async function fleetOverview(store: Store, opts: FleetQuery = {}): Promise<readonly FleetHost[]> {
  const now = opts.now ?? Date.now() * 1000;
  const window = opts.window ?? 86_400_000_000;
  const buckets = opts.buckets ?? 48;
  const hosts = await listHosts(store);
  const states = await hostStates(store, { now });
  const counts = async (table: 'gaps' | 'refused_batches' | 'alerts' | 'batches') => {
    const rows = await store.db
      .selectFrom(table)
      .select(['host_id', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('host_id')
      .execute();
    return new Map(rows.map((r) => [r.host_id, Number(r.n)]));
  };
  const [gaps, refused, alerts, batches] = [
    await counts('gaps'),
    await counts('refused_batches'),
    await counts('alerts'),
    await counts('batches'),
  ];
  const out: FleetHost[] = [];
  for (const h of hosts) {
    const end = h.last_seen ?? now;
    const start = end - window;
    const width = Math.ceil(window / buckets);
    const rows = await store.db
      .selectFrom('batches')
      .select([
        // Literals, not parameters: PostgreSQL must see the GROUP BY expression as the selected one.
        sql<number>`(t_from - ${sql.lit(start)}) / ${sql.lit(width)}`.as('bucket'),
        (eb) => eb.fn.sum<number>('record_count').as('n'),
      ])
      .where('host_id', '=', h.host_id)
      .where('t_from', '>=', start)
      .groupBy(sql`(t_from - ${sql.lit(start)}) / ${sql.lit(width)}`)
      .execute();
    const activity = new Array<number>(buckets).fill(0);
    for (const r of rows) {
      const b = Math.min(buckets - 1, Math.max(0, Math.floor(Number(r.bucket))));
      activity[b] += Number(r.n);
    }
    out.push(
      Object.freeze({
        ...h,
        recording: states.get(h.host_id)?.state ?? hostStatus(h, now),
        state_since: states.get(h.host_id)?.since ?? null,
        lag: h.last_seen === null ? null : Math.max(0, now - h.last_seen),
        batches: batches.get(h.host_id) ?? 0,
        gaps: gaps.get(h.host_id) ?? 0,
        refused: refused.get(h.host_id) ?? 0,
        alerts: alerts.get(h.host_id) ?? 0,
        activity: Object.freeze(activity),
      }),
    );
  }
  return Object.freeze(out);
}

/** A host's records over time, for the activity chart and its time-range brush. */
export interface ActivitySeries {
  readonly from: number;
  readonly to: number;
  /** Bucket width, µs. */
  readonly step: number;
  /** Records received per bucket, oldest first. */
  readonly counts: readonly number[];
  /** Every known hole in the record overlapping the range: drawn, never silently bridged. */
  readonly gaps: readonly { kind: string; from: number; to: number; detail: string; seq: number }[];
}

/**
 * Records per bucket between `from` and `to` (from the batches that carried them: a batch counts at
 * its start), and the gaps overlapping that range.
 */
export async function activitySeries(
  store: Store,
  hostId: string,
  range: { from: number; to: number; buckets?: number },
): Promise<ActivitySeries> {
  const buckets = range.buckets ?? 200;
  const step = Math.max(1, Math.ceil((range.to - range.from) / buckets));
  const rows = await store.db
    .selectFrom('batches')
    .select([
      sql<number>`(t_from - ${sql.lit(range.from)}) / ${sql.lit(step)}`.as('bucket'),
      (eb) => eb.fn.sum<number>('record_count').as('n'),
    ])
    .where('host_id', '=', hostId)
    .where('t_from', '>=', range.from)
    .where('t_from', '<=', range.to)
    .groupBy(sql`(t_from - ${sql.lit(range.from)}) / ${sql.lit(step)}`)
    .execute();
  const counts = new Array<number>(buckets).fill(0);
  for (const r of rows) counts[Math.min(buckets - 1, Math.floor(Number(r.bucket)))] += Number(r.n);
  const gapRows = await store.db
    .selectFrom('gaps')
    .select(['kind', 't_from', 't_to', 'at', 'detail', 'seq'])
    .where('host_id', '=', hostId)
    .where(sql<boolean>`coalesce(t_to, t_from, at) >= ${range.from}`)
    .where(sql<boolean>`coalesce(t_from, t_to, at) <= ${range.to}`)
    .orderBy('seq')
    .execute();
  return Object.freeze({
    from: range.from,
    to: range.to,
    step,
    counts: Object.freeze(counts),
    gaps: Object.freeze(
      gapRows.map((g) => ({
        kind: g.kind,
        from: Number(g.t_from ?? g.t_to ?? g.at),
        to: Number(g.t_to ?? g.t_from ?? g.at),
        detail: g.detail,
        seq: Number(g.seq),
      })),
    ),
  });
}
