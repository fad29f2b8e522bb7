import { type Kysely, sql } from 'kysely';
import type { Database, Store } from '../store/index.js';
import type { CompiledRule } from './compile.js';
import type { LogSource } from './logsources.js';

export interface HuntQuery {
  /** Host ids (resolved by the caller); undefined: every host. */
  readonly hosts?: readonly string[];
  /** Window on the event's time (process start, endpoint or file first seen), µs, inclusive. */
  readonly from?: number;
  readonly to?: number;
  /** At most this many matches per rule. */
  readonly limit: number;
  /** Only rows this batch of this host opened (live alerts at ingest). */
  readonly batch?: { readonly hostId: string; readonly seq: number };
}

/** open_ord is seq × ORD_PER_BATCH + record index (docs/schema.md "Order"). */
const ORD_PER_BATCH = 1_000_000;

/** One match: which rule (with its author, as its licence asks), which row, and the batch behind it. */
export interface Alert {
  readonly time: number;
  readonly host: string;
  readonly pid: number | null;
  readonly rule_id: string;
  readonly title: string;
  readonly level: string | null;
  readonly author: string;
  /** The batch that recorded the row (`pofr verify` re-checks it; batch_evidence holds it as received). */
  readonly batch_seq: number | null;
  readonly batch_hash: string | null;
  readonly host_id: string;
  /** processes, endpoints or file_opens: where the matched row lives. */
  readonly table: LogSource['table'];
  readonly [column: string]: unknown;
}

/**
 * Runs each compiled rule over the stored history, one parameterised query per rule, and returns
 * the matches in time order.
 *
 * @example
 * const alerts = await hunt(store, compiled, { limit: 1000 });
 */
export async function hunt(store: Store, rules: readonly CompiledRule[], q: HuntQuery): Promise<Alert[]> {
  return huntOn(store.db, rules, q);
}

/** As hunt, on any connection or transaction (ingest runs it inside the batch's transaction). */
export async function huntOn(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  q: HuntQuery,
): Promise<Alert[]> {
  if (q.hosts?.length === 0) return [];
  const alerts: Alert[] = [];
  for (const c of rules) {
    const s = c.source;
    const conds = [c.where];
    if (s.base) conds.push(sql<boolean>`${s.base}`);
    if (q.hosts) conds.push(sql<boolean>`${s.hostId} in (${sql.join(q.hosts)})`);
    if (q.from !== undefined) conds.push(sql<boolean>`${s.time} >= ${q.from}`);
    if (q.to !== undefined) conds.push(sql<boolean>`${s.time} <= ${q.to}`);
    if (q.batch) {
      const first = q.batch.seq * ORD_PER_BATCH;
      conds.push(sql<boolean>`${s.hostId} = ${q.batch.hostId}`);
      conds.push(sql<boolean>`${s.ord} >= ${first} and ${s.ord} < ${first + ORD_PER_BATCH}`);
    }
    const pid = s.fields.ProcessId?.expr ?? sql`null`;
    const { rows } = await sql<
      Record<string, unknown>
    >`select ${s.time} as time, h.name as host, h.host_id as host_id, ${pid} as pid, b.seq as batch_seq, b.hash as batch_hash, ${s.columns} from ${s.from} where ${sql.join(conds, sql` and `)} order by ${s.time}, ${s.id} limit ${q.limit}`.execute(
      db,
    );
    for (const r of rows) {
      const { time, host, host_id, pid: p, batch_seq, batch_hash, ...row } = r;
      alerts.push({
        time: Number(time),
        host: String(host),
        pid: p === null ? null : Number(p),
        rule_id: c.rule.id,
        title: c.rule.title,
        level: c.rule.level,
        author: c.rule.author,
        batch_seq: batch_seq === null ? null : Number(batch_seq),
        batch_hash: batch_hash === null ? null : String(batch_hash),
        host_id: String(host_id),
        table: s.table,
        ...numbersOf(row),
      });
    }
  }
  return alerts.sort((a, b) => a.time - b.time);
}

// PostgreSQL returns bigint columns as strings; the ids and numbers of a row are numbers in both.
const NUMERIC = new Set([
  'process_id',
  'endpoint_id',
  'file_id',
  'start_ticks',
  'exec_index',
  'ppid',
  'ruid',
  'euid',
  'local_port',
  'remote_port',
  'fd',
  'is_open',
]);
function numbersOf(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k] = NUMERIC.has(k) && v !== null ? Number(v) : v;
  return out;
}
