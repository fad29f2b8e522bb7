import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import pg from 'pg';
import { openStore, type Store } from '../../src/store/index.js';

/** The engines every store-backed test runs against, as Kysely's test suite loops over its dialects. */
export const DIALECTS = ['sqlite', 'postgres'] as const;
export type DialectName = (typeof DIALECTS)[number];

/** Where PostgreSQL tests connect; unset means the PostgreSQL variant is skipped, with that reason. */
export const PG_URL_ENV = 'POFR_TEST_PG_URL';

/** Which engine CLI-driven tests' data directories use (`sqlite` or `postgres`): data-dir-engine.ts. */
export const ENGINE_ENV = 'POFR_TEST_ENGINE';

export interface TestStore {
  readonly store: Store;
  /** Closes the store and removes what was created for it (temp dir or database). */
  cleanup(): Promise<void>;
}

/**
 * Runs `body` with a fresh, migrated store of `dialect`, removed afterwards even when `body` throws.
 * When the dialect is not available here, the test is marked skipped with the reason and `body` never runs.
 *
 * @example
 * for (const dialect of DIALECTS) {
 *   test(`[${dialect}] stores a host`, (t) => withStore(t, dialect, async (store) => { … }));
 * }
 */
export async function withStore(
  t: TestContext,
  dialect: DialectName,
  body: (store: Store) => Promise<void>,
): Promise<void> {
  const ts = await createTestStore(dialect);
  if (ts === null) {
    t.skip(
      `${PG_URL_ENV} not set: PostgreSQL tests need e.g. ${PG_URL_ENV}=postgres://postgres@127.0.0.1:5432/test`,
    );
    return;
  }
  try {
    await body(ts.store);
  } finally {
    await ts.cleanup();
  }
}

/** A fresh store of `dialect`, or null when PostgreSQL is asked for and POFR_TEST_PG_URL is unset. */
export async function createTestStore(dialect: DialectName): Promise<TestStore | null> {
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'pofr-store-'));
    let store: Store;
    try {
      store = await openStore({ kind: 'sqlite', path: join(dir, 'pofr.db') });
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return {
      store,
      async cleanup() {
        try {
          await store.close();
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  }
  const adminUrl = process.env[PG_URL_ENV];
  if (!adminUrl) return null;
  const db = await createTestDatabase(adminUrl);
  let store: Store;
  try {
    store = await openStore({ kind: 'postgres', url: db.url });
  } catch (e) {
    await db.drop();
    throw e;
  }
  return {
    store,
    async cleanup() {
      try {
        await store.close();
      } finally {
        await db.drop();
      }
    },
  };
}

/** An empty PostgreSQL database made for one test, next to the one `adminUrl` names. */
export interface TestDatabase {
  readonly url: string;
  /** Ends every connection still open to it (a server a test left running) and drops it. */
  drop(): Promise<void>;
}

/** Creates an empty database (not a schema: migrations, sequences and DROP stay fully isolated). */
export async function createTestDatabase(adminUrl: string): Promise<TestDatabase> {
  const dbName = `pofr_t_${randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE ${dbName}`);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  return { url: url.toString(), drop: () => dropDatabase(adminUrl, dbName) };
}

async function dropDatabase(adminUrl: string, dbName: string): Promise<void> {
  await adminQuery(
    adminUrl,
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
    [dbName],
  );
  await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${dbName}`);
}

// dbName is generated above from hex digits only, so interpolating it into DDL is safe.
async function adminQuery(url: string, text: string, params: unknown[] = []): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text, params);
  } finally {
    await client.end();
  }
}
