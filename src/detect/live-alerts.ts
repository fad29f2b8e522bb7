import type { Kysely } from 'kysely';
import type { Database } from '../store/index.js';
import type { CompiledRule } from './compile.js';
import { type Alert, huntBatchOn } from './hunt.js';

/** Matches kept as alerts per rule and batch (a runaway rule cannot flood the table). */
const MAX_PER_RULE_AND_BATCH = 1000;

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
  batch: { readonly hostId: string; readonly seq: number },
  now: number = Date.now() * 1000,
): Promise<number> {
  if (rules.length === 0) return 0;
  const alerts = await huntBatchOn(trx, rules, batch, MAX_PER_RULE_AND_BATCH);
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
