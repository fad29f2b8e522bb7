import type { Kysely, Migration } from 'kysely';

/**
 * Three indexes every batch wrote that no reader needs any more (both engines). At a thousand
 * hosts each host-led index costs every batch a page of its own in the WAL and the checkpoint, and
 * every row an index entry (docs/benchmarks.md, fleet and ingest-throughput).
 *
 * - `endpoints_process (process_id)`: the prefix of `endpoints_process_first` (migration 0018).
 * - `endpoints_key (host_id, key, is_open)`: ingest looks endpoints up by key only while they are
 *   open (`is_open = 1` as a literal), which the partial `endpoints_open (host_id, key)` serves.
 * - `file_opens_process (process_id, fd, is_open)`: ingest now reads a process's open
 *   descriptors with its host named, through the partial `file_opens_open (host_id, process_id)`;
 *   readers by process use `file_opens_process_first`.
 *
 * test/store/redundant-indexes.test.ts asks each engine's planner that those lookups still use an
 * index.
 */
const DROPPED: readonly (readonly [name: string, table: string, columns: readonly string[]])[] = [
  ['endpoints_process', 'endpoints', ['process_id']],
  ['endpoints_key', 'endpoints', ['host_id', 'key', 'is_open']],
  ['file_opens_process', 'file_opens', ['process_id', 'fd', 'is_open']],
];

export function redundantIngestIndexesMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      for (const [name] of DROPPED) await db.schema.dropIndex(name).execute();
    },
    async down(db: Kysely<unknown>) {
      for (const [name, table, columns] of DROPPED) {
        await db.schema
          .createIndex(name)
          .on(table)
          .columns([...columns])
          .execute();
      }
    },
  };
}
