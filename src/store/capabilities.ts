import { type ColumnDefinitionBuilder, type RawBuilder, sql } from 'kysely';

/**
 * What differs between engines, as data (Kysely's habit): queries and migrations ask the
 * capabilities object, never `if (engine === 'sqlite')`.
 */
export interface Capabilities {
  /** For display and logs only. */
  readonly engine: 'sqlite' | 'postgres';
  /** Column type for exact bytes. */
  readonly bytesType: 'blob' | 'bytea';
  /** Column type of an auto-generated 64-bit row id. */
  readonly idType: 'integer' | 'bigserial';
  /** Makes the id column's builder generate values (SQLite needs AUTOINCREMENT to never reuse ids). */
  readonly idColumn: (col: ColumnDefinitionBuilder) => ColumnDefinitionBuilder;
  /** A boolean SQL expression: `expr` matches the POSIX-style regular expression `pattern`. */
  readonly regexMatch: (expr: RawBuilder<unknown>, pattern: string) => RawBuilder<boolean>;
  /**
   * True when transactions may write at once (PostgreSQL: a connection pool, and several server
   * nodes sharing the database); ingest then takes a row lock per host. SQLite's one connection per
   * server runs one transaction at a time.
   */
  readonly concurrentWriters: boolean;
  /**
   * True when the event tables are partitioned by week (PostgreSQL, migration 0015): ingest makes a
   * batch's weeks before its transaction, and prune drops whole weeks (src/store/partitions.ts).
   */
  readonly timePartitions: boolean;
  /**
   * True when a statement may hold INSERT/UPDATE in its WITH clauses (PostgreSQL): ingest then sends
   * a batch's writes as one statement, one round trip (SQLite's statements cost none: in process).
   */
  readonly dataModifyingCtes: boolean;
}

export const sqliteCapabilities: Capabilities = Object.freeze({
  engine: 'sqlite',
  bytesType: 'blob',
  idType: 'integer',
  idColumn: (col: ColumnDefinitionBuilder) => col.primaryKey().autoIncrement(),
  // regexp() is registered on every connection by the SQLite dialect (JS RegExp semantics).
  regexMatch: (expr: RawBuilder<unknown>, pattern: string) => sql<boolean>`regexp(${pattern}, ${expr})`,
  concurrentWriters: false,
  timePartitions: false,
  dataModifyingCtes: false,
});

export const postgresCapabilities: Capabilities = Object.freeze({
  engine: 'postgres',
  bytesType: 'bytea',
  idType: 'bigserial',
  idColumn: (col: ColumnDefinitionBuilder) => col.primaryKey(),
  regexMatch: (expr: RawBuilder<unknown>, pattern: string) => sql<boolean>`(${expr} ~ ${pattern})`,
  concurrentWriters: true,
  timePartitions: true,
  dataModifyingCtes: true,
});
