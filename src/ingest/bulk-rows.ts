import { CompiledQuery, type Insertable, sql, type Transaction } from 'kysely';
import type { Capabilities, Database } from '../store/index.js';

type Trx = Transaction<Database>;

// Keeps statements under SQLite's 32766 and PostgreSQL's 65535 bind-parameter limits.
export const MAX_PARAMS = 30_000;

export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Rows per INSERT: a fixed size, so SQLite's prepared statements are reused (at most this many texts per table). */
const ROWS_PER_INSERT = 100;

/**
 * Multi-row INSERTs of rows that all have the same columns (the first row's), in chunks under the
 * parameter limit. The statement text is built here, not by Kysely's insert builder: parsing every
 * value of a thousand rows into query nodes was a tenth of ingest's time (docs/benchmarks.md).
 * Values are still bound as parameters; the column names come from pofr's own row objects.
 */
export async function insertRows<T extends keyof Database>(
  trx: Trx,
  caps: Capabilities,
  table: T,
  rows: readonly Insertable<Database[T]>[],
): Promise<void> {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0] as object);
  if (caps.engine === 'postgres') return insertByArrays(trx, table, columns, rows);
  const perStatement = Math.max(1, Math.min(ROWS_PER_INSERT, Math.floor(MAX_PARAMS / columns.length)));
  for (const part of chunks(rows, perStatement)) {
    const params: unknown[] = [];
    for (const row of part) {
      const r = row as Record<string, unknown>;
      for (const c of columns) params.push(r[c] ?? null);
    }
    await trx.executeQuery(CompiledQuery.raw(insertText(table, columns, part.length), params));
  }
}

/**
 * The text of a multi-row INSERT, made once per table, columns and row count: the same string
 * object each time, so the prepared-statement cache finds it without hashing ~8 kB of new text
 * (building and hashing it per statement was ~3 % of ingest's CPU).
 */
const insertTexts = new Map<string, string>();

function insertText(table: string, columns: readonly string[], rows: number): string {
  const key = `${table}\0${columns.join(',')}\0${rows}`;
  let text = insertTexts.get(key);
  if (text === undefined) {
    const tuple = `(${columns.map(() => '?').join(', ')})`;
    text = `INSERT INTO ${quoteId(table)} (${columns.map(quoteId).join(', ')}) VALUES ${Array(rows).fill(tuple).join(', ')}`;
    // Bounded like the statement cache: a few tables × their column sets × ≤ 100 row counts.
    if (insertTexts.size >= 2048) insertTexts.clear();
    insertTexts.set(key, text);
  }
  return text;
}

/**
 * PostgreSQL: one statement per table and batch, whatever the row count, with one array parameter
 * per column: `INSERT … SELECT * FROM unnest($1::int8[], $2::text[], …)`. A multi-row VALUES list
 * of the same rows has a parameter per value, which PostgreSQL parses and plans anew every batch.
 */
async function insertByArrays(
  trx: Trx,
  table: string,
  columns: readonly string[],
  rows: readonly object[],
): Promise<void> {
  const part = await insertPart(trx, table, columns, rows);
  await trx.executeQuery(CompiledQuery.raw(part.text(0), part.params));
}

/** One statement of a combined write, its parameters numbered from `offset + 1`. */
interface Part {
  readonly params: unknown[];
  text(offset: number): string;
}

async function insertPart(trx: Trx, table: string, columns: readonly string[], rows: readonly object[]) {
  const types = await columnTypes(trx, table, columns);
  const params = columns.map((c) => rows.map((r) => (r as Record<string, unknown>)[c] ?? null));
  const head = `INSERT INTO ${quoteId(table)} (${columns.map(quoteId).join(', ')}) SELECT * FROM unnest(`;
  return {
    params,
    text: (offset: number) =>
      `${head}${columns.map((c, i) => `$${offset + i + 1}::${types.get(c)}[]`).join(', ')})`,
  } satisfies Part;
}

const ARRAY_TYPE = { bigint: 'int8', integer: 'int4', text: 'text' } as const;

/** `UPDATE t SET c = v.c … FROM unnest($1::int8[], …) AS v(id, c …) WHERE t.id = v.id`: one array per column. */
function updatePart(
  table: string,
  columns: UpdateColumns,
  rows: ReadonlyMap<number, Readonly<Record<string, string | number | null>>>,
): Part {
  const names = Object.keys(columns);
  const params: unknown[] = [
    [...rows.keys()],
    ...names.map((c) => [...rows.values()].map((r) => r[c] ?? null)),
  ];
  const types = ['int8', ...names.map((c) => ARRAY_TYPE[columns[c] as keyof typeof ARRAY_TYPE])];
  const set = names.map((c) => `${quoteId(c)} = v.${quoteId(c)}`).join(', ');
  const alias = ['id', ...names].map(quoteId).join(', ');
  return {
    params,
    text: (offset: number) =>
      `UPDATE ${quoteId(table)} AS t SET ${set} FROM unnest(${types.map((ty, i) => `$${offset + i + 1}::${ty}[]`).join(', ')}) AS v(${alias}) WHERE t.id = v.id`,
  };
}

/** What a batch writes at the end (or before a read that must see it): new rows, then changes of stored ones. */
export type RowWrite =
  | { readonly insert: keyof Database; readonly rows: readonly object[] }
  | {
      readonly update: 'processes' | 'file_opens' | 'endpoints';
      readonly columns: UpdateColumns;
      readonly rows: ReadonlyMap<number, Readonly<Record<string, string | number | null>>>;
    };

/**
 * Writes them all. SQLite: each as insertRows / updateRowsById (statements in process cost no round
 * trip). PostgreSQL: in one statement, each write a data-modifying CTE (`WITH w0 AS (INSERT …), w1 AS
 * (UPDATE …) SELECT 1`): a round trip and a statement's overhead instead of one per table — with the
 * server on the same cores as the node, each round trip was a context switch both ways and a
 * socket write (docs/benchmarks.md). The writes touch different rows (inserts are new rows, updates
 * stored ones), so that they share one snapshot changes nothing.
 */
export async function writeRows(trx: Trx, caps: Capabilities, writes: readonly RowWrite[]): Promise<void> {
  const todo = writes.filter((w) => ('insert' in w ? w.rows.length : w.rows.size) > 0);
  if (!caps.dataModifyingCtes) {
    for (const w of todo) {
      if ('insert' in w)
        await insertRows(trx, caps, w.insert, w.rows as Insertable<Database[typeof w.insert]>[]);
      else await updateRowsById(trx, w.update, w.columns, w.rows);
    }
    return;
  }
  const parts: Part[] = [];
  for (const w of todo) {
    parts.push(
      'insert' in w
        ? await insertPart(trx, w.insert, Object.keys(w.rows[0] as object), w.rows)
        : updatePart(w.update, w.columns, w.rows),
    );
  }
  if (parts.length === 0) return;
  if (parts.length === 1) {
    const [only] = parts as [Part];
    await trx.executeQuery(CompiledQuery.raw(only.text(0), only.params));
    return;
  }
  const texts: string[] = [];
  const params: unknown[] = [];
  for (const [i, part] of parts.entries()) {
    texts.push(`w${i} AS (${part.text(params.length)})`);
    params.push(...part.params);
  }
  await trx.executeQuery(CompiledQuery.raw(`WITH ${texts.join(', ')} SELECT 1`, params));
}

/** Column types by table, read once per process from the catalogue (new columns are read again). */
const typeCache = new Map<string, Map<string, string>>();

async function columnTypes(trx: Trx, table: string, columns: readonly string[]) {
  const cached = typeCache.get(table);
  if (cached && columns.every((c) => cached.has(c))) return cached;
  const { rows } = await sql<{ column_name: string; udt_name: string }>`
    SELECT column_name, udt_name FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = ${table}`.execute(trx);
  const types = new Map(rows.map((r) => [r.column_name, quoteId(r.udt_name)]));
  const unknown = columns.filter((c) => !types.has(c));
  if (unknown.length > 0) throw new Error(`table ${table} has no column ${unknown.join(', ')}`);
  typeCache.set(table, types);
  return types;
}

function quoteId(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A column an update sets, with the SQL type its value is cast to (PostgreSQL types VALUES lists by it). */
export type UpdateColumns = Readonly<Record<string, 'bigint' | 'integer' | 'text'>>;

/**
 * Sets different values on many rows by id in one statement per chunk:
 * `UPDATE t SET c = v.column2 … FROM (VALUES (id, c …), …) AS v WHERE t.id = v.column1`. Both
 * engines name a VALUES list's columns column1, column2, … and take UPDATE … FROM (SQLite ≥ 3.33).
 */
export async function updateRowsById(
  trx: Trx,
  table: 'processes' | 'file_opens' | 'endpoints',
  columns: UpdateColumns,
  rows: ReadonlyMap<number, Readonly<Record<string, string | number | null>>>,
): Promise<void> {
  if (rows.size === 0) return;
  const names = Object.keys(columns);
  const set = sql.join(names.map((c, i) => sql`${sql.id(c)} = v.${sql.id(`column${i + 2}`)}`));
  const tuples = [...rows].map(
    ([id, row]) =>
      sql`(CAST(${id} AS bigint), ${sql.join(names.map((c) => sql`CAST(${row[c] ?? null} AS ${sql.raw(columns[c] as string)})`))})`,
  );
  for (const part of chunks(tuples, Math.floor(MAX_PARAMS / (names.length + 1)))) {
    await sql`UPDATE ${sql.table(table)} SET ${set} FROM (VALUES ${sql.join(part)}) AS v WHERE ${sql.table(table)}.id = v.column1`.execute(
      trx,
    );
  }
}
