import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type RawBuilder, sql, type Transaction } from 'kysely';
import type { Database, Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';

/** The lookups migration 0021 left to other indexes, as ingest and the readers by process make them. */
const LOOKUPS: readonly { what: string; query: RawBuilder<unknown>; sqliteIndex: string }[] = [
  {
    what: "a batch's open descriptors of its processes (ingest)",
    query: sql`SELECT id, process_id, fd, path, path_raw FROM file_opens
      WHERE host_id = ${'h'} AND process_id IN (${1}, ${2}) AND is_open = 1 ORDER BY id`,
    sqliteIndex: 'file_opens_open',
  },
  {
    what: 'open endpoints by key (ingest)',
    query: sql`SELECT id, key, state FROM endpoints
      WHERE host_id = ${'h'} AND key IN (${'tcp4:1'}, ${'tcp4:2'}) AND is_open = 1 ORDER BY id`,
    sqliteIndex: 'endpoints_open',
  },
  {
    what: "a process's files (process detail)",
    query: sql`SELECT id FROM file_opens WHERE process_id = ${7}`,
    sqliteIndex: 'file_opens_process_(first|last)',
  },
  {
    what: "a process's endpoints (process detail)",
    query: sql`SELECT id FROM endpoints WHERE process_id = ${7}`,
    sqliteIndex: 'endpoints_process_(first|last)',
  },
];

async function indexNames(store: Store): Promise<Set<string>> {
  const q =
    store.caps.engine === 'sqlite'
      ? sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'index'`
      : sql<{ name: string }>`SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()`;
  return new Set((await q.execute(store.db)).rows.map((r) => r.name));
}

/** The plan's lines; on PostgreSQL with sequential scans priced out, so a usable index shows. */
async function planOf(trx: Transaction<Database>, store: Store, query: RawBuilder<unknown>): Promise<string> {
  if (store.caps.engine === 'sqlite') {
    const { rows } = await sql<{ detail: string }>`EXPLAIN QUERY PLAN ${query}`.execute(trx);
    return rows.map((r) => r.detail).join('\n');
  }
  await sql`SET LOCAL enable_seqscan = off`.execute(trx);
  const { rows } = await sql<{ 'QUERY PLAN': string }>`EXPLAIN ${query}`.execute(trx);
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] migration 0021 drops the indexes no reader needs, and their lookups still use an index`, (t) =>
    withStore(t, dialect, async (store) => {
      const names = await indexNames(store);
      for (const gone of ['endpoints_process', 'endpoints_key', 'file_opens_process'])
        assert.equal(names.has(gone), false, `${gone} is still there`);
      for (const kept of [
        'file_opens_open',
        'endpoints_open',
        'file_opens_process_first',
        'endpoints_process_first',
      ])
        assert.equal(names.has(kept), true, `${kept} is missing`);
      for (const { what, query, sqliteIndex } of LOOKUPS) {
        const plan = await store.db.transaction().execute((trx) => planOf(trx, store, query));
        if (dialect === 'sqlite')
          assert.match(plan, new RegExp(`USING (COVERING )?INDEX ${sqliteIndex}\\b`), `${what}:\n${plan}`);
        else {
          assert.doesNotMatch(plan, /Seq Scan/, `${what}:\n${plan}`);
          assert.match(plan, /Index|Bitmap/, `${what}:\n${plan}`);
        }
      }
    }));
}
