import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';

/**
 * PostgreSQL time partitions of the event tables (migration 0015, docs/schema.md "Partitions").
 *
 * Each table is partitioned by RANGE on the time its rows are found by: a process by its start, a
 * file or socket by when it was first seen, the point events by their time. One partition per UTC
 * week (Monday 00:00), named `<table>_pYYYYMMDD` after its first day, plus `<table>_default` for
 * rows no week holds: times before the first week created, a clock far in the future, the rows a
 * prune kept when it dropped their week. Weeks, not days: the store also looks rows up by id and
 * across hosts (process pages, pivots), which probes every partition's index; at 90 days' retention
 * that is 14 partitions, not 90.
 *
 * SQLite is one file and one writer: nothing to partition there.
 */

/** The partitioned tables and the column each is partitioned by. */
export const PARTITIONED = [
  { table: 'processes', key: 'start' },
  { table: 'file_opens', key: 'first_seen' },
  { table: 'endpoints', key: 'first_seen' },
  { table: 'endpoint_states', key: 't' },
  { table: 'recorder_events', key: 't' },
  { table: 'dns_queries', key: 't' },
  { table: 'cred_changes', key: 't' },
] as const satisfies readonly { table: keyof Database; key: string }[];

export type PartitionedTable = (typeof PARTITIONED)[number]['table'];

const US_PER_DAY = 86_400_000_000;
export const WEEK_US = 7 * US_PER_DAY;
/** 1970-01-05, the first Monday after the epoch (a Thursday), in µs. */
const FIRST_MONDAY_US = 4 * US_PER_DAY;
/** Weeks created ahead of the server's clock, so a new week's first batch never waits for DDL. */
export const WEEKS_AHEAD = 2;
/**
 * Ingest creates no week further back than this (a spool emptied after a long outage, a recorder's
 * clock gone back): older rows go to the default partition, and a broken clock cannot make thousands.
 */
const MAX_WEEKS_BACK = 4;
/** A batch spanning more weeks than this (a clock jump inside it) leaves its extremes to the default partition. */
const MAX_WEEKS_PER_BATCH = 4;

/** The Monday 00:00 UTC that starts the week holding `t` (µs). */
export function weekStart(t: number): number {
  return Math.floor((t - FIRST_MONDAY_US) / WEEK_US) * WEEK_US + FIRST_MONDAY_US;
}

export function partitionName(table: string, week: number): string {
  const d = new Date(week / 1000);
  const ymd = `${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}${String(d.getUTCDate()).padStart(2, '0')}`;
  return `${table}_p${ymd}`;
}

export function defaultPartitionName(table: string): string {
  return `${table}_default`;
}

/** One partition of a partitioned table: its range [from, to) in µs (null bounds: the default). */
export interface PartitionInfo {
  readonly table: PartitionedTable;
  readonly name: string;
  readonly oid: number;
  readonly from: number | null;
  readonly to: number | null;
}

/** Every partition of the partitioned tables, by table and range. */
export async function listPartitions(db: Kysely<Database>): Promise<PartitionInfo[]> {
  const { rows } = await sql<{ parent: string; name: string; oid: number; bound: string }>`
    SELECT p.relname AS parent, c.relname AS name, c.oid::int8 AS oid, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = p.relnamespace
    WHERE n.nspname = current_schema() AND p.relname = ANY(${PARTITIONED.map((p) => p.table)})
    ORDER BY p.relname, c.relname`.execute(db);
  return rows.map((r) => {
    const m = /FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)/.exec(r.bound);
    return {
      table: r.parent as PartitionedTable,
      name: r.name,
      oid: Number(r.oid),
      from: m ? Number(m[1]) : null,
      to: m ? Number(m[2]) : null,
    };
  });
}

/** Weeks known to exist, per database handle (several stores can be open in one process). */
const known = new WeakMap<Kysely<Database>, Set<number>>();

/**
 * Makes sure every partitioned table has a partition for each week of [from, to] (µs), within
 * [now − MAX_WEEKS_BACK, now + WEEKS_AHEAD] weeks; what falls outside goes to the default partitions. Cheap
 * when the weeks exist (a lookup in memory); otherwise each missing week is created in its own short
 * transaction, under an advisory lock that another node creating the same week waits on. Rows that
 * the default partition holds for that week move into it, so a week can also be created late (a
 * spool emptied after an outage, a prune that dropped the week).
 *
 * Ingest calls it before a batch's transaction, the server at start and every hour (WEEKS_AHEAD).
 */
export async function ensurePartitions(
  db: Kysely<Database>,
  from: number,
  to: number,
  now = Date.now() * 1000,
): Promise<void> {
  const lo = Math.max(weekStart(from), weekStart(now) - MAX_WEEKS_BACK * WEEK_US);
  const hi = Math.min(weekStart(to), weekStart(now) + WEEKS_AHEAD * WEEK_US);
  if (hi < lo || (hi - lo) / WEEK_US >= MAX_WEEKS_PER_BATCH + WEEKS_AHEAD) return;
  let weeks = known.get(db);
  const missing = (set: Set<number> | undefined) => {
    const out: number[] = [];
    for (let w = lo; w <= hi; w += WEEK_US) if (!set?.has(w)) out.push(w);
    return out;
  };
  if (missing(weeks).length === 0) return;
  weeks = await knownWeeks(db);
  for (const week of missing(weeks)) {
    await createWeek(db, week);
    weeks.add(week);
  }
}

/** Reads which weeks exist (a week exists when every partitioned table has it). */
async function knownWeeks(db: Kysely<Database>): Promise<Set<number>> {
  const perTable = new Map<number, number>();
  for (const p of await listPartitions(db)) {
    if (p.from !== null && p.to === p.from + WEEK_US) perTable.set(p.from, (perTable.get(p.from) ?? 0) + 1);
  }
  const weeks = new Set([...perTable].filter(([, n]) => n === PARTITIONED.length).map(([w]) => w));
  known.set(db, weeks);
  return weeks;
}

/** Forgets what was read of the partitions (after a prune dropped some). */
export function forgetPartitions(db: Kysely<Database>): void {
  known.delete(db);
}

// Bounds and partition names go into DDL, which takes no parameters: they are integers checked here
// and names built from pofr's own table names and digits.
function int(n: number): string {
  if (!Number.isSafeInteger(n)) throw new Error(`partition bound ${n} is not an integer`);
  return String(n);
}

/** Creates one week's partition of every partitioned table that lacks it, in one transaction. */
export async function createWeek(db: Kysely<Database>, week: number): Promise<void> {
  await db.transaction().execute((trx) => createWeekIn(trx, week));
}

/** createWeek in the caller's transaction (a migration's). */
export async function createWeekIn<DB>(trx: Kysely<DB>, week: number): Promise<void> {
  const lo = int(week);
  const hi = int(week + WEEK_US);
  // Every node and every table in the same order: two nodes creating the week take turns.
  await sql`SELECT pg_advisory_xact_lock(hashtext('pofr partitions'))`.execute(trx);
  // ATTACH takes SHARE ROW EXCLUSIVE on `hosts`, which every partitioned table references. An
  // ingest transaction updates `hosts` (its chain head) before it reads the event tables: taken
  // only at ATTACH, after the default partition's lock, the two waited on each other (a deadlock
  // PostgreSQL broke by failing one; seen with two hosts ingesting as a week began). Taken first,
  // it waits for those transactions to commit, and holds up the next ones before they touch an
  // event table.
  await sql`LOCK TABLE hosts IN SHARE ROW EXCLUSIVE MODE`.execute(trx);
  for (const { table, key } of PARTITIONED) {
    const name = partitionName(table, week);
    const exists = await sql<{ r: string | null }>`SELECT to_regclass(${name})::text AS r`.execute(trx);
    if (exists.rows[0]?.r) continue;
    const def = defaultPartitionName(table);
    // The default may hold rows of this week (see above): they move in before the week attaches,
    // with the default locked so that no insert lands there meanwhile.
    await sql`LOCK TABLE ${sql.id(def)} IN ACCESS EXCLUSIVE MODE`.execute(trx);
    await sql`CREATE TABLE ${sql.id(name)} (LIKE ${sql.id(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)`.execute(
      trx,
    );
    const inWeek = sql`${sql.id(key)} >= ${sql.raw(lo)} AND ${sql.id(key)} < ${sql.raw(hi)}`;
    await sql`WITH m AS (DELETE FROM ${sql.id(def)} WHERE ${inWeek} RETURNING *)
        INSERT INTO ${sql.id(name)} SELECT * FROM m`.execute(trx);
    // The CHECK lets ATTACH skip scanning the new table; it is dropped once attached (the bound says it).
    await sql`ALTER TABLE ${sql.id(name)} ADD CONSTRAINT ${sql.id(`${name}_range`)} CHECK (${inWeek})`.execute(
      trx,
    );
    await sql`ALTER TABLE ${sql.id(table)} ATTACH PARTITION ${sql.id(name)} FOR VALUES FROM (${sql.raw(lo)}) TO (${sql.raw(hi)})`.execute(
      trx,
    );
    await sql`ALTER TABLE ${sql.id(name)} DROP CONSTRAINT ${sql.id(`${name}_range`)}`.execute(trx);
  }
}
