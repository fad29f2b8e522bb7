import type { Kysely, Migration } from 'kysely';

/**
 * Indexes for a timeline filtered by command (issue 12): the filter is resolved first to the
 * matching process images (at most 5,000, through the trigram index), then each source of files and
 * endpoints reads the events of those rows from an instant on, in time order. With only
 * `(process_id)` an index led to every event those processes ever had, each row read and sorted
 * (893 ms p95 of SQL on a 10 M-event SQLite store); `(process_id, time, ord)` per source gives each
 * process's events from the instant on, and the page's end is found from those keys before any
 * full row is read. Additive: `endpoints_process (process_id)` stays (its prefix is the same, but
 * other readers of a shared store may be mid-measurement; a later migration may drop it).
 */
const INDEXES: readonly (readonly [name: string, table: string, columns: readonly string[]])[] = [
  ['file_opens_process_first', 'file_opens', ['process_id', 'first_seen', 'open_ord']],
  ['file_opens_process_last', 'file_opens', ['process_id', 'last_seen', 'close_ord']],
  ['endpoints_process_first', 'endpoints', ['process_id', 'first_seen', 'open_ord']],
  ['endpoints_process_last', 'endpoints', ['process_id', 'last_seen', 'close_ord']],
];

export function processTimeIndexesMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      for (const [name, table, columns] of INDEXES) {
        await db.schema
          .createIndex(name)
          .on(table)
          .columns([...columns])
          .execute();
      }
    },
    async down(db: Kysely<unknown>) {
      for (const [name] of [...INDEXES].reverse()) await db.schema.dropIndex(name).execute();
    },
  };
}
