import { type Kysely, type Migration, sql } from 'kysely';
import type { Capabilities } from '../capabilities.js';
import { lifetimeClassSql } from '../lifetime-class.js';

/**
 * Indexes for the web UI's slow questions on a ten-million-event store (issue 12):
 *
 * The process tree at an instant: `processes_lifetime` on (host_id, lifetime class, start), the
 * class an expression of start and end (store/lifetime-class.ts), so each class is read over a
 * window as long as its lifetimes instead of one side of the instant over the whole record.
 *
 * A trigram index over every process image's command line and exe path, for substring search
 * (`pofr search --kind command`, the web UI's search): `LIKE '%pkexec%'` can seek no b-tree, and
 * scanning ten million events' processes took 0.4–0.8 s (issue 12's figures).
 *
 * - SQLite: an FTS5 table with the trigram tokenizer, contentless (the text stays in `processes`
 *   only; the query rechecks its LIKE there) with contentless_delete so a row leaves the index by
 *   its id alone. Case-sensitive, as pofr's LIKE is (case_sensitive_like). Triggers keep it in step
 *   with every write to `processes` — ingest's bulk inserts, prune's deletes, an analyst's or a
 *   test's edit — so no writer has to remember it. Rows already stored are indexed here.
 * - PostgreSQL: pg_trgm's GIN operator class on both columns; the planner uses it for the same
 *   LIKE, rechecking each candidate, so results are the LIKE's by construction. pg_trgm ships with
 *   PostgreSQL (contrib) and is a trusted extension: the database's owner may create it.
 */
export function searchAndTreeIndexesMigration(caps: Capabilities): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await sql`CREATE INDEX processes_lifetime ON processes (host_id, ${sql.raw(lifetimeClassSql('"end"', 'start'))}, start)`.execute(
        db,
      );
      if (caps.engine === 'postgres') {
        await sql`CREATE EXTENSION IF NOT EXISTS pg_trgm`.execute(db);
        for (const c of ['cmdline', 'exe']) {
          await sql`CREATE INDEX ${sql.id(`processes_${c}_trgm`)} ON processes USING gin (${sql.id(c)} gin_trgm_ops)`.execute(
            db,
          );
        }
        // The planner's statistics of the lifetime expression come with the table's next ANALYZE;
        // until autovacuum gets to it, trees would be planned blind.
        await sql`ANALYZE processes`.execute(db);
        return;
      }
      await sql`CREATE VIRTUAL TABLE processes_trigram USING fts5(cmdline, exe, content='', contentless_delete=1, tokenize='trigram case_sensitive 1')`.execute(
        db,
      );
      await sql`CREATE TRIGGER processes_trigram_insert AFTER INSERT ON processes BEGIN
        INSERT INTO processes_trigram (rowid, cmdline, exe) VALUES (new.id, new.cmdline, new.exe);
      END`.execute(db);
      await sql`CREATE TRIGGER processes_trigram_delete AFTER DELETE ON processes BEGIN
        DELETE FROM processes_trigram WHERE rowid = old.id;
      END`.execute(db);
      // Only a change of the indexed text (or of the id) touches the index: ending a process does not.
      await sql`CREATE TRIGGER processes_trigram_update AFTER UPDATE OF id, cmdline, exe ON processes BEGIN
        DELETE FROM processes_trigram WHERE rowid = old.id;
        INSERT INTO processes_trigram (rowid, cmdline, exe) VALUES (new.id, new.cmdline, new.exe);
      END`.execute(db);
      await sql`INSERT INTO processes_trigram (rowid, cmdline, exe) SELECT id, cmdline, exe FROM processes`.execute(
        db,
      );
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropIndex('processes_lifetime').execute();
      if (caps.engine === 'postgres') {
        for (const c of ['cmdline', 'exe']) await db.schema.dropIndex(`processes_${c}_trgm`).execute();
        return;
      }
      for (const t of ['insert', 'delete', 'update'])
        await sql`DROP TRIGGER ${sql.id(`processes_trigram_${t}`)}`.execute(db);
      await sql`DROP TABLE processes_trigram`.execute(db);
    },
  };
}
