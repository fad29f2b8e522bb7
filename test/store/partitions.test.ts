import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { pruneStore, verifyStore } from '../../src/ingest/index.js';
import { startPartitionKeeper } from '../../src/roles/server/partition-keeper.js';
import { openPostgresEngine } from '../../src/store/dialects/postgres/postgres-dialect.js';
import {
  createMigrator,
  ensurePartitions,
  listPartitions,
  openStore,
  PARTITIONED,
  partitionName,
  type Store,
  WEEK_US,
  WEEKS_AHEAD,
  weekStart,
} from '../../src/store/index.js';
import { PG_URL_ENV, withStore } from '../helpers/store-dialects.js';
import { T0 } from '../ingest/host-fixture.js';
import { apply, count, DAY, history, S } from '../ingest/window-history.js';

/** Which relations the plan of a window query on `table` reads (EXPLAIN, planned with the parameters). */
async function relationsRead(store: Store, table: string, key: string, from: number, to: number) {
  const { rows } = await sql<{ 'QUERY PLAN': unknown }>`EXPLAIN (FORMAT JSON)
    SELECT * FROM ${sql.id(table)} WHERE host_id = ${'h'} AND ${sql.id(key)} >= ${from} AND ${sql.id(key)} < ${to}`.execute(
    store.db,
  );
  const names = new Set<string>();
  const walk = (n: unknown) => {
    if (n === null || typeof n !== 'object') return;
    for (const [k, v] of Object.entries(n)) {
      if (k === 'Relation Name' && typeof v === 'string') names.add(v);
      else walk(v);
    }
  };
  walk(rows[0]?.['QUERY PLAN']);
  return [...names].sort();
}

async function tableOf(store: Store, table: 'processes', pid: number): Promise<string> {
  const { rows } = await sql<{
    part: string;
  }>`SELECT tableoid::regclass::text AS part FROM ${sql.id(table)} WHERE pid = ${pid}`.execute(store.db);
  return rows[0]?.part ?? '';
}

const week0 = weekStart(T0);
const week1 = week0 + WEEK_US;

test('[postgres] weeks made late take their rows from the default partition; a window query reads only its week', (t) =>
  withStore(t, 'postgres', async (store) => {
    // The fixture's January is far behind the clock: ingest leaves it to the default partition.
    await history(store);
    assert.equal(await tableOf(store, 'processes', 100), 'processes_default');

    await ensurePartitions(store.db, T0, T0 + 10 * DAY, T0 + 10 * DAY);
    const parts = await listPartitions(store.db);
    for (const { table } of PARTITIONED) {
      const names = parts.filter((p) => p.table === table).map((p) => p.name);
      assert.deepEqual(
        names.sort(),
        [`${table}_default`, partitionName(table, week0), partitionName(table, week1)].sort(),
      );
    }
    assert.equal(await tableOf(store, 'processes', 100), partitionName('processes', week0));
    assert.equal(await tableOf(store, 'processes', 300), partitionName('processes', week1));
    const [v] = await verifyStore(store);
    assert.equal(v?.ok, true, JSON.stringify(v?.failures));

    // Partition pruning: a window inside week 1 reads week 1's partition and nothing else.
    for (const { table, key } of PARTITIONED) {
      const read = await relationsRead(store, table, key, T0 + 9 * DAY, T0 + 11 * DAY);
      assert.deepEqual(read, [partitionName(table, week1)], `${table}: ${read.join(', ')}`);
    }
  }));

test('[postgres] prune drops the weeks older than the cutoff whole, keeping what lives on; verify passes', (t) =>
  withStore(t, 'postgres', async (store) => {
    const host = await history(store, [
      {
        type: 'dns_query',
        t: T0 + 2 * S,
        pid: 200,
        start_ticks: 7,
        func: 'getaddrinfo',
        name: 'example.org',
      },
    ]);
    await ensurePartitions(store.db, T0, T0 + 10 * DAY, T0 + 10 * DAY);
    const dropped: string[] = [];
    const [report] = await pruneStore(store, {
      olderThan: T0 + 5 * DAY,
      onPartitionDropped: (name) => dropped.push(name),
    });
    assert.equal(report?.batches, 2);
    // Week 0 goes whole where most of it goes (endpoint_states keeps 2 of its 3 rows: those are deleted instead).
    for (const table of [
      'processes',
      'file_opens',
      'endpoints',
      'dns_queries',
      'cred_changes',
      'recorder_events',
    ]) {
      assert.ok(dropped.includes(partitionName(table, week0)), `${table}: ${dropped.join(', ')}`);
    }
    assert.ok(!dropped.includes(partitionName('endpoint_states', week0)));
    const left = (await listPartitions(store.db)).map((p) => p.name);
    assert.ok(!left.includes(partitionName('processes', week0)));
    assert.ok(left.includes(partitionName('processes', week1)));

    // Exactly what deleting row by row leaves (test/ingest/prune.test.ts): bash and its log file lived on.
    const pids = await store.db.selectFrom('processes').select('pid').orderBy('pid').execute();
    assert.deepEqual(
      pids.map((r) => Number(r.pid)),
      [100, 300],
    );
    assert.equal(await tableOf(store, 'processes', 100), 'processes_default');
    const paths = await store.db.selectFrom('file_opens').select('path').execute();
    assert.deepEqual(
      paths.map((r) => r.path),
      ['/var/log/bash.log'],
    );
    const keys = await store.db.selectFrom('endpoints').select('key').execute();
    assert.deepEqual(
      keys.map((r) => r.key),
      ['tcp:a'],
    );
    assert.equal(await count(store, 'endpoint_states'), 3);
    const dns = await store.db.selectFrom('dns_queries').select('name').execute();
    assert.deepEqual(dns, [], 'the pruned batch’s name lookup went with it');
    const prunes = await store.db.selectFrom('prunes').select('rows').execute();
    assert.deepEqual(
      prunes.map((p) => Number(p.rows)),
      [report?.rows],
      'the cut counts the rows its weeks dropped',
    );

    const [v] = await verifyStore(store);
    assert.equal(v?.ok, true, JSON.stringify(v?.failures));
    assert.equal(v?.complete, true, JSON.stringify(v?.known_gaps));
    assert.equal(v?.pruned?.before_seq, 3);

    // The store takes batches on; the dropped week's rows that stayed are still the ones closed.
    await apply(
      store,
      host,
      host.next([{ type: 'process_exit', t: T0 + 11 * DAY, pid: 300, start_ticks: 9_000 }]),
    );
    const [v2] = await verifyStore(store);
    assert.equal(v2?.ok, true, JSON.stringify(v2?.failures));
  }));

test('[postgres] a batch makes its week as it arrives; the server makes the weeks ahead', (t) =>
  withStore(t, 'postgres', async (store) => {
    const now = Date.now() * 1000;
    const host = await history(store);
    await apply(
      store,
      host,
      host.next([{ type: 'process_start', t: now, proc: { ...(await procLike()), start: now } }]),
    );
    const week = weekStart(now);
    assert.equal(await tableOf(store, 'processes', 4242), partitionName('processes', week));
    const keeper = await startPartitionKeeper(store, () => {});
    keeper.stop();
    const names = new Set((await listPartitions(store.db)).map((p) => p.name));
    for (let i = 0; i <= WEEKS_AHEAD; i++) {
      for (const { table } of PARTITIONED) {
        assert.ok(names.has(partitionName(table, week + i * WEEK_US)), `${table} week +${i}`);
      }
    }
  }));

async function procLike() {
  const { proc } = await import('../ingest/host-fixture.js');
  return proc(4242, 77, { comm: 'now' });
}

test('[postgres] migration 0015 on a store holding rows: weeks made for its batches, rows moved in, verify passes', async (t) => {
  const adminUrl = process.env[PG_URL_ENV];
  if (!adminUrl) {
    t.skip(`${PG_URL_ENV} not set`);
    return;
  }
  const dbName = `pofr_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  // dbName is hex digits only: safe in DDL.
  await admin.query(`CREATE DATABASE ${dbName}`);
  try {
    const url = new URL(adminUrl);
    url.pathname = `/${dbName}`;
    // The store as it was before 0015 (what a server upgraded in place holds).
    const engine = openPostgresEngine(url.toString());
    try {
      const r = await createMigrator(engine.db, engine.caps).migrateTo('0014-alert-evidence');
      assert.equal(r.error, undefined);
      const before: Store = {
        db: engine.db,
        caps: { ...engine.caps, timePartitions: false },
        config: { kind: 'postgres', url: url.toString() },
        readOnlyQuery: engine.readOnlyQuery,
        writeTransaction: engine.writeTransaction,
        close: engine.close,
      };
      await history(before);
    } finally {
      await engine.close();
    }
    const store = await openStore({ kind: 'postgres', url: url.toString() });
    try {
      const names = new Set((await listPartitions(store.db)).map((p) => p.name));
      for (const { table } of PARTITIONED) {
        assert.ok(names.has(partitionName(table, week0)), `${table} week 0`);
        assert.ok(names.has(partitionName(table, week1)), `${table} week 1`);
      }
      assert.equal(await tableOf(store, 'processes', 100), partitionName('processes', week0));
      assert.equal(await count(store, 'processes'), 4);
      const [v] = await verifyStore(store);
      assert.equal(v?.ok, true, JSON.stringify(v?.failures));
      // The id sequences moved with their tables: new rows get new ids.
      const { rows } = await sql<{
        s: string | null;
      }>`SELECT pg_get_serial_sequence('processes', 'id') AS s`.execute(store.db);
      assert.ok(rows[0]?.s);
    } finally {
      await store.close();
    }
  } finally {
    await admin.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [dbName],
    );
    await admin.query(`DROP DATABASE IF EXISTS ${dbName}`);
    await admin.end();
  }
});

test('[postgres] a week made while another host ingests waits for it instead of deadlocking', (t) =>
  withStore(t, 'postgres', async (store) => {
    const host = await history(store);
    const week = weekStart(Date.now() * 1000) + 20 * WEEK_US;
    await store.db.connection().execute(async (ingest) => {
      // What an ingest transaction does first: it moves its host's chain head…
      await sql`BEGIN`.execute(ingest);
      await sql`UPDATE hosts SET last_batch_at = ${T0} WHERE host_id = ${host.hostId}`.execute(ingest);
      // …and then, after a new week began elsewhere,…
      const making = ensurePartitions(store.db, week, week, week);
      const deadline = Date.now() + 10_000;
      for (;;) {
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(store.db);
        if (rows[0].n > 0) break;
        assert.ok(Date.now() < deadline, 'the week maker never waited on the ingest transaction');
        await new Promise((r) => setTimeout(r, 50));
      }
      // …reads the event tables, the default partitions among them.
      await sql`SET LOCAL statement_timeout = '20s'`.execute(ingest);
      const { rows } = await sql<{
        n: number;
      }>`SELECT count(*)::int AS n FROM processes WHERE host_id = ${host.hostId}`.execute(ingest);
      assert.ok(rows[0].n > 0);
      await sql`COMMIT`.execute(ingest);
      await making;
    });
    const names = new Set((await listPartitions(store.db)).map((p) => p.name));
    for (const { table } of PARTITIONED) assert.ok(names.has(partitionName(table, week)), table);
  }));
