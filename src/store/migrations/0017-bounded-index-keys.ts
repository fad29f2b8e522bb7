import { type Kysely, type Migration, sql } from 'kysely';
import { type Capabilities, PATH_KEY_CHARS } from '../capabilities.js';

/**
 * PostgreSQL refuses a B-tree entry over ~2.7 kB (8 kB compressed), and the row with it: one command
 * line or path that long in a B-tree index made its whole batch fail, and every later batch of that
 * host wait behind it — a Java classpath, a test runner's file list (CI's own 12 kB command line did
 * it) or an intruder's deliberately long path could stop a host's delivery. SQLite has no such
 * limit and keeps its indexes.
 *
 * - `processes_command` (cmdline, exe) goes: no query seeks it on PostgreSQL, where command search
 *   uses the trigram indexes of migration 0016 (GIN entries are trigrams, never the whole text).
 * - The two path indexes hold the path's first PATH_KEY_CHARS characters instead; queries say
 *   `capabilities.pathEquals`, which compares that prefix (the index) and then the whole path.
 *
 * Other indexed text is bounded by the protocol (user names 256 characters, endpoint keys 256,
 * container ids 64 hex digits) or by DNS (a reverse name's 253 characters, escaped at most ×4).
 */
export function boundedIndexKeysMigration(caps: Capabilities): Migration {
  const prefix = sql.raw(`substr(path, 1, ${PATH_KEY_CHARS})`);
  return {
    async up(db: Kysely<unknown>) {
      if (caps.engine !== 'postgres') return;
      await db.schema.dropIndex('processes_command').execute();
      await db.schema.dropIndex('file_opens_path').execute();
      await db.schema.dropIndex('file_opens_path_time').execute();
      await sql`CREATE INDEX file_opens_path ON file_opens (host_id, ${prefix})`.execute(db);
      await sql`CREATE INDEX file_opens_path_time ON file_opens (${prefix}, first_seen)`.execute(db);
    },
    // Down rebuilds the whole-value indexes, and fails on a store already holding a value too long for them.
    async down(db: Kysely<unknown>) {
      if (caps.engine !== 'postgres') return;
      await db.schema.dropIndex('file_opens_path_time').execute();
      await db.schema.dropIndex('file_opens_path').execute();
      await db.schema.createIndex('file_opens_path').on('file_opens').columns(['host_id', 'path']).execute();
      await db.schema
        .createIndex('file_opens_path_time')
        .on('file_opens')
        .columns(['path', 'first_seen'])
        .execute();
      await db.schema.createIndex('processes_command').on('processes').columns(['cmdline', 'exe']).execute();
    },
  };
}
