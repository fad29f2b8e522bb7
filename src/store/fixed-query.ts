import { CompiledQuery, type Kysely, type QueryResult } from 'kysely';
import type { Capabilities } from './capabilities.js';
import type { Database } from './schema.js';

/**
 * Stands in for an argument (or one element of a list argument) while the query is compiled, and
 * marks where its value is bound.
 */
class Slot {
  constructor(
    readonly index: number,
    readonly element: number | null,
  ) {}
}

interface Compiled {
  readonly sql: string;
  /** Per bound parameter: a Slot (the argument's value goes there) or a constant of the query itself. */
  readonly params: readonly unknown[];
}

/** Texts kept per query: one per engine and list length (ingest's lists are a batch's pids, keys, ids). */
const SHAPES_PER_QUERY = 64;
/** Longer lists are compiled each time: their text is long, and building it is small beside their rows. */
const CACHED_LIST_ELEMENTS = 1000;

/**
 * A query whose text depends only on the engine and on the lengths of its list arguments, never on
 * its values: built and compiled by Kysely once per shape, then run with new values bound. Ingest
 * runs a dozen such queries per batch, and building and compiling them anew each time (builder
 * objects, operation nodes, the compiler's walk) was about a tenth of the server's CPU per batch
 * (docs/benchmarks.md, fleet).
 *
 * `build` takes `arity` arguments after `db` and gets placeholders for them (an array of
 * placeholders for an array argument, as long as the array): it must use each only as a bound value
 * (in `where`, `values`, `set`, `in`, or `${…}` of a `sql` template), never look into it or choose
 * the query's shape by it (a placeholder is not the value: the first call's shape would stay).
 * Compiling checks that every placeholder became a bound parameter.
 *
 * @example
 * const hostStatus = fixedQuery(1, (db, hostId: string) =>
 *   db.selectFrom('hosts').select('status').where('host_id', '=', hostId));
 * const { rows } = await hostStatus.run(trx, store.caps, 'h1');
 */
export function fixedQuery<A extends unknown[], R>(
  arity: A['length'],
  build: (db: Kysely<Database>, ...args: A) => CompilableOn<R>,
): FixedQuery<A, R> {
  const shapes = new Map<string, Compiled>();
  const compile = (db: Kysely<Database>, args: readonly unknown[]): Compiled => {
    const slots: Slot[] = [];
    const stand = args.map((a, i) => {
      if (!Array.isArray(a)) return slots[slots.push(new Slot(i, null)) - 1];
      return a.map((_, j) => slots[slots.push(new Slot(i, j)) - 1]);
    });
    const q = build(db, ...(stand as unknown as A)).compile(db);
    for (const s of slots) {
      if (!q.parameters.includes(s)) {
        const which =
          s.element === null ? `argument ${s.index}` : `element ${s.element} of argument ${s.index}`;
        throw new Error(`fixedQuery: ${which} is not a bound parameter of ${q.sql}`);
      }
    }
    return { sql: q.sql, params: q.parameters };
  };
  return {
    async run(db, caps, ...args) {
      if (args.length !== arity) {
        throw new Error(`fixedQuery: ${args.length} arguments given, the query takes ${arity}`);
      }
      let shape: string = caps.engine;
      let elements = 0;
      for (const a of args) {
        if (!Array.isArray(a)) continue;
        shape += `,${a.length}`;
        elements += a.length;
      }
      let c = shapes.get(shape);
      if (c === undefined) {
        c = compile(db, args);
        if (shapes.size < SHAPES_PER_QUERY && elements <= CACHED_LIST_ELEMENTS) shapes.set(shape, c);
      }
      const values = c.params.map((p) => {
        if (!(p instanceof Slot)) return p;
        const a = args[p.index];
        return p.element === null ? a : (a as unknown[])[p.element];
      });
      return db.executeQuery(CompiledQuery.raw(c.sql, values)) as Promise<QueryResult<R>>;
    },
  };
}

/** A query builder (compiles by itself) or a `sql` template (compiles with the instance it is given). */
interface CompilableOn<R> {
  compile(db: Kysely<Database>): CompiledQuery<R>;
}

export interface FixedQuery<A extends unknown[], R> {
  /** Runs the query on `db` (a store's Kysely instance or a transaction) with these values. */
  run(db: Kysely<Database>, caps: Capabilities, ...args: A): Promise<QueryResult<R>>;
}
