import { type Kysely, sql } from 'kysely';
import type { Database } from '../store/index.js';
import type { CompiledRule } from './compile.js';
import { type Alert, batchMatches, type LiveBatch, type RowMatch } from './hunt.js';

/** Matches kept as alerts per rule and batch (a runaway rule cannot flood the table). */
const MAX_PER_RULE_AND_BATCH = 1000;

/** Matches written by one INSERT … SELECT at most (7 parameters each, under PostgreSQL's 65,535). */
const INSERT_AT_ONCE = 5_000;

/**
 * Evaluates `rules` on the rows one batch opened and writes an alert per match, on `trx`: ingest
 * calls it inside the batch's own transaction, so the batch and its alerts commit together (a
 * server that dies after the commit has both; one that dies before has neither, and the client
 * sends the batch again).
 *
 * @example
 * await ingestBatch(store, bytes, { principal, onApplied: (trx, b) => recordAlerts(trx, rules, b) });
 */
export async function recordAlerts(
  trx: Kysely<Database>,
  rules: readonly CompiledRule[],
  batch: LiveBatch,
  now: number = Date.now() * 1000,
): Promise<number> {
  if (rules.length === 0) return 0;
  const found = await batchMatches(trx, rules, batch, MAX_PER_RULE_AND_BATCH);
  const rowJson = rules[0].caps.rowJson;
  // Where the engine builds the alert's row itself (PostgreSQL), the matches decided in memory are
  // read and written by one statement: one round trip per batch with matches, not two.
  if (found.decided !== null && rowJson !== null && found.decided.length <= INSERT_AT_ONCE) {
    if (found.decided.length === 0) return 0;
    return insertMatches(trx, found.decided, rowJson, now);
  }
  const alerts = await found.read();
  if (alerts.length === 0) return 0;
  await trx
    .insertInto('alerts')
    .values(alerts.map((a) => alertRow(a, now)))
    .execute();
  return alerts.length;
}

function alertRow(a: Alert, now: number) {
  const {
    time,
    host: _host,
    pid,
    rule_id,
    title,
    level,
    author,
    batch_seq,
    batch_hash,
    host_id,
    table,
    ...row
  } = a;
  // The matched row's own id: a file or endpoint row also names its process.
  const rowId = { processes: row.process_id, endpoints: row.endpoint_id, file_opens: row.file_id }[table];
  return {
    host_id,
    t: time,
    severity: level ?? 'unknown',
    rule: rule_id,
    summary: title,
    detail: JSON.stringify(row),
    created_at: now,
    author,
    source_table: table,
    row_id: typeof rowId === 'number' ? rowId : null,
    pid,
    batch_seq,
    batch_hash,
  };
}

/**
 * The alerts of `matches` (in that order, so their ids follow it) by one INSERT … SELECT: the same
 * rows alertRow makes from the Alert that readMatches reads — the alert's row columns as a JSON
 * object in the logsource's column order (`detail`), the batch by the row's open_ord — without the
 * rows travelling to the server and back.
 */
async function insertMatches(
  trx: Kysely<Database>,
  matches: readonly RowMatch[],
  rowJson: (alias: string) => ReturnType<typeof sql<string>>,
  now: number,
): Promise<number> {
  const bySource = new Map<string, { c: CompiledRule; list: { m: RowMatch; ord: number }[] }>();
  matches.forEach((m, ord) => {
    const key = m.c.source.table;
    let g = bySource.get(key);
    if (g === undefined) {
      g = { c: m.c, list: [] };
      bySource.set(key, g);
    }
    g.list.push({ m, ord });
  });
  const parts = [...bySource.values()].map(({ c, list }) => {
    const s = c.source;
    const pid = s.fields.ProcessId?.expr ?? sql`null`;
    const values = list.map(
      ({ m, ord }) =>
        sql`(cast(${m.id} as bigint), cast(${m.time} as bigint), cast(${ord} as integer), cast(${m.c.rule.level ?? 'unknown'} as text), cast(${m.c.rule.id} as text), cast(${m.c.rule.title} as text), cast(${m.c.rule.author} as text))`,
    );
    // Each match looks its row up by id and time (LATERAL; the partitions' key): by id alone, a
    // partition without statistics (a fresh store's) looked like 40 rows a match, and the planner
    // hash-joined the whole of `processes` to them.
    return sql`select r.ord as ord, x.host_id, x.t, r.severity as severity, r.rule as rule, r.summary as summary, x.detail, r.author as author, cast(${s.table} as text) as source_table, x.row_id, x.pid, x.batch_seq, x.batch_hash from (values ${sql.join(values)}) r(row_id, t, ord, severity, rule, summary, author) cross join lateral (select h.host_id as host_id, ${s.time} as t, (select ${rowJson('c')} from (select ${s.columns}) c) as detail, ${s.id} as row_id, ${pid} as pid, b.seq as batch_seq, b.hash as batch_hash from ${s.from} where ${s.id} = r.row_id and ${s.time} = r.t) x`;
  });
  const r =
    await sql`insert into alerts (host_id, t, severity, rule, summary, detail, created_at, author, source_table, row_id, pid, batch_seq, batch_hash) select host_id, t, severity, rule, summary, detail, cast(${now} as bigint), author, source_table, row_id, pid, batch_seq, batch_hash from (${sql.join(parts, sql` union all `)}) a order by ord`.execute(
      trx,
    );
  return Number(r.numAffectedRows ?? 0);
}
