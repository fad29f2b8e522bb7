import type { Kysely, Migration } from 'kysely';

/**
 * Server-wide settings kept in the database rather than the data directory, so several server
 * nodes sharing one PostgreSQL database see the same ones (first use: the registration password).
 */
export function serverSettingsMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('server_settings')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('server_settings').execute();
    },
  };
}
