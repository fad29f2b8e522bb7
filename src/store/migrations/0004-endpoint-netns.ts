import type { Kysely, Migration } from 'kysely';

/**
 * The network namespace of each endpoint: recorders read every namespace in use (containers), and
 * the same address and port can be open in several of them at once. NULL for rows recorded before.
 */
export function endpointNetnsMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('endpoints').addColumn('netns', 'bigint').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('endpoints').dropColumn('netns').execute();
    },
  };
}
