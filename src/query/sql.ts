import { PofrError } from '../errors.js';
import type { Store } from '../store/index.js';

/**
 * Runs one analyst statement on the store, read-only: the engine refuses writes (SQLite opens the
 * file read-only, PostgreSQL runs a READ ONLY transaction). Bytes come back as base64 strings so
 * that every row can be printed as JSON.
 *
 * @example
 * await runSql(store, 'SELECT comm, count(*) AS n FROM processes GROUP BY comm ORDER BY n DESC');
 */
export async function runSql(
  store: Store,
  text: string,
): Promise<readonly Readonly<Record<string, unknown>>[]> {
  if (text.trim() === '')
    throw new PofrError('POFR_USAGE', 'the statement is empty; give one, e.g. "SELECT * FROM hosts"');
  if (hasSecondStatement(text)) {
    // PostgreSQL's simple protocol runs "COMMIT; DELETE …" as two statements, the second outside
    // the read-only transaction: refuse before the engine sees it.
    throw new PofrError(
      'POFR_SQL_READONLY',
      'only one statement may run at a time; remove everything after the ";"',
    );
  }
  const keyword = firstKeyword(text);
  if (!READING_STATEMENTS.has(keyword)) {
    throw new PofrError(
      'POFR_SQL_READONLY',
      `only read-only queries may run (SELECT, WITH, VALUES, TABLE, EXPLAIN, SHOW, PRAGMA), not ${keyword.toUpperCase() || 'this statement'}`,
    );
  }
  let rows: Record<string, unknown>[];
  try {
    rows = await store.readOnlyQuery(text);
  } catch (e) {
    if (e instanceof PofrError) throw e;
    const err = e as { code?: string; message?: string };
    // SQLITE_READONLY*: the read-only connection refused a write that the statement check let through.
    if (typeof err.code === 'string' && err.code.startsWith('SQLITE_READONLY')) {
      throw new PofrError('POFR_SQL_READONLY', `only read-only statements may run: ${err.message}`);
    }
    throw new PofrError('POFR_USAGE', `the statement failed: ${err.message ?? String(e)}`);
  }
  return Object.freeze(rows.map((r) => Object.freeze(toJsonValues(r))));
}

function toJsonValues(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (v instanceof Uint8Array)
      out[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
    else if (typeof v === 'bigint') out[k] = Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
    else if (v instanceof Date) out[k] = v.toISOString();
    else out[k] = v;
  }
  return out;
}

// What PostgreSQL lexes as an identifier or keyword: it starts with a letter, _ or non-ASCII and goes
// on with those, digits and $.
const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;

// Statements that only read. Anything else (COPY … TO PROGRAM, DO, CALL, SET, LOCK, …) is refused
// here even where the engine's read-only mode would let it through.
const READING_STATEMENTS = new Set(['select', 'with', 'values', 'table', 'explain', 'show', 'pragma']);

/** The statement's first keyword, lower-cased, past leading comments and parentheses. */
export function firstKeyword(text: string): string {
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c) || c === '(') i++;
    else if (c === '-' && text[i + 1] === '-') {
      const eol = text.slice(i).search(/[\n\r]/);
      i = eol === -1 ? text.length : i + eol + 1;
    } else if (c === '/' && text[i + 1] === '*') i = skipBlockComment(text, i);
    else break;
  }
  return (/^[A-Za-z_]+/.exec(text.slice(i))?.[0] ?? '').toLowerCase();
}

/**
 * True when something other than whitespace or comments follows a top-level ';'. String literals,
 * quoted identifiers, dollar quotes and comments are skipped as PostgreSQL lexes them (SQLite
 * refuses a second statement by itself) so that ';' inside them is not counted.
 */
export function hasSecondStatement(text: string): boolean {
  let i = 0;
  let ended = false;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '-' && text[i + 1] === '-') {
      const eol = text.slice(i).search(/[\n\r]/);
      i = eol === -1 ? n : i + eol + 1;
      continue;
    }
    if (c === '/' && text[i + 1] === '*') {
      i = skipBlockComment(text, i);
      continue;
    }
    if (ended && c !== ';') return true;
    if (c === ';') {
      ended = true;
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      // E'…' strings allow \' on PostgreSQL; a backslash before a quote never ends the literal there.
      const backslashEscapes =
        c === "'" && /[eE]/.test(text[i - 1] ?? '') && !IDENT_CHAR.test(text[i - 2] ?? '');
      i = skipQuoted(text, i, c, backslashEscapes);
      continue;
    }
    if (IDENT_START.test(c)) {
      // A whole word at once: '$' inside an identifier (a$x$) is not a dollar quote.
      while (i < n && IDENT_CHAR.test(text[i])) i++;
      continue;
    }
    if (c === '$') {
      const tag = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(text.slice(i));
      if (tag) {
        const close = text.indexOf(tag[0], i + tag[0].length);
        i = close === -1 ? n : close + tag[0].length;
        continue;
      }
    }
    i++;
  }
  return false;
}

function skipBlockComment(text: string, start: number): number {
  // PostgreSQL block comments nest; SQLite's do not, but nesting only makes this stricter there.
  let depth = 0;
  let i = start;
  while (i < text.length) {
    if (text[i] === '/' && text[i + 1] === '*') {
      depth++;
      i += 2;
    } else if (text[i] === '*' && text[i + 1] === '/') {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else i++;
  }
  return text.length;
}

function skipQuoted(text: string, start: number, quote: string, backslashEscapes: boolean): number {
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (backslashEscapes && c === '\\') {
      i += 2;
      continue;
    }
    if (c === quote) {
      if (text[i + 1] === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return text.length;
}
