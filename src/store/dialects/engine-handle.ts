import type { Kysely, Transaction } from 'kysely';
import type { Capabilities } from '../capabilities.js';
import type { Database } from '../schema.js';

/** What each engine folder hands the store: a Kysely instance, its capabilities, and engine I/O. */
export interface EngineHandle {
  readonly db: Kysely<Database>;
  readonly caps: Capabilities;
  /** Runs analyst SQL that the engine itself guarantees cannot write. */
  readOnlyQuery(text: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /** A transaction for ingest's writes, tuned for them where the engine allows (see Store). */
  writeTransaction<T>(fn: (trx: Transaction<Database>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
