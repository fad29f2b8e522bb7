import type { Kysely, Migration } from 'kysely';

/**
 * The pofr version each client last announced (at enrollment and on every ingest connection), so
 * `pofr server clients` shows which hosts still run an old recorder. NULL until a client says.
 */
export function hostClientVersionMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('hosts').addColumn('client_version', 'text').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('hosts').dropColumn('client_version').execute();
    },
  };
}
