import { type Kysely, sql } from 'kysely';
import type { Database, Store } from '../store/index.js';
import { type CompiledRule, compileRule } from './compile.js';
import type { LogSource } from './logsources.js';

export interface HuntQuery {
  /** Host ids (resolved by the caller); undefined: every host. */
  readonly hosts?: readonly string[];
  /** Window on the event's time (process start, endpoint or file first seen), µs, inclusive. */
  readonly from?: number;
  readonly to?: number;
  /** At most this many matches per rule. */
  readonly limit: number;
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
    const pid = s.fields.ProcessId?.expr ?? sql`null`;
    const { rows } = await sql<
      Record<string, unknown>
    >`select ${s.time} as time, h.name as host, h.host_id as host_id, ${pid} as pid, b.seq as batch_seq, b.hash as batch_hash, ${s.columns} from ${s.from} where ${sql.join(conds, sql` and `)} order by ${s.time}, ${s.id} limit ${q.limit}`.execute(
      db,
    );
    for (const r of rows) alerts.push(toAlert(c, r));
  }
  return alerts.sort((a, b) => a.time - b.time);
}

/**
 * The rules on the rows one batch opened, one query per logsource (each rule a boolean column of
 * it) rather than one per rule: live detection runs this for every batch, so its cost is a few
 * indexed queries whatever the number of rules. At most `limit` matches per rule.
 */
export async function huntBatchOn(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  batch: { readonly hostId: string; readonly seq: number },
  limit: number,
): Promise<Alert[]> {
  const bySource = new Map<LogSource, CompiledRule[]>();
  for (const r of rules) {
    const c = viewRule(r);
    if (c === null) continue;
    bySource.set(c.source, [...(bySource.get(c.source) ?? []), c]);
  }
  const alerts: Alert[] = [];
  const first = batch.seq * ORD_PER_BATCH;
  for (const [view, group] of bySource) {
    const s = view.origin!;
    const conds = [
      sql<boolean>`${s.hostId} = ${batch.hostId}`,
      sql<boolean>`${s.ord} >= ${first} and ${s.ord} < ${first + ORD_PER_BATCH}`,
    ];
    if (s.base) conds.push(sql<boolean>`${s.base}`);
    const fieldColumns = Object.entries(s.fields).flatMap(([name, f]) => [
      sql`${f.expr} as ${sql.raw(`"f_${name}"`)}`,
      ...(f.type === 'text' ? [sql`lower(cast(${f.expr} as text)) as ${sql.raw(`"l_${name}"`)}`] : []),
    ]);
    const flags = group.map((c, i) => sql`(${c.where}) as ${sql.raw(`m_${i}`)}`);
    const pid = s.fields.ProcessId?.expr ?? sql`null`;
    const { rows } = await sql<
      Record<string, unknown>
    >`with v as materialized (select ${s.time} as time, ${s.id} as row_order, h.name as host, h.host_id as host_id, ${pid} as pid, b.seq as batch_seq, b.hash as batch_hash, ${s.columns}, ${sql.join(fieldColumns)} from ${s.from} where ${sql.join(conds, sql` and `)}) select v.*, ${sql.join(flags)} from v order by v.time, v.row_order`.execute(
      db,
    );
    const counts = group.map(() => 0);
    for (const r of rows) {
      const row: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r)) if (!/^(m_\d+|[fl]_.*|row_order)$/.test(k)) row[k] = v;
      group.forEach((c, i) => {
        const hit = r[`m_${i}`];
        // SQLite answers 1/0, PostgreSQL true/false; NULL (unknown) is no match.
        if ((hit === true || Number(hit) === 1) && counts[i] < limit) {
          counts[i]++;
          alerts.push(toAlert(c, row));
        }
      });
    }
  }
  return alerts.sort((a, b) => a.time - b.time);
}

// Each rule compiled once more against its logsource's batch view, remembered per compiled rule.
const VIEW_RULES = new WeakMap<CompiledRule, CompiledRule | null>();
function viewRule(c: CompiledRule): CompiledRule | null {
  if (c.source.origin) return c;
  let v = VIEW_RULES.get(c);
  if (v === undefined) {
    const r = compileRule(c.rule, c.caps, { batchView: true });
    v = r.status === 'ok' ? r : null;
    VIEW_RULES.set(c, v);
  }
  return v;
}

function toAlert(c: CompiledRule, r: Record<string, unknown>): Alert {
  const { time, host, host_id, pid: p, batch_seq, batch_hash, ...row } = r;
  return {
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
    table: c.source.table,
    ...numbersOf(row),
  };
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
