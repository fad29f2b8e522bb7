import type { Kysely } from 'kysely';
import type { Capabilities } from '../capabilities.js';
import type { Database } from '../schema.js';

/** What each engine folder hands the store: a Kysely instance, its capabilities, and engine I/O. */
export interface EngineHandle {
  readonly db: Kysely<Database>;
  readonly caps: Capabilities;
  /** Runs analyst SQL that the engine itself guarantees cannot write. */
  readOnlyQuery(text: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}
