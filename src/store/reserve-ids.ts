import { sql, type Transaction } from 'kysely';
import type { Capabilities } from './capabilities.js';
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

/**
 * Reserves row ids before the rows exist, so a batch's rows can point at each other and still be
 * written in bulk at the end of the transaction (instead of one INSERT … RETURNING per row).
 *
 * PostgreSQL: from the column's sequence, which other transactions draw from at the same time
 * (unused ids are left as holes, as a rollback leaves them). SQLite: the one writer counts on from
 * the highest id ever given (sqlite_sequence, which AUTOINCREMENT keeps so pruned ids are not reused);
 * the rows' inserts move that mark past what they use.
 */
export async function reserveIds(
  trx: Transaction<Database>,
  caps: Capabilities,
  counts: Readonly<Record<LinkedTable, number>>,
): Promise<Record<LinkedTable, IdPool>> {
  const tables = Object.keys(counts) as LinkedTable[];
  const ids: Record<LinkedTable, number[]> = { processes: [], file_opens: [], endpoints: [] };
  if (caps.engine === 'postgres') {
    const wanted = tables.filter((t) => counts[t] > 0);
    if (wanted.length > 0) {
      // One round trip for every table.
      const parts = wanted.map(
        (t) =>
          // The sequence is looked up once, not once per id.
          sql`SELECT ${t}::text AS t, nextval(s.seq) AS id FROM (SELECT pg_get_serial_sequence(${t}, 'id')::regclass AS seq) s, generate_series(1, ${counts[t]}::int)`,
      );
      const { rows } = await sql<{
        t: LinkedTable;
        id: string;
      }>`${sql.join(parts, sql` UNION ALL `)}`.execute(trx);
      for (const r of rows) ids[r.t].push(Number(r.id));
      for (const t of wanted) ids[t].sort((a, b) => a - b);
    }
  } else {
    for (const t of tables) {
      if (counts[t] === 0) continue;
      const { rows } = await sql<{ last: number | null }>`SELECT max(
          coalesce((SELECT seq FROM sqlite_sequence WHERE name = ${t}), 0),
          coalesce((SELECT max(id) FROM ${sql.table(t)}), 0)) AS last`.execute(trx);
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
