import type { Kysely, Migration } from 'kysely';

/**
 * Live alerts (`pofr server run --rules`): an alert names the rule's author (its licence asks for
 * it), the row that matched and the batch that recorded it. Rules run on the rows a batch opened,
 * found by `open_ord` (seq × 1,000,000 + record index), hence an index on it per event table.
 */
export function alertEvidenceMigration(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      for (const [name, type] of [
        ['author', 'text'],
        ['source_table', 'text'],
        ['row_id', 'bigint'],
        ['pid', 'bigint'],
        ['batch_seq', 'bigint'],
        ['batch_hash', 'text'],
      ] as const) {
        await db.schema.alterTable('alerts').addColumn(name, type).execute();
      }
      await db.schema.createIndex('alerts_time').on('alerts').columns(['host_id', 't']).execute();
      for (const table of ['processes', 'file_opens', 'endpoints']) {
        await db.schema.createIndex(`${table}_open_ord`).on(table).columns(['host_id', 'open_ord']).execute();
      }
    },
    async down(db: Kysely<unknown>) {
      for (const table of ['processes', 'file_opens', 'endpoints']) {
        await db.schema.dropIndex(`${table}_open_ord`).execute();
      }
      await db.schema.dropIndex('alerts_time').execute();
      for (const name of ['author', 'source_table', 'row_id', 'pid', 'batch_seq', 'batch_hash']) {
        await db.schema.alterTable('alerts').dropColumn(name).execute();
      }
    },
  };
}
