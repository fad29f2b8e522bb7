import { sql, type Transaction } from 'kysely';
import type { Capabilities } from './capabilities.js';
import { fixedQuery } from './fixed-query.js';
import { ID_BLOCK } from './migrations/0013-id-blocks-prune-digest.js';
import type { Database } from './schema.js';

/** The tables whose rows point at each other by id (parent_id, process_id, endpoint_id). */
export type LinkedTable = 'processes' | 'file_opens' | 'endpoints';

/** Ids reserved for one transaction's rows, handed out in ascending order. */
export class IdPool {
  private next = 0;
  constructor(
    private readonly table: string,
    private readonly ids: readonly number[],
  ) {}

  take(): number {
    const id = this.ids[this.next];
    if (id === undefined) {
      throw new Error(
        `ingest used more ${this.table} ids than it reserved (${this.ids.length}): a bug in pofr`,
      );
    }
    this.next++;
    return id;
  }
}

/** SQLite: the highest id a table ever gave (compiled once: every batch asks). */
function highestIdQuery(t: LinkedTable) {
  return fixedQuery(
    0,
    (_db) => sql<{ last: number | null }>`SELECT max(
          coalesce((SELECT seq FROM sqlite_sequence WHERE name = ${t}), 0),
          coalesce((SELECT max(id) FROM ${sql.table(t)}), 0)) AS last`,
  );
}
const highestId = {
  processes: highestIdQuery('processes'),
  file_opens: highestIdQuery('file_opens'),
  endpoints: highestIdQuery('endpoints'),
};

/**
 * Reserves row ids before the rows exist, so a batch's rows can point at each other and still be
 * written in bulk at the end of the transaction (instead of one INSERT … RETURNING per row).
 *
 * PostgreSQL: from the column's sequence, which other transactions draw from at the same time, a
 * block of ID_BLOCK ids per nextval() (unused ids are left as holes, as a rollback leaves them). SQLite: the one writer counts on from
 * the highest id ever given (sqlite_sequence, which AUTOINCREMENT keeps so pruned ids are not reused);
 * the rows' inserts move that mark past what they use.
 *
 * `lockHost` (PostgreSQL): the same statement first takes that host's row lock (`FOR UPDATE`), the
 * one that makes a host's batches apply one after the other, so the lock costs no round trip of
 * its own. The ids are drawn once the lock is held; the lock lasts until the transaction ends.
 */
export async function reserveIds(
  trx: Transaction<Database>,
  caps: Capabilities,
  counts: Readonly<Record<LinkedTable, number>>,
  lockHost?: string,
): Promise<Record<LinkedTable, IdPool>> {
  const tables = Object.keys(counts) as LinkedTable[];
  const ids: Record<LinkedTable, number[]> = { processes: [], file_opens: [], endpoints: [] };
  if (caps.engine === 'postgres') {
    const wanted = tables.filter((t) => counts[t] > 0);
    if (wanted.length > 0 || lockHost !== undefined) {
      // Each part refers to the locked row (`h`), so it runs after the lock is granted, once.
      const after = lockHost === undefined ? sql`` : sql` WHERE h.host_id IS NOT NULL`;
      // One round trip for every table; each nextval() is a block of ID_BLOCK ids (migration 0013).
      const parts = wanted.map(
        (t) =>
          sql`SELECT ${t}::text AS t, nextval(s.seq) AS id FROM (SELECT pg_get_serial_sequence(${t}, 'id')::regclass AS seq) s, generate_series(1, ${Math.ceil(counts[t] / ID_BLOCK)}::int)${after}`,
      );
      // With nothing to reserve, one row of nulls still says the lock was granted.
      const draws =
        parts.length > 0 ? sql.join(parts, sql` UNION ALL `) : sql`SELECT NULL::text AS t, NULL::int8 AS id`;
      const query =
        lockHost === undefined
          ? draws
          : sql`SELECT r.t, r.id FROM (SELECT host_id FROM hosts WHERE host_id = ${lockHost} FOR UPDATE) h CROSS JOIN LATERAL (${draws}) r`;
      const { rows } = await sql<{ t: LinkedTable | null; id: string | null }>`${query}`.execute(trx);
      if (lockHost !== undefined && rows.length === 0) {
        // Removed (`pofr server remove`) while its batch was on the way: nothing is stored or ACKed.
        throw new Error(`host ${lockHost} is no longer in the store; its batch was not stored`);
      }
      for (const r of rows) {
        if (r.t === null || r.id === null) continue;
        const first = Number(r.id);
        for (let i = 0; i < ID_BLOCK && ids[r.t].length < counts[r.t]; i++) ids[r.t].push(first + i);
      }
      for (const t of wanted) ids[t].sort((a, b) => a - b);
    }
  } else {
    for (const t of tables) {
      if (counts[t] === 0) continue;
      const { rows } = await highestId[t].run(trx, caps);
      const first = Number(rows[0]?.last ?? 0) + 1;
      for (let i = 0; i < counts[t]; i++) ids[t].push(first + i);
    }
  }
  return {
    processes: new IdPool('processes', ids.processes),
    file_opens: new IdPool('file_opens', ids.file_opens),
    endpoints: new IdPool('endpoints', ids.endpoints),
  };
}
