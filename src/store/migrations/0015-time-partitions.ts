import { type Kysely, type Migration, sql } from 'kysely';
import type { Capabilities } from '../capabilities.js';
import {
  createWeekIn,
  defaultPartitionName,
  PARTITIONED,
  WEEK_US,
  WEEKS_AHEAD,
  weekStart,
} from '../partitions.js';

/** (host_id, start) ⊂ processes_start_ord, (host_id, end) ⊂ processes_end_ord, (host_id, first_seen) ⊂ *_first_ord, (remote_ip) ⊂ endpoints_remote_time. */
const REDUNDANT_INDEXES = [
  'processes_start',
  'processes_open',
  'file_opens_time',
  'endpoints_time',
  'endpoints_remote',
] as const;

/** How far back the weeks made for rows already stored reach; older rows go to the default partition. */
const BACKFILL_WEEKS = 3 * 53;

/**
 * PostgreSQL: the event tables become declaratively partitioned by time (src/store/partitions.ts),
 * so a query for a window reads only its weeks and retention drops whole weeks instead of deleting
 * rows. Each table is rebuilt: a partitioned copy with the same columns, column defaults (the id
 * sequence, which moves over to it) and indexes, the rows copied in, the old table dropped.
 *
 * A partitioned table's primary key and unique constraints must hold the partition key: `id` stays
 * unique by its sequence, the key is (id, time); a process's identity constraint gains its start
 * (the same process image always has the same start, so it says the same thing).
 *
 * Both engines also drop five indexes that later ones made redundant (REDUNDANT_INDEXES).
 *
 * Weeks are made for the batches already stored (at most three years back); the rows in no week go
 * to the default partition. SQLite: nothing changes.
 */
export function timePartitionsMigration(caps: Capabilities): Migration {
  return {
    async up(db: Kysely<unknown>) {
      // Both engines: indexes that a later one (migration 0009) repeats as its prefix; every insert
      // paid for them and no query needs them (the longer index serves the same lookups).
      for (const name of REDUNDANT_INDEXES) await db.schema.dropIndex(name).execute();
      if (caps.engine !== 'postgres') return;
      for (const { table, key } of PARTITIONED) {
        const part = `${table}_partitioned`;
        const { rows: indexes } = await sql<{ name: string; def: string; constraint: string | null }>`
          SELECT i.indexname AS name, i.indexdef AS def, c.contype::text AS constraint
          FROM pg_indexes i
          LEFT JOIN pg_constraint c ON c.conname = i.indexname AND c.conrelid = ${table}::regclass
          WHERE i.schemaname = current_schema() AND i.tablename = ${table}`.execute(db);
        const { rows: fks } = await sql<{ name: string; def: string }>`
          SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
          WHERE conrelid = ${table}::regclass AND contype = 'f'`.execute(db);
        await sql`CREATE TABLE ${sql.id(part)} (LIKE ${sql.id(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE) PARTITION BY RANGE (${sql.id(key)})`.execute(
          db,
        );
        await sql`CREATE TABLE ${sql.id(defaultPartitionName(table))} PARTITION OF ${sql.id(part)} DEFAULT`.execute(
          db,
        );
        await sql`INSERT INTO ${sql.id(part)} SELECT * FROM ${sql.id(table)}`.execute(db);
        // The id sequence belongs to the new table now; dropping the old one would drop it too.
        const seq = await sql<{
          s: string | null;
        }>`SELECT pg_get_serial_sequence(${table}, 'id') AS s`.execute(db);
        const seqName = seq.rows[0]?.s;
        if (seqName) await sql`ALTER SEQUENCE ${sql.raw(seqName)} OWNED BY ${sql.id(part)}.id`.execute(db);
        await sql`DROP TABLE ${sql.id(table)}`.execute(db);
        await sql`ALTER TABLE ${sql.id(part)} RENAME TO ${sql.id(table)}`.execute(db);
        await sql`ALTER TABLE ${sql.id(table)} ADD CONSTRAINT ${sql.id(`${table}_pkey`)} PRIMARY KEY (id, ${sql.id(key)})`.execute(
          db,
        );
        for (const fk of fks) {
          await sql`ALTER TABLE ${sql.id(table)} ADD CONSTRAINT ${sql.id(fk.name)} ${sql.raw(fk.def)}`.execute(
            db,
          );
        }
        for (const ix of indexes) {
          if (ix.constraint === 'p') continue;
          if (ix.constraint === 'u') {
            // processes_identity: UNIQUE (host_id, boot_id, pid, start_ticks, exec_index) + the key.
            const cols = /\((.*)\)\s*$/.exec(ix.def)?.[1];
            if (!cols) throw new Error(`cannot read the columns of ${ix.name}: ${ix.def}`);
            await sql`ALTER TABLE ${sql.id(table)} ADD CONSTRAINT ${sql.id(ix.name)} UNIQUE (${sql.raw(cols)}, ${sql.id(key)})`.execute(
              db,
            );
            continue;
          }
          // pg_indexes gives each index's own CREATE INDEX statement, naming the table: run it again.
          await sql.raw(ix.def).execute(db);
        }
      }
      // Weeks for the rows already stored; a new store gets its first weeks from the server (at
      // start and as batches arrive), so a store only opened for a query or a test makes none.
      const span = await sql<{ lo: string | null; hi: string | null }>`
        SELECT min(t_from) AS lo, max(t_to) AS hi FROM batches`.execute(db);
      const { lo, hi } = span.rows[0] ?? { lo: null, hi: null };
      if (lo !== null && hi !== null) {
        const now = Date.now() * 1000;
        const first = Math.max(weekStart(Number(lo)), weekStart(now) - BACKFILL_WEEKS * WEEK_US);
        const last = Math.min(weekStart(Number(hi)), weekStart(now) + WEEKS_AHEAD * WEEK_US);
        for (let w = first; w <= last; w += WEEK_US) await createWeekIn(db, w);
      }
    },
    async down() {
      throw new Error('0015 (time partitions) is not reversible: restore from a backup instead');
    },
  };
}
