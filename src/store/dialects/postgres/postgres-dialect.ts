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
  // An idle connection that PostgreSQL drops (restart, admin kill) is an 'error' event on the pool;
  // unhandled, it would crash `pofr server run`. The pool discards the client and opens a new one.
  pool.on('error', (err) => {
    process.emitWarning(`pofr: PostgreSQL connection lost (${err.message}); reconnecting on next use`);
  });
  let analystRoleReady: Promise<void> | null = null;
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  return {
    db,
    caps: postgresCapabilities,
    writeTransaction: (fn) => db.transaction().execute(fn),
    async readOnlyQuery(text: string, params: readonly unknown[] = []) {
      analystRoleReady ??= ensureAnalystRole(pool).catch((e: Error) => {
        analystRoleReady = null;
        throw new PofrError(
          'POFR_SQL_READONLY',
          `pofr sql on PostgreSQL runs as role ${ANALYST_ROLE}, which could not be prepared (${e.message}); ` +
            `as a superuser run: CREATE ROLE ${ANALYST_ROLE} NOLOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${ANALYST_ROLE}; GRANT ${ANALYST_ROLE} TO <pofr's user>`,
        );
      });
      await analystRoleReady;
      const client = await pool.connect();
      try {
        // READ ONLY stops writes; the unprivileged role stops what READ ONLY allows a superuser
        // (COPY … TO PROGRAM, pg_read_file, pg_terminate_backend); the extended protocol runs exactly
        // one statement, so "COMMIT; DELETE …" cannot escape the transaction.
        await client.query('BEGIN TRANSACTION READ ONLY');
        try {
          await client.query(`SET LOCAL ROLE ${ANALYST_ROLE}`);
          // `queryMode` is honoured by pg 8.x (lib/query.js) but missing from @types/pg.
          const config = { text, values: params as unknown[], queryMode: 'extended' } as pg.QueryConfig;
          const res = await client.query(config);
          return res.rows as Record<string, unknown>[];
        } catch (e) {
          const err = e as { code?: string; message: string };
          if (err.code === '25006' || err.code === '42501') {
            throw new PofrError(
              'POFR_SQL_READONLY',
              `pofr sql runs read-only statements on pofr's tables only: ${err.message}`,
            );
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

const ANALYST_ROLE = 'pofr_analyst';

/** Creates (once per cluster) the unprivileged role analyst SQL runs as, and lets it read pofr's tables. */
async function ensureAnalystRole(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [ANALYST_ROLE]);
    if (exists.rowCount === 0) {
      try {
        await client.query(`CREATE ROLE ${ANALYST_ROLE} NOLOGIN`);
      } catch (e) {
        // Another node or test created it at the same moment.
        const code = (e as { code?: string }).code;
        if (code !== '42710' && code !== '23505') throw e;
      }
    }
    await client.query(`GRANT USAGE ON SCHEMA public TO ${ANALYST_ROLE}`);
    await client.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${ANALYST_ROLE}`);
    // Server secrets (the shared SSH host key, the registration password's hash) are not analysts' data.
    await client.query(`REVOKE SELECT ON server_settings FROM ${ANALYST_ROLE}`);
    const member = await client.query('SELECT pg_has_role(current_user, $1, $2) AS ok', [
      ANALYST_ROLE,
      'MEMBER',
    ]);
    if (!member.rows[0]?.ok) await client.query(`GRANT ${ANALYST_ROLE} TO CURRENT_USER`);
  } finally {
    client.release();
  }
}
