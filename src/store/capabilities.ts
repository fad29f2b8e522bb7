import { type ColumnDefinitionBuilder, type RawBuilder, sql } from 'kysely';
import { areStandIn } from './posix-regex.js';
import { requiredLiteral } from './regex-literal.js';

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
   * A boolean SQL expression over a `processes` row (its `id`, `cmdline` and `exe` given): one of
   * the two holds `term` literally, as `LIKE '%term%'` decides (case-sensitive on both engines).
   * Where the engine's planner cannot reach the trigram index of migration 0016 by itself, the
   * expression looks it up first and keeps the LIKE as the recheck, so the rows are the LIKE's.
   */
  readonly commandContains: (p: CommandColumns, term: string) => RawBuilder<boolean>;
  /**
   * A boolean SQL expression over a `processes` row: its `cmdline` or `exe` matches the regular
   * expression `pattern` (regexMatch), helped by the trigram index where the engine needs it.
   */
  readonly commandMatches: (p: CommandColumns, pattern: string) => RawBuilder<boolean>;
  /**
   * The same test in JavaScript, where it is exactly the engine's (live detection and hunt test rows
   * in memory and must agree with the SQL): `test` answers null for a text only the engine can
   * decide, and `total` says it never does. Undefined (the function or its answer) when only the
   * engine can say for that pattern. Throws for a pattern the engine refuses, where it can tell.
   */
  readonly regexTest?: (pattern: string) => RegexStandIn | undefined;
  /** What the engine's lower() makes of a text, in JavaScript (live detection's case folding). */
  readonly lowerText: (text: string) => string;
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
  /**
   * A boolean SQL expression: the file path `expr` equals `path`, written so the engine reaches the
   * path indexes. PostgreSQL indexes a path's first PATH_KEY_CHARS characters only (migration 0017:
   * a B-tree entry holds ~2.7 kB, and a path, its undecodable bytes spelled \xNN, can be 16 kB).
   */
  readonly pathEquals: (expr: RawBuilder<unknown>, path: string) => RawBuilder<boolean>;
  /**
   * Settings for one transaction of many similar page reads (a retro-hunt), run at its start;
   * empty where none help. PostgreSQL: no JIT compilation and no parallel workers — each page of
   * 20,000 rows otherwise spent ~240 ms compiling and starting workers before its first row.
   */
  readonly bulkReadSettings: readonly RawBuilder<unknown>[];
  /**
   * A JSON array of `items` as text (numbers as numbers, NULL as null): rows of different shapes
   * in one result, so that live detection reads a batch's three tables in one statement.
   */
  readonly jsonArray: (items: readonly RawBuilder<unknown>[]) => RawBuilder<string>;
  /**
   * The row of the subquery named `alias` as a JSON object's text (its columns in order, numbers
   * as numbers), so that rows of different tables come back from one statement; null where a
   * statement costs no round trip (SQLite runs in the server's process), and one per table is
   * as cheap. PostgreSQL: live detection reads a batch's matches in every table at once.
   */
  readonly rowJson: ((alias: string) => RawBuilder<string>) | null;
  /**
   * How one transaction streams a long query's rows a chunk at a time, or null where reading it a
   * page at a time by id is as cheap (SQLite: pages walk the rowid B-tree, and a join's lookup by
   * rowid costs no plan). PostgreSQL: a cursor, so the planner joins a whole table at once (hash or
   * merge join) where pages of ORDER BY id LIMIT get a nested loop probing every weekly partition
   * per row (a retro-hunt's parent join: 170 ms a page of 20,000 processes, against 27 ms without).
   */
  readonly cursor: CursorStatements | null;
  /**
   * Settings around a long read's lookups of rows by a list of ids (a retro-hunt's matches), and
   * the ones that restore the long read's: empty where none help. PostgreSQL: no sequential scans,
   * since a partition without statistics (a store bulk-loaded with autovacuum off; partitioned
   * parents are never analyzed by autovacuum) makes 500 ids look like 140,000 rows a partition, and
   * each chunk of ids a scan of the whole table (440 ms against 40 ms by index, 10 M events).
   */
  readonly byIdReadSettings: {
    readonly before: readonly RawBuilder<unknown>[];
    readonly after: readonly RawBuilder<unknown>[];
  };
}

/** A regular expression's test in JavaScript (Capabilities.regexTest). */
export interface RegexStandIn {
  readonly test: (text: string) => boolean | null;
  /** True when `test` never answers null. */
  readonly total: boolean;
}

/** The statements of a server-side cursor (Capabilities.cursor), inside a transaction. */
export interface CursorStatements {
  readonly open: (name: string, query: RawBuilder<unknown>) => RawBuilder<unknown>;
  /** At most `rows` more rows; fewer only at the end. */
  readonly fetch: (name: string, rows: number) => RawBuilder<Record<string, unknown>>;
  readonly close: (name: string) => RawBuilder<unknown>;
}

/**
 * How many characters of a path PostgreSQL's path indexes hold (migration 0017): at most four bytes
 * each, 2,048 bytes with the row's other key columns stay under a B-tree entry's 2,704-byte limit.
 */
export const PATH_KEY_CHARS = 512;

/** The columns of a `processes` row that commandContains reads. */
export interface CommandColumns {
  readonly id: RawBuilder<unknown>;
  readonly cmdline: RawBuilder<unknown>;
  readonly exe: RawBuilder<unknown>;
}

/** `LIKE '%term%'` on either column, the term's wildcards and escape character taken literally. */
function likeEither(p: CommandColumns, term: string): RawBuilder<boolean> {
  const like = `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  return sql<boolean>`(${p.cmdline} LIKE ${like} ESCAPE '\\' OR ${p.exe} LIKE ${like} ESCAPE '\\')`;
}

/** At most this many of a term's trigrams are asked of the index: a longer term is rechecked anyway. */
const MAX_QUERY_TRIGRAMS = 32;

/**
 * The FTS5 query for the rows that hold every trigram of `term` (three characters or more: shorter
 * ones hold no trigram). The table keeps no positions (migration 0020), so it takes no phrase of
 * several trigrams: each is asked on its own, ANDed, a superset of the rows holding the term that
 * the caller's LIKE or regexp narrows. Each trigram is matched literally: inside double quotes only
 * a double quote is special, and it is doubled. Trigrams are of code points, as the tokenizer's.
 */
export function trigramQuery(term: string): string {
  const chars = [...term];
  const grams = new Set<string>();
  for (let i = 0; i + 3 <= chars.length; i++) grams.add(chars.slice(i, i + 3).join(''));
  const all = [...grams];
  // Spread over the whole term, so its end narrows as much as its start.
  const asked =
    all.length <= MAX_QUERY_TRIGRAMS
      ? all
      : Array.from(
          { length: MAX_QUERY_TRIGRAMS },
          (_, k) => all[Math.round((k * (all.length - 1)) / (MAX_QUERY_TRIGRAMS - 1))],
        );
  return asked.map((g) => `"${g.replaceAll('"', '""')}"`).join(' AND ');
}

/** Terms of three characters or more go through the trigram table; shorter ones are a LIKE alone. */
function sqliteCommandContains(p: CommandColumns, term: string): RawBuilder<boolean> {
  if ([...term].length < 3) return likeEither(p, term);
  return sql<boolean>`(${p.id} IN (SELECT rowid FROM processes_trigram WHERE processes_trigram MATCH ${trigramQuery(term)}) AND ${likeEither(p, term)})`;
}

function regexEither(
  regexMatch: Capabilities['regexMatch'],
  p: CommandColumns,
  pattern: string,
): RawBuilder<boolean> {
  return sql<boolean>`(${regexMatch(p.cmdline, pattern)} OR ${regexMatch(p.exe, pattern)})`;
}

// regexp() is registered on every connection by the SQLite dialect (JS RegExp semantics).
const sqliteRegexSql = (expr: RawBuilder<unknown>, pattern: string) =>
  sql<boolean>`regexp(${pattern}, ${expr})`;

/** A pattern that requires a run of three characters or more: the rows holding it, then the regexp. */
function sqliteCommandMatches(p: CommandColumns, pattern: string): RawBuilder<boolean> {
  const literal = requiredLiteral(pattern);
  if (literal === null || [...literal].length < 3) return regexEither(sqliteRegexSql, p, pattern);
  return sql<boolean>`(${p.id} IN (SELECT rowid FROM processes_trigram WHERE processes_trigram MATCH ${trigramQuery(literal)}) AND ${regexEither(sqliteRegexSql, p, pattern)})`;
}

const postgresRegex = (expr: RawBuilder<unknown>, pattern: string) => sql<boolean>`(${expr} ~ ${pattern})`;

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
  regexMatch: sqliteRegexSql,
  commandContains: sqliteCommandContains,
  commandMatches: sqliteCommandMatches,
  regexTest: (pattern: string) => {
    const re = sqliteRegex(pattern);
    return { test: (text: string) => re.test(text), total: true };
  },
  // SQLite's built-in lower() folds ASCII letters only.
  lowerText: (text: string) => text.replace(/[A-Z]+/g, (m) => m.toLowerCase()),
  concurrentWriters: false,
  timePartitions: false,
  dataModifyingCtes: false,
  // SQLite's B-tree keys have no size limit: the whole path is the key.
  pathEquals: (expr: RawBuilder<unknown>, path: string) => sql<boolean>`(${expr} = ${path})`,
  bulkReadSettings: [],
  jsonArray: (items: readonly RawBuilder<unknown>[]) => sql<string>`json_array(${sql.join(items)})`,
  rowJson: null,
  cursor: null,
  byIdReadSettings: { before: [], after: [] },
});

export const postgresCapabilities: Capabilities = Object.freeze({
  engine: 'postgres',
  bytesType: 'bytea',
  idType: 'bigserial',
  idColumn: (col: ColumnDefinitionBuilder) => col.primaryKey(),
  regexMatch: postgresRegex,
  // pg_trgm's GIN indexes serve the LIKE itself (a short term too: then by a full index scan), and
  // the regular expression match: it extracts the trigrams a pattern requires by itself.
  commandContains: likeEither,
  commandMatches: (p: CommandColumns, pattern: string) => regexEither(postgresRegex, p, pattern),
  // `~` is POSIX ARE (\y, not \b, is a word boundary…): JavaScript stands in for it only where
  // both read a pattern the same way, on ASCII texts (posix-regex.ts).
  regexTest: (pattern: string) => {
    const test = areStandIn(pattern);
    return test === undefined ? undefined : { test, total: false };
  },
  lowerText: simpleLower,
  concurrentWriters: true,
  timePartitions: true,
  dataModifyingCtes: true,
  pathEquals: (expr: RawBuilder<unknown>, path: string) =>
    sql<boolean>`(substr(${expr}, 1, ${sql.lit(PATH_KEY_CHARS)}) = substr(cast(${path} as text), 1, ${sql.lit(PATH_KEY_CHARS)}) AND ${expr} = ${path})`,
  // A cursor is planned for its first tenth of rows by default (a nested loop, then): a hunt reads
  // them all.
  bulkReadSettings: [
    sql`set local jit = off`,
    sql`set local max_parallel_workers_per_gather = 0`,
    sql`set local cursor_tuple_fraction = 1`,
  ],
  jsonArray: (items: readonly RawBuilder<unknown>[]) =>
    sql<string>`cast(json_build_array(${sql.join(items)}) as text)`,
  rowJson: (alias: string) => sql<string>`cast(row_to_json(${sql.id(alias)}) as text)`,
  cursor: {
    // FETCH and DECLARE take no parameters for names and counts: the name is an identifier, the
    // count a literal integer.
    open: (name: string, query: RawBuilder<unknown>) =>
      sql`declare ${sql.id(name)} no scroll cursor for ${query}`,
    fetch: (name: string, rows: number) =>
      sql<Record<string, unknown>>`fetch forward ${sql.lit(Math.floor(rows))} from ${sql.id(name)}`,
    close: (name: string) => sql`close ${sql.id(name)}`,
  },
  byIdReadSettings: {
    before: [sql`set local enable_seqscan = off`],
    after: [sql`set local enable_seqscan = on`],
  },
});
