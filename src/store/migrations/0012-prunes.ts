import type { Kysely, Migration } from 'kysely';
import type { Capabilities } from '../capabilities.js';

/**
 * Retention (`pofr server prune`): one row per host and prune, so `pofr verify` knows where the
 * host's kept chain starts (and with which hash the last pruned batch ended it) and reports the
 * window before as pruned, not as missing batches.
 */
export function prunesMigration(caps: Capabilities): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('prunes')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('before_seq', 'bigint', (c) => c.notNull())
        .addColumn('last_hash', 'text', (c) => c.notNull())
        .addColumn('boot_id', 'text', (c) => c.notNull())
        .addColumn('t_to', 'bigint', (c) => c.notNull())
        .addColumn('older_than', 'bigint', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('batches', 'bigint', (c) => c.notNull())
        .addColumn('rows', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('prunes_host').on('prunes').columns(['host_id', 'before_seq']).execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('prunes').execute();
    },
  };
}
