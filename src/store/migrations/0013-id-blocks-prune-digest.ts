import { type Kysely, type Migration, sql } from 'kysely';
import type { Capabilities } from '../capabilities.js';

/** Ids one nextval() of the linked tables' sequences stands for (src/store/reserve-ids.ts). */
export const ID_BLOCK = 1024;

const TABLES = ['processes', 'file_opens', 'endpoints'] as const;

/**
 * PostgreSQL: the id sequences of the tables whose rows point at each other step by ID_BLOCK, so
 * ingest reserves a block of ids with one nextval() instead of one call per row (drawing 480 ids a
 * batch was ~1.5 ms of its time). An insert that takes the column default still gets a unique id (the
 * block's first). SQLite counts ids itself: nothing to change.
 *
 * Both engines: `prunes.state_sha256`, the digest of the rows a prune left standing at its cut
 * (src/ingest/state-at-cut.ts), which verify checks them against: their evidence is gone.
 */
export function idBlocksMigration(caps: Capabilities): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('prunes').addColumn('state_sha256', 'text').execute();
      if (caps.engine !== 'postgres') return;
      for (const t of TABLES) {
        await sql`SELECT setval(s, nextval(s) + ${ID_BLOCK}) FROM (SELECT pg_get_serial_sequence(${t}, 'id')::regclass AS s) x`.execute(
          db,
        );
        const seq = await sql<{ s: string }>`SELECT pg_get_serial_sequence(${t}, 'id') AS s`.execute(db);
        await sql`ALTER SEQUENCE ${sql.raw(seq.rows[0]?.s as string)} INCREMENT BY ${sql.raw(String(ID_BLOCK))}`.execute(
          db,
        );
      }
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('prunes').dropColumn('state_sha256').execute();
      if (caps.engine !== 'postgres') return;
      for (const t of TABLES) {
        const seq = await sql<{ s: string }>`SELECT pg_get_serial_sequence(${t}, 'id') AS s`.execute(db);
        await sql`ALTER SEQUENCE ${sql.raw(seq.rows[0]?.s as string)} INCREMENT BY 1`.execute(db);
      }
    },
  };
}
