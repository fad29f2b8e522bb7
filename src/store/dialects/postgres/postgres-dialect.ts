import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { PofrError } from '../../../errors.js';
import { postgresCapabilities } from '../../capabilities.js';
import type { Database as Schema } from '../../schema.js';
import type { EngineHandle } from '../engine-handle.js';

// Times are bigint microseconds; they stay below 2^53 for the next 250 years, so numbers are exact.
pg.types.setTypeParser(20, (v: string) => Number(v));

/** Connects to PostgreSQL; several `pofr server run` nodes may share one database. */
export function openPostgresEngine(url: string): EngineHandle {
  const pool = new pg.Pool({ connectionString: url, max: 8 });
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  return {
    db,
    caps: postgresCapabilities,
    async readOnlyQuery(text: string, params: readonly unknown[] = []) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN TRANSACTION READ ONLY');
        try {
          const res = await client.query(text, params as unknown[]);
          return res.rows as Record<string, unknown>[];
        } catch (e) {
          const err = e as { code?: string; message: string };
          if (err.code === '25006') {
            throw new PofrError('POFR_SQL_READONLY', 'pofr sql runs read-only statements only (SELECT, WITH …)');
          }
          throw e;
        } finally {
          await client.query('ROLLBACK');
        }
      } finally {
        client.release();
      }
    },
    async close() {
      await db.destroy();
    },
  };
}
