import type { Kysely, Migration } from 'kysely';

/**
 * The web UI's questions across a whole store (issue 12's 10 M-event figures): who opened this
 * path, who talked to this address, which processes ran as this user — newest first — and the
 * names reverse DNS gave. Without these, each is a scan of a table of millions of rows.
 */
export function analystIndexesMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createIndex('file_opens_path_time')
        .on('file_opens')
        .columns(['path', 'first_seen'])
        .execute();
      await db.schema
        .createIndex('endpoints_remote_time')
        .on('endpoints')
        .columns(['remote_ip', 'first_seen'])
        .execute();
      await db.schema.createIndex('endpoints_fqdn').on('endpoints').column('fqdn').execute();
      await db.schema
        .createIndex('processes_user_start')
        .on('processes')
        .columns(['user', 'start'])
        .execute();
    },
    async down(db: Kysely<unknown>) {
      for (const name of [
        'processes_user_start',
        'endpoints_fqdn',
        'endpoints_remote_time',
        'file_opens_path_time',
      ]) {
        await db.schema.dropIndex(name).execute();
      }
    },
  };
}
