import { type Kysely, type Migration, sql } from 'kysely';
import type { Capabilities } from '../capabilities.js';

/**
 * SQLite's trigram table of migration 0016 keeps only which rows hold each trigram (FTS5
 * `detail=none`), not where in the row: the positions cost ingest more than half of that table's
 * upkeep (60 process rows a batch: 1.65 ms with positions, 0.69 ms without, measured with bare
 * better-sqlite3 on this machine kind) and a search never needed them. Without positions FTS5 takes
 * no phrase, so a term is asked as all of its distinct trigrams (capabilities' `trigramQuery`); the
 * rows that hold all of them are a superset of those holding the term, and every query already
 * rechecks its LIKE or regexp on `processes` itself. The triggers of 0016 name the table, not its
 * options, and stay. PostgreSQL's pg_trgm index is unchanged.
 */
export function trigramDoclistsMigration(caps: Capabilities): Migration {
  const rebuild = async (db: Kysely<unknown>, detail: 'none' | 'full') => {
    await sql`DROP TABLE processes_trigram`.execute(db);
    await sql`CREATE VIRTUAL TABLE processes_trigram USING fts5(cmdline, exe, content='', contentless_delete=1, detail=${sql.raw(detail)}, tokenize='trigram case_sensitive 1')`.execute(
      db,
    );
    await sql`INSERT INTO processes_trigram (rowid, cmdline, exe) SELECT id, cmdline, exe FROM processes`.execute(
      db,
    );
  };
  return {
    async up(db: Kysely<unknown>) {
      if (caps.engine === 'sqlite') await rebuild(db, 'none');
    },
    async down(db: Kysely<unknown>) {
      if (caps.engine === 'sqlite') await rebuild(db, 'full');
    },
  };
}
