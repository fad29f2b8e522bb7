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
   * The same test in JavaScript, when it is exactly the engine's (live detection tests rows in
   * memory and must agree with the SQL); undefined when only the engine can say.
   */
  readonly regexTest?: (pattern: string) => (text: string) => boolean;
  /** What the engine's lower() makes of a text, in JavaScript (live detection's case folding). */
  readonly lowerText: (text: string) => string;
  /**
   * True when transactions may write at once (PostgreSQL: a connection pool, and several server
   * nodes sharing the database); ingest then takes a row lock per host. SQLite's one connection per
   * server runs one transaction at a time.
   */
  readonly concurrentWriters: boolean;
}

/** The regular expression SQLite's registered regexp() tests (JavaScript's, Unicode mode). */
export function sqliteRegex(pattern: string): RegExp {
  return new RegExp(pattern, 'u');
}

/**
 * PostgreSQL's lower() under a UTF-8 ctype: each character on its own to its lower case, one
 * character for one (no final sigma; İ becomes i), as towlower() does.
 */
function simpleLower(text: string): string {
  // ASCII only: the fast path.
  if (/^[\u0000-\u007f]*$/.test(text)) return text.toLowerCase();
  let out = '';
  for (const ch of text) {
    // toLowerCase of a lone character never sees a context; a longer answer (İ → i + dot) keeps
    // its first character, as a one-to-one mapping would.
    out += String.fromCodePoint(ch.toLowerCase().codePointAt(0)!);
  }
  return out;
}

export const sqliteCapabilities: Capabilities = Object.freeze({
  engine: 'sqlite',
  bytesType: 'blob',
  idType: 'integer',
  idColumn: (col: ColumnDefinitionBuilder) => col.primaryKey().autoIncrement(),
  // regexp() is registered on every connection by the SQLite dialect (JS RegExp semantics).
  regexMatch: (expr: RawBuilder<unknown>, pattern: string) => sql<boolean>`regexp(${pattern}, ${expr})`,
  regexTest: (pattern: string) => {
    const re = sqliteRegex(pattern);
    return (text: string) => re.test(text);
  },
  // SQLite's built-in lower() folds ASCII letters only.
  lowerText: (text: string) => text.replace(/[A-Z]+/g, (m) => m.toLowerCase()),
  concurrentWriters: false,
});

export const postgresCapabilities: Capabilities = Object.freeze({
  engine: 'postgres',
  bytesType: 'bytea',
  idType: 'bigserial',
  idColumn: (col: ColumnDefinitionBuilder) => col.primaryKey(),
  regexMatch: (expr: RawBuilder<unknown>, pattern: string) => sql<boolean>`(${expr} ~ ${pattern})`,
  // `~` is POSIX ARE (\y, not \b, is a word boundary…): JavaScript cannot stand in for it.
  regexTest: undefined,
  lowerText: simpleLower,
  concurrentWriters: true,
});
