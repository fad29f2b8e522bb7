import { type Kysely, type RawBuilder, sql } from 'kysely';
import type { Database, Store } from '../store/index.js';
import type { CompiledRule } from './compile.js';
import type { LogSource } from './logsources.js';
import { FieldSlots, LiveRow, type Predicate, rulePredicate, type Verdict } from './predicate.js';

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

/** As hunt, on any connection or transaction. */
export async function huntOn(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  q: HuntQuery,
): Promise<Alert[]> {
  if (q.hosts?.length === 0) return [];
  const alerts: Alert[] = [];
  for (const c of rules) {
    const s = c.source;
    const conds: RawBuilder<boolean>[] = [];
    if (q.hosts) conds.push(sql<boolean>`${s.hostId} in (${sql.join(q.hosts)})`);
    if (q.from !== undefined) conds.push(sql<boolean>`${s.time} >= ${q.from}`);
    if (q.to !== undefined) conds.push(sql<boolean>`${s.time} <= ${q.to}`);
    alerts.push(...(await ruleMatches(db, c, conds, q.limit)));
  }
  return alerts.sort((a, b) => a.time - b.time);
}

/** One rule's matches among the rows `conds` selects, in time order: the alert's columns and batch. */
async function ruleMatches(
  db: Kysely<Database>,
  c: CompiledRule,
  conds: readonly RawBuilder<boolean>[],
  limit: number,
): Promise<Alert[]> {
  const s = c.source;
  const where = [c.where, ...(s.base ? [sql<boolean>`${s.base}`] : []), ...conds];
  const pid = s.fields.ProcessId?.expr ?? sql`null`;
  const { rows } = await sql<
    Record<string, unknown>
  >`select ${s.time} as time, h.name as host, h.host_id as host_id, ${pid} as pid, b.seq as batch_seq, b.hash as batch_hash, ${s.columns} from ${s.from} where ${sql.join(where, sql` and `)} order by ${s.time}, ${s.id} limit ${limit}`.execute(
    db,
  );
  return rows.map((r) => toAlert(c, r));
}

/** The rules of one table, with their JavaScript tests over the fields they read. */
interface TablePlan {
  readonly source: LogSource;
  readonly slots: FieldSlots;
  readonly rules: readonly { readonly c: CompiledRule; readonly test: Predicate }[];
}

// A server passes the same rule list for every batch: its plan is made once.
const PLANS = new WeakMap<readonly CompiledRule[], TablePlan[]>();
function planOf(rules: readonly CompiledRule[]): TablePlan[] {
  let plan = PLANS.get(rules);
  if (plan === undefined) {
    const byTable = new Map<
      string,
      { source: LogSource; slots: FieldSlots; rules: TablePlan['rules'][number][] }
    >();
    for (const c of rules) {
      let t = byTable.get(c.source.table);
      if (t === undefined) {
        // The file categories (file_event, file_create, file_access) read the same fields of one table.
        t = { source: c.source, slots: new FieldSlots(), rules: [] };
        byTable.set(c.source.table, t);
      }
      t.rules.push({ c, test: rulePredicate(c, t.slots) });
    }
    plan = [...byTable.values()];
    PLANS.set(rules, plan);
  }
  return plan;
}

/** One table's rows opened by a batch, in time order, and each rule's in-memory verdict on each. */
interface BatchTable {
  readonly source: LogSource;
  readonly ids: readonly unknown[];
  readonly verdicts: readonly { readonly c: CompiledRule; readonly verdicts: readonly Verdict[] }[];
}

/**
 * Reads the rows one batch opened, once per table and only the fields the rules use, and tests
 * every rule on them in memory (predicate.ts).
 */
async function testBatch(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  batch: { readonly hostId: string; readonly seq: number },
): Promise<BatchTable[]> {
  const out: BatchTable[] = [];
  const first = batch.seq * ORD_PER_BATCH;
  for (const { source: s, slots, rules: tests } of planOf(rules)) {
    const conds = [
      sql<boolean>`${s.hostId} = ${batch.hostId}`,
      sql<boolean>`${s.ord} >= ${first} and ${s.ord} < ${first + ORD_PER_BATCH}`,
    ];
    if (s.base) conds.push(sql<boolean>`${s.base}`);
    const fields = slots.names.map((name, i) => sql`${s.fields[name].expr} as ${sql.raw(`f${i}`)}`);
    const { rows } = await sql<
      Record<string, unknown>
    >`select ${s.id} as id, ${s.time} as time${fields.length ? sql`, ${sql.join(fields)}` : sql``} from ${s.scan} where ${sql.join(conds, sql` and `)}`.execute(
      db,
    );
    if (rows.length === 0) continue;
    // In time order, so the first `limit` candidates of a rule are its first matches.
    rows.sort((a, b) => Number(a.time) - Number(b.time) || Number(a.id) - Number(b.id));
    const lower = tests[0].c.caps.lowerText;
    const live = rows.map(
      (r) =>
        new LiveRow(
          slots.names.map((_, i) => r[`f${i}`]),
          lower,
        ),
    );
    out.push({
      source: s,
      ids: rows.map((r) => r.id),
      verdicts: tests.map(({ c, test }) => ({ c, verdicts: live.map(test) })),
    });
  }
  return out;
}

/**
 * Each rule's in-memory verdict on each row one batch opened (true, false, or null: SQL decides),
 * before any SQL confirms it: tests hold it against the rule's SQL row by row.
 */
export async function liveVerdicts(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  batch: { readonly hostId: string; readonly seq: number },
): Promise<{ readonly rule: CompiledRule; readonly id: number; readonly verdict: Verdict }[]> {
  return (await testBatch(db, rules, batch)).flatMap((t) =>
    t.verdicts.flatMap(({ c, verdicts }) =>
      verdicts.map((verdict, i) => ({ rule: c, id: Number(t.ids[i]), verdict })),
    ),
  );
}

/** Ids per confirming query (well under both engines' parameter limits). */
const CONFIRM_CHUNK = 500;

/**
 * The rules on the rows one batch opened, at most `limit` matches per rule. Live detection runs
 * this for every batch: the rules are tested in memory on those rows (testBatch), and only the rows
 * a rule may match are read again, by that rule's SQL — so an alert is exactly what `hunt` finds for
 * that row, and a batch that matches nothing costs one query per table whatever the number of rules.
 */
export async function huntBatchOn(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  batch: { readonly hostId: string; readonly seq: number },
  limit: number,
): Promise<Alert[]> {
  const alerts: Alert[] = [];
  for (const { source: s, ids, verdicts: tests } of await testBatch(db, rules, batch)) {
    for (const { c, verdicts } of tests) {
      const maybe = ids.filter((_, i) => verdicts[i] !== false);
      let found = 0;
      for (let i = 0; i < maybe.length && found < limit; i += CONFIRM_CHUNK) {
        const chunk = maybe.slice(i, i + CONFIRM_CHUNK);
        const matched = await ruleMatches(
          db,
          c,
          [sql<boolean>`${s.id} in (${sql.join(chunk)})`],
          limit - found,
        );
        found += matched.length;
        alerts.push(...matched);
      }
    }
  }
  return alerts.sort((a, b) => a.time - b.time);
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
