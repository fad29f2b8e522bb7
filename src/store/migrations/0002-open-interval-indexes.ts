import { type Kysely, type Migration, sql } from 'kysely';

/**
 * Ingest asks "what is still open on this host" at every keyframe (thousands of files, hundreds of
 * endpoints). Without these, the question scans the host's whole history, and keyframes get slower
 * every day the host is recorded. Partial indexes hold only the open rows, so they stay small.
 */
export function openIntervalIndexesMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createIndex('file_opens_open')
        .on('file_opens')
        .columns(['host_id', 'process_id'])
        .where(sql<boolean>`is_open = 1`)
        .execute();
      await db.schema
        .createIndex('endpoints_open')
        .on('endpoints')
        .columns(['host_id', 'key'])
        .where(sql<boolean>`is_open = 1`)
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropIndex('endpoints_open').execute();
      await db.schema.dropIndex('file_opens_open').execute();
    },
  };
}
