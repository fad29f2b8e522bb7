import type { CompiledQuery, KyselyPlugin, QueryId, RootOperationNode } from 'kysely';
import type { Store } from '../store/index.js';

/**
 * Runs `fn` on a view of the store that records every statement it sends, and returns them as
 * SQL with their parameters written in, so an analyst can paste what a page ran into `pofr sql`.
 * A Kysely plugin sees each query's tree; the store's own compiler turns it into the engine's SQL.
 */
export async function captureSql<T>(
  store: Store,
  fn: (store: Store) => Promise<T>,
): Promise<{ result: T; sql: string[] }> {
  // A subquery built apart (`selectFrom(q.as('k'))`) is transformed too, but never run on its own:
  // only queries whose results come back are the SQL behind the view.
  const built = new Map<QueryId, RootOperationNode>();
  const seen: { node: RootOperationNode; queryId: QueryId }[] = [];
  const plugin: KyselyPlugin = {
    transformQuery(args) {
      built.set(args.queryId, args.node);
      return args.node;
    },
    async transformResult(args) {
      const node = built.get(args.queryId);
      if (node !== undefined) seen.push({ node, queryId: args.queryId });
      built.delete(args.queryId);
      return args.result;
    },
  };
  const result = await fn({ ...store, db: store.db.withPlugin(plugin) });
  const executor = store.db.getExecutor();
  const sql = seen.map(({ node, queryId }) =>
    inlineParameters(executor.compileQuery(node, queryId), store.caps.engine),
  );
  return { result, sql };
}

/** `?` (SQLite) or `$n` (PostgreSQL) placeholders outside quotes, replaced by SQL literals. */
export function inlineParameters(q: CompiledQuery, engine: 'sqlite' | 'postgres'): string {
  const params = q.parameters;
  let out = '';
  let next = 0;
  const text = q.sql;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      const stop = end === -1 ? text.length : end + 1;
      out += text.slice(i, stop);
      i = stop - 1;
    } else if (engine === 'sqlite' && c === '?') {
      out += literal(params[next++], engine);
    } else if (engine === 'postgres' && c === '$' && /\d/.test(text[i + 1] ?? '')) {
      let j = i + 1;
      while (j < text.length && /\d/.test(text[j])) j++;
      out += literal(params[Number(text.slice(i + 1, j)) - 1], engine);
      i = j - 1;
    } else {
      out += c;
    }
  }
  return out;
}

function literal(v: unknown, engine: 'sqlite' | 'postgres'): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return engine === 'sqlite' ? (v ? '1' : '0') : String(v);
  if (v instanceof Uint8Array) {
    const hex = Buffer.from(v).toString('hex');
    return engine === 'sqlite' ? `X'${hex}'` : `'\\x${hex}'::bytea`;
  }
  return `'${String(v).replace(/'/g, "''")}'`;
}
