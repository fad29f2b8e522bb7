import { type Kysely, type RawBuilder, sql } from 'kysely';
import type { CursorStatements, Database, Store } from '../store/index.js';
import type { CompiledRule } from './compile.js';
import type { LogSource } from './logsources.js';
import { FieldSlots, LiveRow, type RuleTest, rulePredicate, type Verdict } from './predicate.js';
import { Prefilter, ruleAnchors } from './prefilter.js';
import { knownRows, type WrittenRows } from './written-rows.js';

export interface HuntQuery {
  /** Host ids (resolved by the caller); undefined: every host. */
  readonly hosts?: readonly string[];
  /** Window on the event's time (process start, endpoint or file first seen), µs, inclusive. */
  readonly from?: number;
  readonly to?: number;
  /** At most this many matches per rule. */
  readonly limit: number;
  /** Rows per query of a table scan; default PAGE (tests make it small to cross pages). */
  readonly pageRows?: number;
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
 * Runs the compiled rules over the stored history and returns the matches in time order, at most
 * `q.limit` per rule. Each table is read once for all its rules (matchRules), not once per rule.
 *
 * @example
 * const alerts = await hunt(store, compiled, { limit: 1000 });
 */
export async function hunt(store: Store, rules: readonly CompiledRule[], q: HuntQuery): Promise<Alert[]> {
  const settings = store.caps.bulkReadSettings;
  if (settings.length === 0) return huntOn(store.db, rules, q);
  // One read-only transaction, for the engine's settings of a long read (capabilities.ts); its one
  // snapshot also makes every table's scan see the same history.
  return store.db.transaction().execute(async (trx) => {
    for (const s of settings) await s.execute(trx);
    return huntOn(trx, rules, q);
  });
}

/** As hunt, on any connection or transaction. */
export async function huntOn(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  q: HuntQuery,
): Promise<Alert[]> {
  if (q.hosts?.length === 0) return [];
  // A rule whose test can say "unknown" (a regex only the engine runs) would send most rows of the
  // history to SQL one chunk at a time: it runs as its own query instead.
  const plan = planOf(rules);
  // Where a table is streamed through a cursor, the engine decides such a rule as a column of the
  // stream (streamTable): one read of the table for every rule.
  const streamed = rules[0]?.caps.cursor != null;
  const inMemory = streamed
    ? plan
    : planOf(plan.flatMap((t) => t.rules.filter((r) => r.exact).map((r) => r.c)));
  const bySql = streamed ? [] : plan.flatMap((t) => t.rules.filter((r) => !r.exact).map((r) => r.c));
  const alerts = [
    ...(await matchRules(
      db,
      inMemory,
      (s) => ({ where: windowOf(s, q), page: q.pageRows ?? PAGE }),
      q.limit,
    )),
    ...(await huntSql(db, bySql, q)),
  ];
  return alerts.sort((a, b) => a.time - b.time);
}

/**
 * The same answer as hunt, one SQL query per rule (the rule's compiled WHERE over the whole
 * history): what the in-memory tests are held against, and how a rule that cannot be decided in
 * memory runs.
 */
export async function huntSql(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  q: HuntQuery,
): Promise<Alert[]> {
  if (q.hosts?.length === 0) return [];
  const alerts: Alert[] = [];
  for (const c of rules) alerts.push(...(await ruleMatches(db, c, windowOf(c.source, q), q.limit)));
  return alerts.sort((a, b) => a.time - b.time);
}

function windowOf(s: LogSource, q: HuntQuery): RawBuilder<boolean>[] {
  const conds: RawBuilder<boolean>[] = [];
  if (q.hosts) conds.push(sql<boolean>`${s.hostId} in (${sql.join(q.hosts)})`);
  if (q.from !== undefined) conds.push(sql<boolean>`${s.time} >= ${q.from}`);
  if (q.to !== undefined) conds.push(sql<boolean>`${s.time} <= ${q.to}`);
  return conds;
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
  readonly rules: readonly PlannedRule[];
  /** The rules indexed by their anchors: which of them a row is worth testing on. */
  readonly prefilter: Prefilter;
  /**
   * Where every rule that reads a `dear` field (logsources.ts) has anchors among the others: the
   * prefilter over those anchors, so a hunt reads the dear fields only for the rows it sends to
   * such a rule. Null: the table is read with every field at once.
   */
  readonly cheap: { readonly prefilter: Prefilter; readonly dear: readonly boolean[] } | null;
  /** The rules the engine decides in a stream (flaggedRules). */
  readonly flagged: readonly number[];
}

interface PlannedRule extends RuleTest {
  readonly c: CompiledRule;
}

// A server passes the same rule list for every batch: its plan is made once.
const PLANS = new WeakMap<readonly CompiledRule[], TablePlan[]>();
function planOf(rules: readonly CompiledRule[]): TablePlan[] {
  let plan = PLANS.get(rules);
  if (plan === undefined) {
    const byTable = new Map<
      string,
      { source: LogSource; slots: FieldSlots; rules: PlannedRule[]; c: CompiledRule[] }
    >();
    for (const c of rules) {
      let t = byTable.get(c.source.table);
      if (t === undefined) {
        // The file categories (file_event, file_create, file_access) read the same fields of one table.
        t = { source: c.source, slots: new FieldSlots(), rules: [], c: [] };
        byTable.set(c.source.table, t);
      }
      t.rules.push({ c, ...rulePredicate(c, t.slots) });
      t.c.push(c);
    }
    plan = [...byTable.values()].map(({ source, slots, rules: planned, c }) => {
      const anchors = c.map((r) => ruleAnchors(r, slots));
      const cheapAnchors = c.map((r) => ruleAnchors(r, slots, true));
      const dear = c.map((r) => readsDear(r));
      const cheap = dear.every((d, i) => !d || cheapAnchors[i] !== null)
        ? { prefilter: new Prefilter(cheapAnchors), dear }
        : null;
      const flagged = planned.flatMap((r, i) => (r.exact ? [] : [i]));
      return { source, slots, rules: planned, prefilter: new Prefilter(anchors), cheap, flagged };
    });
    PLANS.set(rules, plan);
  }
  return plan;
}

/** Whether a rule reads a field its logsource reads through a join or subquery (`dear`). */
function readsDear(c: CompiledRule): boolean {
  const maps = Object.values(c.rule.searches).flatMap((v) => (Array.isArray(v) ? v : [v]));
  return maps.some(
    (m) =>
      typeof m === 'object' &&
      m !== null &&
      Object.keys(m).some((k) => c.source.fields[k.split('|')[0]]?.dear === true),
  );
}

/** Which rows of a table: a window of the history (read a page at a time), or one batch's. */
interface RowSet {
  readonly where: RawBuilder<boolean>[];
  /** Rows per query, in id order; null: all at once. */
  readonly page: number | null;
  /** The rows, already read (readBatchRows): no query. */
  readonly read?: ScannedRow[];
}

/** The capabilities of the store a table's rules were compiled for. */
const capsOf = (t: TablePlan) => t.rules[0].c.caps;

/** Rows read per query of a table scan (memory stays bounded over any history). */
const PAGE = 20_000;

/** One row of a scan: its id, time and the field values by slot (a dear one undefined until read). */
interface ScannedRow {
  readonly id: unknown;
  readonly time: number;
  readonly values: unknown[];
}

/** Ids per query that reads the dear fields of some rows of a page (under both parameter limits). */
const DEAR_CHUNK = 2_000;

/**
 * Reads the rows `where` selects, PAGE at a time in id order and only the fields the table's rules
 * use (the same SQL expressions hunt's queries use), and hands each page to `visit`. With `cheap`,
 * a page holds only the fields that are not dear (from the logsource's cheapScan, no joins);
 * `readDear` then adds the others to the rows that need them.
 */
async function scanTable(
  db: Kysely<Database>,
  t: TablePlan,
  { where, page: pageRows, read: given }: RowSet,
  cheapNow: () => boolean,
  visit: (rows: ScannedRow[]) => Promise<void>,
): Promise<void> {
  if (given !== undefined) return visit(given);
  const s = t.source;
  const conds = [...where, ...(s.base ? [sql<boolean>`${s.base}`] : [])];
  const cursor = t.rules[0]?.c.caps.cursor ?? null;
  if (pageRows !== null && cursor !== null) return streamTable(db, t, cursor, conds, pageRows, visit);
  let after: unknown = null;
  for (;;) {
    // Asked per page: a scan may give up reading the dear fields last (matchRules).
    const cheap = cheapNow();
    const read = t.slots.names.flatMap((name, i) => (cheap && s.fields[name].dear ? [] : [i]));
    const fields = read.map((i) => sql`${s.fields[t.slots.names[i]].expr} as ${sql.raw(`f${i}`)}`);
    const page = after === null ? conds : [...conds, sql<boolean>`${s.id} > ${after}`];
    // One batch's rows are read at once, through the open_ord index (an ORDER BY id could lead the
    // planner to walk the whole table in id order instead).
    const tail = pageRows === null ? sql`` : sql` order by ${s.id} limit ${pageRows}`;
    const { rows } = await sql<
      Record<string, unknown>
    >`select ${s.id} as id, ${s.time} as time${fields.length ? sql`, ${sql.join(fields)}` : sql``} from ${cheap ? s.cheapScan : s.scan}${page.length ? sql` where ${sql.join(page, sql` and `)}` : sql``}${tail}`.execute(
      db,
    );
    await visit(scannedRows(rows, t.slots.names.length, read));
    if (pageRows === null || rows.length < pageRows) return;
    after = rows[rows.length - 1].id;
  }
}

/** The values of a scan's row from the columns `f<slot>` of the slots in `read`. */
function scannedRows(
  rows: readonly Record<string, unknown>[],
  slots: number,
  read: readonly number[],
): ScannedRow[] {
  const out: ScannedRow[] = new Array(rows.length);
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k];
    const values = new Array<unknown>(slots);
    for (const i of read) values[i] = r[`f${i}`];
    out[k] = { id: r.id, time: Number(r.time), values };
  }
  return out;
}

/**
 * As scanTable's pages, from one query through a server-side cursor (Capabilities.cursor): every
 * field at once, joins planned for the whole table, in no particular order (a hunt keeps each
 * rule's first matches in time order whatever order the rows come in). The next chunk is asked for
 * before this one is tested, so the engine reads while JavaScript tests.
 */
async function streamTable(
  db: Kysely<Database>,
  t: TablePlan,
  cursor: CursorStatements,
  conds: readonly RawBuilder<boolean>[],
  chunkRows: number,
  visit: (rows: ScannedRow[]) => Promise<void>,
): Promise<void> {
  // A cursor lives in a transaction, on its one connection.
  if (!db.isTransaction)
    return db.transaction().execute((trx) => streamTable(trx, t, cursor, conds, chunkRows, visit));
  const s = t.source;
  const slots = t.slots.names.length;
  // Each rule the engine decides (its test can say null) as one more value after the fields:
  // 1 where its SQL holds. Its cheap conditions come first in its WHERE, so most rows cost no regex.
  const flagged = flaggedRules(t);
  const read = [...t.slots.names.map((_n, i) => i), ...flagged.map((_r, k) => slots + k)];
  const fields = [
    ...t.slots.names.map((name, i) => sql`${s.fields[name].expr} as ${sql.raw(`f${i}`)}`),
    ...flagged.map(
      (r, k) => sql`case when ${t.rules[r].c.where} then 1 else 0 end as ${sql.raw(`f${slots + k}`)}`,
    ),
  ];
  const name = `pofr_hunt_${s.table}`;
  await cursor
    .open(
      name,
      sql`select ${s.id} as id, ${s.time} as time${fields.length ? sql`, ${sql.join(fields)}` : sql``} from ${s.scan}${conds.length ? sql` where ${sql.join(conds, sql` and `)}` : sql``}`,
    )
    .execute(db);
  const fetch = () => {
    const p = cursor.fetch(name, chunkRows).execute(db);
    // Awaited below; if a test throws first, the transaction's failure is the error, not this.
    p.catch(() => {});
    return p;
  };
  let next = fetch();
  for (;;) {
    const { rows } = await next;
    const more = rows.length >= chunkRows;
    if (more) next = fetch();
    await visit(scannedRows(rows, read.length, read));
    if (!more) break;
  }
  await cursor.close(name).execute(db);
}

/**
 * The rules of a table that a stream asks the engine about on every row: those whose in-memory test
 * may say null (a regex only the engine runs). Each rule's cheap conditions come first in its SQL,
 * so most rows cost no regex; confirming the candidates after the scan instead (readMatches) cost
 * more on the 10 M store (every curl process is a candidate of one rule: 17 s against 12 s).
 */
const flaggedRules = (t: TablePlan): readonly number[] => t.flagged;

/** Fills in the dear fields of `rows` (read by cheap scan), by their ids, a chunk per query. */
async function readDear(db: Kysely<Database>, t: TablePlan, rows: readonly ScannedRow[]): Promise<void> {
  const s = t.source;
  const dear = t.slots.names.flatMap((name, i) => (s.fields[name].dear ? [i] : []));
  if (dear.length === 0) return;
  const fields = dear.map((i) => sql`${s.fields[t.slots.names[i]].expr} as ${sql.raw(`f${i}`)}`);
  for (let k = 0; k < rows.length; k += DEAR_CHUNK) {
    const chunk = rows.slice(k, k + DEAR_CHUNK);
    const { rows: read } = await sql<
      Record<string, unknown>
    >`select ${s.id} as id, ${sql.join(fields)} from ${s.scan} where ${s.id} in (${sql.join(chunk.map((r) => r.id))})`.execute(
      db,
    );
    const byId = new Map(read.map((r) => [String(r.id), r]));
    for (const r of chunk) {
      const got = byId.get(String(r.id));
      // The same transaction's rows: only a row the full scan's inner joins leave out is missing;
      // its dear fields stay null, as SQL reads them nowhere.
      for (const i of dear) r.values[i] = got === undefined ? null : got[`f${i}`];
    }
  }
}

interface Candidate {
  readonly id: unknown;
  readonly time: number;
}

const byTime = (a: Candidate, b: Candidate) => a.time - b.time || Number(a.id) - Number(b.id);

/** The first `limit` rows in time order of those added, in bounded memory. */
class TopRows {
  private kept: Candidate[] = [];
  constructor(private readonly limit: number) {}

  add(c: Candidate): void {
    this.kept.push(c);
    if (this.kept.length >= 2 * this.limit + 8) this.kept = this.rows();
  }

  rows(): Candidate[] {
    return this.kept.sort(byTime).slice(0, this.limit);
  }
}

/** The field values of a row as one string, equal for two rows exactly when every rule gives both
 * the same verdict: each value as its text, length first so none runs into the next; NULL as "-",
 * which no length starts with. */
function valuesKey(values: readonly unknown[]): string {
  let k = '';
  for (const v of values) {
    if (v === null || v === undefined) k += '-';
    else {
      const t = String(v);
      k += `${t.length}:${t}`;
    }
  }
  return k;
}

/** Distinct field-value sets whose verdicts a scan remembers (then it starts again). */
const MEMO_ENTRIES = 100_000;

/**
 * Live detection keeps the verdicts from batch to batch (a host runs the same programs all day),
 * fewer of them: a server holds them for as long as it runs.
 */
const LIVE_MEMO_ENTRIES = 20_000;
const LIVE_MEMOS = new WeakMap<readonly PlannedRule[], Map<string, readonly number[]>>();
function liveMemoOf(rules: readonly PlannedRule[]): Memo {
  let m = LIVE_MEMOS.get(rules);
  if (m === undefined) {
    m = new Map();
    LIVE_MEMOS.set(rules, m);
  }
  return { map: m, max: LIVE_MEMO_ENTRIES };
}

/** Lookups after which a scan judges whether remembering verdicts pays. */
const MEMO_TRIAL = 8_192;

/** Counts a scan's memo lookups and turns it off when under a quarter of MEMO_TRIAL found one. */
class MemoUse {
  on = true;
  private tries = 0;
  private found = 0;

  count(found: boolean): void {
    this.tries++;
    if (found) this.found++;
    if (this.tries === MEMO_TRIAL && this.found * 4 < MEMO_TRIAL) this.on = false;
  }
}

/** The verdicts remembered by field values (rule i as i, a match, or ~i: the engine decides). */
interface Memo {
  readonly map: Map<string, readonly number[]>;
  readonly max: number;
}

/**
 * Ids per confirming query (well under both engines' parameter limits: 32,766 and 65,535). Large:
 * PostgreSQL may join each chunk's rows to their parents by walking a whole index (a partition
 * without statistics), so each chunk costs about the same whatever its size.
 */
const CONFIRM_CHUNK = 5_000;

/**
 * Every rule of `plan` on the rows `where(source)` selects: each table is read once (scanTable)
 * and every rule tested on each row in memory (predicate.ts); the rows some rule matches are read
 * again, once for all the rules (readMatches), for the alert's columns and batch — so rows no rule
 * can match cost no query, and a batch with matches one more query per table, not one per rule.
 */
async function matchRules(
  db: Kysely<Database>,
  plan: readonly TablePlan[],
  rowsOf: (s: LogSource) => RowSet,
  limit: number,
  memoOf?: (rules: readonly PlannedRule[]) => Memo,
): Promise<Alert[]> {
  const { found, batchRead } = await findMatches(db, plan, rowsOf, limit, memoOf);
  return readAllMatches(db, found, limit, !batchRead);
}

/** matchRules before the matches are read: per table, the rows each rule matches. */
async function findMatches(
  db: Kysely<Database>,
  plan: readonly TablePlan[],
  rowsOf: (s: LogSource) => RowSet,
  limit: number,
  memoOf: (rules: readonly PlannedRule[]) => Memo = () => ({ map: new Map(), max: MEMO_ENTRIES }),
): Promise<{ found: TableMatches[]; batchRead: boolean }> {
  const found: TableMatches[] = [];
  let batchRead = false;
  for (const t of plan) {
    if (t.rules.length === 0) continue;
    // Per rule: the rows it matches (kept to the first `limit` in time order: no later one can be
    // among its first `limit` matches), and the rows only SQL can decide.
    const sure = t.rules.map(() => new TopRows(limit));
    const unsure = t.rules.map(() => [] as Candidate[]);
    const lower = capsOf(t).lowerText;
    const rows = rowsOf(t.source);
    batchRead = rows.page === null;
    // A hunt whose rules allow it reads the dear fields (a parent's, a looked-up name) only for
    // the rows the anchors of the rules that read them keep; one batch's rows are read at once.
    // A scan through a cursor reads every field at once: the engine then joins the whole table.
    const cheap = rows.page !== null && capsOf(t).cursor === null ? t.cheap : null;
    const prefilter = cheap?.prefilter ?? t.prefilter;
    // Rows repeat their fields (the same daemons, cron jobs and scripts all day): the rules' answer
    // for a set of field values is remembered, so each distinct set is tested once.
    const { map: memo, max } = memoOf(t.rules);
    // Where rows hardly repeat (connections: addresses and ports), remembering costs more than it
    // saves (a key per row, and the collector): a scan that reuses under a quarter of its first
    // MEMO_TRIAL verdicts stops remembering.
    const full = new MemoUse();
    // A streamed scan holds the engine's verdict of each such rule after the fields (streamTable).
    const flagAt = new Map<number, number>();
    if (rows.page !== null && capsOf(t).cursor !== null)
      for (const [k, r] of flaggedRules(t).entries()) flagAt.set(r, t.slots.names.length + k);
    const test = (values: unknown[]): readonly number[] => {
      const row = new LiveRow(values, lower);
      // Rule i as i (a match) or ~i (SQL decides).
      // Once every field is read at once, the anchors chosen without regard to cost of reading.
      return (dearLast ? prefilter : t.prefilter).candidates(row).flatMap((i) => {
        const v = t.rules[i].test(row);
        if (v !== null) return v ? [i] : [];
        const at = flagAt.get(i);
        return at === undefined ? [~i] : Number(values[at]) === 1 ? [i] : [];
      });
    };
    const hitsOf = (values: unknown[]): readonly number[] => {
      if (!full.on) return test(values);
      const key = valuesKey(values);
      let hits = memo.get(key);
      full.count(hits !== undefined);
      if (hits === undefined) {
        hits = test(values);
        if (memo.size >= max) memo.clear();
        memo.set(key, hits);
      }
      return hits;
    };
    const keep = (r: ScannedRow, hits: readonly number[]) => {
      for (const i of hits) {
        if (i >= 0) sure[i].add({ id: r.id, time: r.time });
        else unsure[~i].push({ id: r.id, time: r.time });
      }
    };
    // By the fields that are not dear: the hits, or null when a rule that reads dear ones is a
    // candidate (the row's dear fields are then read, and every rule tested on the whole row).
    const cheapMemo = new Map<string, readonly number[] | null>();
    const cheapUse = new MemoUse();
    // Where a quarter of a page or more needs its dear fields, reading them by id costs more than
    // the join did (PostgreSQL plans each list of ids over every partition): the rest of the
    // scan reads every field at once.
    let dearLast = cheap !== null;
    await scanTable(
      db,
      t,
      rows,
      () => dearLast,
      async (page) => {
        if (cheap === null || !dearLast) {
          for (const r of page) keep(r, hitsOf(r.values));
          return;
        }
        const later: ScannedRow[] = [];
        const cheapTest = (values: unknown[]): readonly number[] | null => {
          const row = new LiveRow(values, lower);
          const candidates = prefilter.candidates(row);
          return candidates.some((i) => cheap.dear[i])
            ? null
            : candidates.flatMap((i) => {
                const v = t.rules[i].test(row);
                return v === true ? [i] : v === null ? [~i] : [];
              });
        };
        for (const r of page) {
          let hits: readonly number[] | null | undefined;
          if (cheapUse.on) {
            const key = valuesKey(r.values);
            hits = cheapMemo.get(key);
            cheapUse.count(hits !== undefined);
            if (hits === undefined) {
              hits = cheapTest(r.values);
              if (cheapMemo.size >= MEMO_ENTRIES) cheapMemo.clear();
              cheapMemo.set(key, hits);
            }
          } else hits = cheapTest(r.values);
          if (hits === null) later.push(r);
          else keep(r, hits);
        }
        await readDear(db, t, later);
        for (const r of later) keep(r, hitsOf(r.values));
        if (later.length * 4 >= page.length) dearLast = false;
      },
    );
    found.push({ t, sure: sure.map((s) => s.rows()), unsure });
  }
  return { found, batchRead };
}

/** One table's matches before they are read: per rule, the rows it matches and those SQL decides. */
interface TableMatches {
  readonly t: TablePlan;
  readonly sure: readonly (readonly Candidate[])[];
  readonly unsure: readonly (readonly Candidate[])[];
}

/** The ids of a table's matched rows, each once. */
function matchedIds(m: TableMatches): unknown[] {
  const ids = new Set<unknown>();
  for (const list of [...m.sure, ...m.unsure]) for (const c of list) ids.add(c.id);
  return [...ids];
}

/**
 * The alerts of every table's matches (readMatches). One batch's, where the engine can return
 * rows of different tables from one statement (Capabilities.rowJson), are read in one statement
 * for all the tables: a round trip per batch, not one per table that has matches.
 */
async function readAllMatches(
  db: Kysely<Database>,
  found: readonly TableMatches[],
  limit: number,
  longRead: boolean,
): Promise<Alert[]> {
  const withIds = found.map((m) => ({ m, ids: matchedIds(m) })).filter((x) => x.ids.length > 0);
  const rowJson = withIds[0]?.m.t.rules[0].c.caps.rowJson ?? null;
  if (
    longRead ||
    rowJson === null ||
    withIds.length < 2 ||
    withIds.some((x) => x.ids.length > CONFIRM_CHUNK)
  ) {
    const alerts: Alert[] = [];
    for (const { m } of withIds) alerts.push(...(await readMatches(db, m, limit, longRead)));
    return alerts;
  }
  const parts = withIds.map(({ m, ids }, k) => {
    const alias = `m${k}`;
    return sql`select ${sql.lit(k)} as t, ${rowJson(alias)} as v from (${matchQuery(m, askedOf(m), ids)}) ${sql.id(alias)}`;
  });
  const { rows } = await sql<{ t: number | string; v: string }>`${sql.join(parts, sql` union all `)}`.execute(
    db,
  );
  const byTable = withIds.map(() => new Map<string, Record<string, unknown>>());
  for (const r of rows) {
    const row = JSON.parse(r.v) as Record<string, unknown>;
    byTable[Number(r.t)].set(String(row.row_id_), row);
  }
  return withIds.flatMap(({ m }, k) => alertsOf(m, askedOf(m), byTable[k], limit));
}

/** The rules the engine decides for some row of `m`, each one flag column `m<k>` of matchQuery. */
const askedOf = (m: TableMatches): number[] =>
  m.t.rules.flatMap((_r, i) => (m.unsure[i].length > 0 ? [i] : []));

/** The alert's columns and batch of the rows `ids` of m's table, with a flag column per rule in `asked`. */
function matchQuery(m: TableMatches, asked: readonly number[], ids: readonly unknown[]) {
  const { t } = m;
  const s = t.source;
  const flags = asked.map(
    (i, k) => sql`case when ${t.rules[i].c.where} then 1 else 0 end as ${sql.raw(`m${k}`)}`,
  );
  const pid = s.fields.ProcessId?.expr ?? sql`null`;
  return sql<
    Record<string, unknown>
  >`select ${s.id} as row_id_, ${s.time} as time, h.name as host, h.host_id as host_id, ${pid} as pid, b.seq as batch_seq, b.hash as batch_hash, ${s.columns}${flags.length ? sql`, ${sql.join(flags)}` : sql``} from ${s.from} where ${s.id} in (${sql.join(ids)})`;
}

/** The alerts of m's rules from its rows read by matchQuery (by id as text). */
function alertsOf(
  m: TableMatches,
  asked: readonly number[],
  rows: ReadonlyMap<string, Record<string, unknown>>,
  limit: number,
): Alert[] {
  const alerts: Alert[] = [];
  m.t.rules.forEach((r, i) => {
    const flag = `m${asked.indexOf(i)}`;
    const decided = m.unsure[i].filter((c) => Number(rows.get(String(c.id))?.[flag]) === 1);
    const matched = [...m.sure[i], ...decided].sort(byTime).slice(0, limit);
    for (const c of matched) {
      const row = rows.get(String(c.id));
      // A row the scan read is there in the same transaction; only a concurrent delete (prune)
      // removes it in between, and then there is nothing left to alert on.
      if (row === undefined) continue;
      const { row_id_: _id, ...rest } = row;
      for (const k of asked.keys()) delete rest[`m${k}`];
      alerts.push(toAlert(r.c, rest));
    }
  });
  return alerts;
}

/**
 * The alerts of one table's rules: `m.sure[i]` the rows rule i matches (its in-memory test
 * decided, already its first `limit` in time order), `m.unsure[i]` the rows only the engine can
 * decide (a regex JavaScript cannot stand in for). Every such row is read once, by one query per
 * CONFIRM_CHUNK ids for all the rules, with the alert's columns and batch; the unsure rows also
 * with, per rule that has some, the rule's own SQL condition as a column (so the engine decides,
 * in the same query).
 */
async function readMatches(
  db: Kysely<Database>,
  m: TableMatches,
  limit: number,
  longRead: boolean,
): Promise<Alert[]> {
  const all = matchedIds(m);
  if (all.length === 0) return [];
  // A hunt's settings for lookups by id (capabilities.ts), undone for the scans after; live
  // detection's batch-sized reads go without (two more statements per batch).
  const settings = longRead ? capsOf(m.t).byIdReadSettings : { before: [], after: [] };
  for (const q of settings.before) await q.execute(db);
  const asked = askedOf(m);
  const rows = new Map<string, Record<string, unknown>>();
  for (let k = 0; k < all.length; k += CONFIRM_CHUNK) {
    const { rows: read } = await matchQuery(m, asked, all.slice(k, k + CONFIRM_CHUNK)).execute(db);
    for (const r of read) rows.set(String(r.row_id_), r);
  }
  for (const q of settings.after) await q.execute(db);
  return alertsOf(m, asked, rows, limit);
}

/** A batch live detection runs on; `rows`: the rows ingest wrote for it, as written. */
export interface LiveBatch {
  readonly hostId: string;
  readonly seq: number;
  readonly rows?: WrittenRows;
}

/** Written rows per table the store reads by id at most (each one parameter); more: the whole batch's. */
const UNKNOWN_AT_MOST = 2_000;

/** The rows one batch opened (its open_ord range, indexed): what live detection reads. */
function batchRows(batch: { readonly hostId: string; readonly seq: number }) {
  const first = batch.seq * ORD_PER_BATCH;
  return (s: LogSource): RowSet => ({
    where: [
      sql<boolean>`${s.hostId} = ${batch.hostId}`,
      sql<boolean>`${s.ord} >= ${first} and ${s.ord} < ${first + ORD_PER_BATCH}`,
    ],
    page: null,
  });
}

/**
 * The rows one batch opened in every table of `plan`, with the fields its rules read, in one
 * statement (a UNION ALL, each table's fields as a JSON array): one round trip per batch where
 * three would be (PostgreSQL pays each one; the values are those scanTable reads).
 */
async function readBatchRows(
  db: Kysely<Database>,
  plan: readonly TablePlan[],
  batch: LiveBatch,
): Promise<Map<string, ScannedRow[]>> {
  const tables = plan.filter((t) => t.rules.length > 0);
  const out = new Map<string, ScannedRow[]>(tables.map((t) => [t.source.table, []]));
  if (tables.length === 0) return out;
  const rowsOf = batchRows(batch);
  const caps = tables[0].rules[0].c.caps;
  const first = batch.seq * ORD_PER_BATCH;
  const parts = tables.flatMap((t, k) => {
    const s = t.source;
    const conds = [...rowsOf(s).where, ...(s.base ? [sql<boolean>`${s.base}`] : [])];
    // The rows ingest wrote whose every field the rules read it can tell (written-rows.ts) are
    // tested as written; the store reads the others, by id (none: no read of that table).
    const w = batch.rows
      ? knownRows(s, t.slots.names, batch.rows, { from: first, to: first + ORD_PER_BATCH })
      : null;
    if (w !== null && w.unknown.length <= UNKNOWN_AT_MOST) {
      out.get(s.table)!.push(...w.known);
      if (w.unknown.length === 0) return [];
      conds.push(sql<boolean>`${s.id} in (${sql.join(w.unknown)})`);
    }
    const values = caps.jsonArray(t.slots.names.map((name) => s.fields[name].expr));
    return [
      sql`select ${sql.lit(k)} as t, ${s.id} as id, ${s.time} as time, ${values} as v from ${s.scan} where ${sql.join(conds, sql` and `)}`,
    ];
  });
  if (parts.length === 0) return out;
  const { rows } = await sql<{
    t: number | string;
    id: unknown;
    time: unknown;
    v: string;
  }>`${sql.join(parts, sql` union all `)}`.execute(db);
  for (const r of rows) {
    out.get(tables[Number(r.t)].source.table)!.push({
      id: r.id,
      time: Number(r.time),
      values: JSON.parse(r.v) as unknown[],
    });
  }
  return out;
}

/**
 * The rows of one batch that live detection tests as ingest wrote them (knownRows), each with its
 * field values as written and as the store reads them, which tests hold equal; `stored` undefined
 * for a row the store's read does not have.
 */
export async function writtenAgainstStored(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  batch: LiveBatch & { readonly rows: WrittenRows },
): Promise<{ table: string; id: number; written: unknown[]; stored: unknown[] | undefined }[]> {
  const out: { table: string; id: number; written: unknown[]; stored: unknown[] | undefined }[] = [];
  const first = batch.seq * ORD_PER_BATCH;
  const rowsOf = batchRows(batch);
  for (const t of planOf(rules)) {
    const known = knownRows(t.source, t.slots.names, batch.rows, { from: first, to: first + ORD_PER_BATCH });
    if (known === null) continue;
    const stored = new Map<string, unknown[]>();
    await scanTable(
      db,
      t,
      rowsOf(t.source),
      () => false,
      async (page) => {
        for (const r of page) stored.set(String(r.id), r.values);
      },
    );
    const ids = new Set([...known.known.map((k) => String(k.id)), ...known.unknown.map(String)]);
    for (const k of known.known)
      out.push({ table: t.source.table, id: k.id, written: k.values, stored: stored.get(String(k.id)) });
    // A row of the batch that ingest did not hand over as written would be missed.
    for (const [id, values] of stored)
      if (!ids.has(id)) out.push({ table: t.source.table, id: Number(id), written: [], stored: values });
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
  const out: { rule: CompiledRule; id: number; verdict: Verdict }[] = [];
  const rowsOf = batchRows(batch);
  for (const t of planOf(rules)) {
    const lower = t.rules[0].c.caps.lowerText;
    await scanTable(
      db,
      t,
      rowsOf(t.source),
      () => false,
      async (page) => {
        for (const { id, values } of page) {
          const row = new LiveRow(values, lower);
          // A rule the prefilter leaves out is false for that row, as live detection takes it.
          const worth = new Set(t.prefilter.candidates(row));
          t.rules.forEach((r, i) => {
            out.push({ rule: r.c, id: Number(id), verdict: worth.has(i) ? r.test(row) : false });
          });
        }
      },
    );
  }
  return out;
}

/**
 * The rules on the rows one batch opened, at most `limit` matches per rule: what live detection
 * runs for every batch (matchRules over the batch's rows). A batch that matches nothing costs one
 * query per table whatever the number of rules.
 */
export async function huntBatchOn(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  batch: { readonly hostId: string; readonly seq: number },
  limit: number,
): Promise<Alert[]> {
  return (await batchMatches(db, rules, batch, limit)).read();
}

/** One match of a rule on a row, decided in memory (BatchMatches.decided). */
export interface RowMatch {
  readonly c: CompiledRule;
  readonly id: unknown;
  readonly time: number;
}

/** The matches of one batch, before their columns are read (batchMatches). */
export interface BatchMatches {
  /** Reads the matched rows' columns and batch: huntBatchOn's alerts, in time order. */
  readonly read: () => Promise<Alert[]>;
  /**
   * The same matches in the same order, when every verdict was decided in memory; null when the
   * engine must decide some row (read() then asks it).
   */
  readonly decided: readonly RowMatch[] | null;
}

/**
 * The rules on the rows one batch opened (readBatchRows, then the in-memory tests), the matches
 * not read yet: live detection may write them into `alerts` by a statement that reads them.
 */
export async function batchMatches(
  db: Kysely<Database>,
  rules: readonly CompiledRule[],
  batch: LiveBatch,
  limit: number,
): Promise<BatchMatches> {
  const plan = planOf(rules);
  const read = await readBatchRows(db, plan, batch);
  const rowsOf = batchRows(batch);
  const { found } = await findMatches(
    db,
    plan,
    (s) => ({ ...rowsOf(s), read: read.get(s.table) ?? [] }),
    limit,
    liveMemoOf,
  );
  const unsure = found.some((m) => m.unsure.some((l) => l.length > 0));
  // readAllMatches' order: table by table, rule by rule, each rule's in time order; then by time.
  const decided = unsure
    ? null
    : found
        .flatMap((m) =>
          m.t.rules.flatMap((r, i) => m.sure[i].map((x) => ({ c: r.c, id: x.id, time: x.time }))),
        )
        .sort((a, b) => a.time - b.time);
  return {
    read: async () => (await readAllMatches(db, found, limit, false)).sort((a, b) => a.time - b.time),
    decided,
  };
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
