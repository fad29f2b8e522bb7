import type { Kysely, Migration } from 'kysely';

/**
 * Where each process image's argv came from (probe, proc, event) and whether it is complete: exec
 * tracing reads argv at a program's first instruction, or from /proc, or not at all for a process
 * already gone. NULL for rows recorded before.
 */
export function argvSourceMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('processes').addColumn('argv_source', 'text').execute();
      await db.schema.alterTable('processes').addColumn('argv_complete', 'integer').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('processes').dropColumn('argv_complete').execute();
      await db.schema.alterTable('processes').dropColumn('argv_source').execute();
    },
  };
}
