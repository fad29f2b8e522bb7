import type { Kysely, Migration } from 'kysely';
import type { Capabilities } from '../capabilities.js';

/**
 * The audit trail of refused attempts (every refusal a row, docs/schema.md "Audit"), and each host's
 * forward-secure sealing seed (docs/protocol.md "Sealing") with the first sequence number it seals:
 * NULL for hosts enrolled before sealing (until they enroll again).
 */
export function auditAndSealsMigration(caps: Capabilities): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('audit_events')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('remote', 'text')
        .addColumn('source', 'text')
        .addColumn('fingerprint', 'text')
        .addColumn('host_id', 'text')
        .addColumn('ssh_user', 'text')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('code', 'text')
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('suppressed', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex('audit_events_at').on('audit_events').column('at').execute();
      // The shared rate limit (one-shot processes under OpenSSH) counts a source's rows in a window.
      await db.schema
        .createIndex('audit_events_source_at')
        .on('audit_events')
        .columns(['source', 'at'])
        .execute();
      await db.schema.alterTable('hosts').addColumn('seal_seed', 'text').execute();
      await db.schema.alterTable('hosts').addColumn('seal_from', 'bigint').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('hosts').dropColumn('seal_from').execute();
      await db.schema.alterTable('hosts').dropColumn('seal_seed').execute();
      await db.schema.dropTable('audit_events').execute();
    },
  };
}
