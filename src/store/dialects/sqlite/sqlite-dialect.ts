import Database from 'better-sqlite3';
import { type DatabaseConnection, type Driver, Kysely, SqliteDialect, SqliteDriver, sql } from 'kysely';
import { PofrError } from '../../../errors.js';
import { sqliteCapabilities, sqliteRegex } from '../../capabilities.js';
import type { Database as Schema } from '../../schema.js';
import type { EngineHandle } from '../engine-handle.js';

function configure(conn: Database.Database): void {
  // LIKE must be case-sensitive as on PostgreSQL: paths and command lines are case-sensitive.
  conn.pragma('case_sensitive_like = ON');
  conn.function('regexp', { deterministic: true }, (pattern: unknown, value: unknown) => {
    if (value === null || value === undefined) return 0;
    return compileRegex(String(pattern)).test(String(value)) ? 1 : 0;
  });
}

const regexCache = new Map<string, RegExp>();
function compileRegex(pattern: string): RegExp {
  let re = regexCache.get(pattern);
  if (!re) {
    re = sqliteRegex(pattern);
    if (regexCache.size > 256) regexCache.clear();
    regexCache.set(pattern, re);
  }
  return re;
}

/**
 * SQLite rolls a transaction back by itself on some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM):
 * Kysely's ROLLBACK after that fails with "no transaction is active", and that error replaced the
 * one that mattered (a full disk reported as a rollback bug).
 */
class RollbackKeepingErrorDriver extends SqliteDriver {
  constructor(private readonly conn: Database.Database) {
    super({ database: preparingOnce(conn) });
  }

  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (this.conn.inTransaction) await super.rollbackTransaction(connection);
  }
}

/** Statements kept prepared per connection: ingest runs the same few hundred texts over and over. */
const STATEMENT_CACHE = 512;
/**
 * And at most this much statement text: a prepared statement costs ~20–40 bytes of memory per
 * character of its text, and ingest's multi-row INSERTs are up to ~8 kB each, so 512 of them could
 * hold ~70 MB. 256 k characters keep it near 10 MB; the fleet's whole working set is ~20 k.
 */
const STATEMENT_CACHE_CHARS = 256 * 1024;

/**
 * What Kysely's SQLite driver sees of the connection: the same database, but `prepare` hands back a
 * statement prepared once per text. Kysely prepares every query it runs, and that was a sixth of
 * ingest's time (docs/benchmarks.md). A statement still iterating (a streamed query) is never shared.
 */
export function preparingOnce(conn: Database.Database) {
  const cache = new Map<string, Database.Statement>();
  let chars = 0;
  return {
    close: () => conn.close(),
    /** What is kept now (tests). */
    cached: () => ({ statements: cache.size, chars }),
    prepare(text: string): Database.Statement {
      const hit = cache.get(text);
      if (hit !== undefined && !hit.busy) {
        // Most recently used last: the first entry is the one to evict.
        cache.delete(text);
        cache.set(text, hit);
        return hit;
      }
      const stmt = conn.prepare(text);
      if (hit === undefined && text.length <= STATEMENT_CACHE_CHARS / 8) {
        while (
          cache.size > 0 &&
          (cache.size >= STATEMENT_CACHE || chars + text.length > STATEMENT_CACHE_CHARS)
        ) {
          const oldest = cache.keys().next().value as string;
          cache.delete(oldest);
          chars -= oldest.length;
        }
        cache.set(text, stmt);
        chars += text.length;
      }
      return stmt;
    },
  };
}

class StoreSqliteDialect extends SqliteDialect {
  constructor(private readonly conn: Database.Database) {
    super({ database: preparingOnce(conn) });
  }

  override createDriver(): Driver {
    return new RollbackKeepingErrorDriver(this.conn);
  }
}

/** Opens (creating if needed) a SQLite store file in WAL mode. */
export function openSqliteEngine(path: string): EngineHandle {
  let conn: Database.Database;
  try {
    conn = new Database(path);
  } catch (e) {
    throw new PofrError('POFR_STORE_CONFIG', `cannot open SQLite store ${path}: ${(e as Error).message}`);
  }
  // WAL lets analysts read while the server ingests. synchronous=FULL because the server ACKs a
  // batch right after COMMIT and the client then deletes its copy: the commit must survive power loss.
  conn.pragma('journal_mode = WAL');
  conn.pragma('synchronous = FULL');
  conn.pragma('foreign_keys = ON');
  conn.pragma('busy_timeout = 10000');
  configure(conn);
  const db = new Kysely<Schema>({ dialect: new StoreSqliteDialect(conn) });
  return {
    db,
    caps: sqliteCapabilities,
    writeTransaction: (fn) =>
      // One connection throughout, so no other query runs between the pragmas and the transaction.
      // temp_store decides where statement journals go (SQLITE_STMTJRNL_SPILL, which would keep
      // them in memory whatever the temp store, is a process-wide setting better-sqlite3 does not
      // expose); a journal holds the pages one statement or savepoint touched, so a batch bounds it.
      db.connection().execute(async (conn) => {
        await sql`PRAGMA temp_store = MEMORY`.execute(conn);
        try {
          return await conn.transaction().execute(fn);
        } finally {
          await sql`PRAGMA temp_store = DEFAULT`.execute(conn);
        }
      }),
    async readOnlyQuery(text: string, params: readonly unknown[] = []) {
      const ro = new Database(path, { readonly: true, fileMustExist: true });
      try {
        configure(ro);
        const stmt = ro.prepare(text);
        if (!stmt.readonly) {
          throw new PofrError(
            'POFR_SQL_READONLY',
            'pofr sql runs read-only statements only (SELECT, WITH …)',
          );
        }
        if (!stmt.reader) return [];
        return stmt.all(...params) as Record<string, unknown>[];
      } finally {
        ro.close();
      }
    },
    async close() {
      await db.destroy();
    },
  };
}
