import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after } from 'node:test';
import { initStoreConfig, type StoreConfig } from '../../src/store/index.js';
import { createTestDatabase, ENGINE_ENV, PG_URL_ENV, type TestDatabase } from './store-dialects.js';

export { ENGINE_ENV };

/*
 * Which engine the data directories of CLI-driven tests (`pofr server init`, then real `pofr`
 * processes) store in, by POFR_TEST_ENGINE. Unset or `sqlite`: a SQLite file in the directory, as
 * `server init` makes by default. `postgres`: every new data directory gets a fresh PostgreSQL
 * database next to POFR_TEST_PG_URL (`server init --db URL`), dropped when the test file's tests are
 * done. Store-backed unit tests need none of this: they loop over DIALECTS themselves.
 */

export type DataDirEngine = 'sqlite' | 'postgres';

/** The engine POFR_TEST_ENGINE asks for; refuses a value it does not know and postgres without a URL. */
export function dataDirEngine(): DataDirEngine {
  const wanted = process.env[ENGINE_ENV] ?? 'sqlite';
  if (wanted !== 'sqlite' && wanted !== 'postgres') {
    throw new Error(`${ENGINE_ENV}=${wanted}: expected sqlite or postgres`);
  }
  if (wanted === 'postgres' && !process.env[PG_URL_ENV]) {
    // Silently testing SQLite instead would pass a run that was meant to test PostgreSQL.
    throw new Error(
      `${ENGINE_ENV}=postgres needs ${PG_URL_ENV}, e.g. ${PG_URL_ENV}=postgres://postgres@127.0.0.1:5432/test`,
    );
  }
  return wanted;
}

// One database per data directory made by this test file; all dropped after its last test (a root
// hook runs after every suite's own `after`, so the servers using them are stopped by then).
const made: TestDatabase[] = [];
after(async () => {
  const failures: unknown[] = [];
  for (const db of made.splice(0)) {
    try {
      await db.drop();
    } catch (e) {
      failures.push(e);
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, "could not drop the tests' databases");
});

/**
 * The `--db` options `server init` of `dataDir` takes under the chosen engine: none for SQLite or for
 * a directory initialised already (init is idempotent and keeps its store), else a fresh database.
 */
export async function initDbArgs(dataDir: string): Promise<string[]> {
  if (dataDirEngine() === 'sqlite' || existsSync(join(dataDir, 'config.json'))) return [];
  const db = await createTestDatabase(process.env[PG_URL_ENV] as string);
  made.push(db);
  return ['--db', db.url];
}

/** `initStoreConfig` for a test's data directory, on the chosen engine (see `initDbArgs`). */
export async function initTestDataDir(dataDir: string): Promise<StoreConfig> {
  const [, url] = await initDbArgs(dataDir);
  return initStoreConfig(dataDir, url);
}
