import type { Kysely, Migration } from 'kysely';
import type { Capabilities } from '../capabilities.js';

/**
 * The recorder's health records: starts, clean stops, crashes and heartbeats. Looked up per host
 * and kind for the latest one (`hosts` lateness, the configuration a host runs) and per host and
 * time for the timeline.
 */
export function recorderEventsMigration(caps: Capabilities): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('recorder_events')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('boot_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('ord', 'bigint', (c) => c.notNull())
        .addColumn('t', 'bigint', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('pid', 'bigint', (c) => c.notNull())
        .addColumn('config_hash', 'text')
        .addColumn('heartbeat_ms', 'bigint')
        .addColumn('batch_ms', 'bigint')
        .addColumn('detail', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('recorder_events_kind')
        .on('recorder_events')
        .columns(['host_id', 'kind', 'ord'])
        .execute();
      await db.schema
        .createIndex('recorder_events_time')
        .on('recorder_events')
        .columns(['host_id', 't'])
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('recorder_events').execute();
    },
  };
}
