import { type Kysely, type Migration, sql } from 'kysely';

/**
 * Enrichment columns of endpoints, and indexes for the web UI's questions over a store of ten million events (issue 12's figures):
 *
 * - timeline pages read each event source in (time, ord) order from an instant on, and stop after
 *   a page: (host_id, time, ord) lets the engine walk the index in that order instead of sorting a
 *   host's whole history (a page went from ~700 ms to a few ms on SQLite);
 * - cross-host pivots, newest first: who opened this path, who talked to this address, what ran as
 *   this user, which endpoints reverse DNS named;
 * - the fleet's activity sparkline reads batches by host and time.
 */
const INDEXES: readonly (readonly [name: string, table: string, columns: readonly string[]])[] = [
  ['processes_start_ord', 'processes', ['host_id', 'start', 'open_ord']],
  ['processes_end_ord', 'processes', ['host_id', 'end', 'close_ord']],
  ['file_opens_first_ord', 'file_opens', ['host_id', 'first_seen', 'open_ord']],
  ['file_opens_last_ord', 'file_opens', ['host_id', 'last_seen', 'close_ord']],
  ['endpoints_first_ord', 'endpoints', ['host_id', 'first_seen', 'open_ord']],
  ['endpoints_last_ord', 'endpoints', ['host_id', 'last_seen', 'close_ord']],
  ['endpoint_states_time_ord', 'endpoint_states', ['host_id', 't', 'ord']],
  ['file_opens_path_time', 'file_opens', ['path', 'first_seen']],
  ['endpoints_remote_time', 'endpoints', ['remote_ip', 'first_seen']],
  ['endpoints_fqdn', 'endpoints', ['fqdn']],
  ['processes_user_start', 'processes', ['user', 'start']],
  ['processes_command', 'processes', ['cmdline', 'exe']],
  ['batches_time', 'batches', ['host_id', 't_from']],
];

export function analystIndexesMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      // Enrichment frozen at event time, with what said so: the address's network (ASN and its
      // holder), the databases' names and build dates, and when reverse DNS answered.
      await db.schema.alterTable('endpoints').addColumn('asn', 'bigint').execute();
      await db.schema.alterTable('endpoints').addColumn('as_org', 'text').execute();
      await db.schema.alterTable('endpoints').addColumn('geo_db', 'text').execute();
      await db.schema.alterTable('endpoints').addColumn('fqdn_at', 'bigint').execute();
      // What reverse DNS has not looked at yet: small once it keeps up.
      await db.schema
        .createIndex('endpoints_rdns_pending')
        .on('endpoints')
        .column('remote_ip')
        .where(sql<boolean>`fqdn_at is null`)
        .execute();
      for (const [name, table, columns] of INDEXES) {
        await db.schema
          .createIndex(name)
          .on(table)
          .columns([...columns])
          .execute();
      }
    },
    async down(db: Kysely<unknown>) {
      for (const [name] of [...INDEXES].reverse()) await db.schema.dropIndex(name).execute();
      await db.schema.dropIndex('endpoints_rdns_pending').execute();
      for (const c of ['fqdn_at', 'geo_db', 'as_org', 'asn'])
        await db.schema.alterTable('endpoints').dropColumn(c).execute();
    },
  };
}
