import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Kysely, Transaction } from 'kysely';
import { PofrError } from '../errors.js';
import type { Capabilities } from './capabilities.js';
import type { EngineHandle } from './dialects/engine-handle.js';
import { openPostgresEngine } from './dialects/postgres/postgres-dialect.js';
import { openSqliteEngine } from './dialects/sqlite/sqlite-dialect.js';
import { migrateToLatest } from './migrate.js';
import type { Database } from './schema.js';

/** Where the store lives: a SQLite file (embedded default) or a PostgreSQL URL (scale-out). */
export type StoreConfig =
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'postgres'; readonly url: string };

/**
 * The open store: a typed Kysely instance plus what differs between engines.
 *
 * @example
 * const store = await openStore({ kind: 'sqlite', path: '/srv/pofr/pofr.db' });
 * const hosts = await store.db.selectFrom('hosts').selectAll().execute();
 * await store.close();
 */
export interface Store {
  readonly db: Kysely<Database>;
  readonly caps: Capabilities;
  readonly config: StoreConfig;
  /** Analyst SQL, enforced read-only by the engine itself. */
  readOnlyQuery(text: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /**
   * A transaction for ingest's many-row writes. On SQLite its statement journals stay in memory:
   * every multi-row INSERT (and every savepoint) first copies each page it touches to a statement
   * journal, a temp file past 64 KiB, at two writes a page; at a thousand hosts that was a third
   * of the server's CPU (docs/benchmarks.md, fleet). Only for its length: an analyst's query on
   * the same connection keeps its large sorts and temp tables on disk.
   */
  writeTransaction<T>(fn: (trx: Transaction<Database>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export function isPostgresUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//.test(s);
}

/** Opens the store and migrates it to the latest schema version. */
export async function openStore(config: StoreConfig): Promise<Store> {
  const engine: EngineHandle =
    config.kind === 'sqlite' ? openSqliteEngine(config.path) : openPostgresEngine(config.url);
  try {
    await migrateToLatest(engine.db, engine.caps);
  } catch (e) {
    await engine.close();
    throw e;
  }
  return Object.freeze({
    db: engine.db,
    caps: engine.caps,
    config,
    readOnlyQuery: engine.readOnlyQuery,
    writeTransaction: engine.writeTransaction,
    close: engine.close,
  });
}

const CONFIG_FILE = 'config.json';
const SQLITE_FILE = 'pofr.db';

/**
 * Records in `DIR/config.json` which store a data directory uses (`server init --db`), so every later
 * command finds it from `--data` alone. Idempotent; refuses to switch an initialised directory.
 */
export function initStoreConfig(dataDir: string, dbUrl?: string): StoreConfig {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, CONFIG_FILE);
  if (existsSync(file)) {
    const existing = readStoreConfig(dataDir);
    const wanted = dbUrl ?? (existing.kind === 'sqlite' ? 'sqlite' : existing.url);
    const have = existing.kind === 'sqlite' ? 'sqlite' : existing.url;
    if (dbUrl !== undefined && wanted !== have) {
      throw new PofrError(
        'POFR_STORE_CONFIG',
        `${dataDir} is already initialised with store ${have}; use another --data directory for ${dbUrl}`,
      );
    }
    return existing;
  }
  if (dbUrl !== undefined && dbUrl !== 'sqlite' && !isPostgresUrl(dbUrl)) {
    throw new PofrError('POFR_STORE_CONFIG', `--db ${dbUrl} is not a postgres:// URL; omit it for SQLite`);
  }
  const db = dbUrl === undefined || dbUrl === 'sqlite' ? 'sqlite' : dbUrl;
  writeFileSync(file, `${JSON.stringify({ db }, null, 2)}\n`, { mode: 0o600 });
  return readStoreConfig(dataDir);
}

/** Reads `DIR/config.json`; throws POFR_STORE_INIT when the directory was never initialised. */
export function readStoreConfig(dataDir: string): StoreConfig {
  const file = join(dataDir, CONFIG_FILE);
  if (!existsSync(file)) {
    throw new PofrError(
      'POFR_STORE_INIT',
      `${dataDir} has no pofr store; run: pofr server init --data ${dataDir}`,
    );
  }
  let parsed: { db?: unknown };
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as { db?: unknown };
  } catch (e) {
    throw new PofrError('POFR_STORE_CONFIG', `${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (parsed.db === 'sqlite') return { kind: 'sqlite', path: resolve(dataDir, SQLITE_FILE) };
  if (typeof parsed.db === 'string' && isPostgresUrl(parsed.db)) return { kind: 'postgres', url: parsed.db };
  throw new PofrError('POFR_STORE_CONFIG', `${file}: "db" must be "sqlite" or a postgres:// URL`);
}

/**
 * The Sigma rule sources (directories, files or "bundled") this data directory's server evaluates
 * on every batch: `config.json`'s "rules", set by `server init --rules`. Every ingest path reads it —
 * `server run` and OpenSSH mode's forced command, which has no options of its own. [] when unset.
 */
export function readConfiguredRules(dataDir: string): string[] {
  readStoreConfig(dataDir);
  const file = join(dataDir, CONFIG_FILE);
  const rules = (readConfigJson(file) as { rules?: unknown }).rules;
  if (rules === undefined) return [];
  if (!Array.isArray(rules) || rules.some((r) => typeof r !== 'string')) {
    throw new PofrError('POFR_STORE_CONFIG', `${file}: "rules" must be a list of rule directories or files`);
  }
  return rules as string[];
}

/** Records the rule sources in `config.json` (an empty list removes them); the store stays as it is. */
export function writeConfiguredRules(dataDir: string, rules: readonly string[]): void {
  readStoreConfig(dataDir);
  const file = join(dataDir, CONFIG_FILE);
  const { rules: _old, ...rest } = readConfigJson(file) as Record<string, unknown>;
  const next = rules.length > 0 ? { ...rest, rules } : rest;
  writeFileSync(`${file}.tmp`, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

function readConfigJson(file: string): object {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as object;
  } catch (e) {
    throw new PofrError('POFR_STORE_CONFIG', `${file} is not valid JSON: ${(e as Error).message}`);
  }
}
