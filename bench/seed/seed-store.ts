import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import pg from 'pg';
import { initStoreConfig, isPostgresUrl, openStore } from '../../src/store/index.js';
import { seedFleet } from './seed-fleet.js';

/**
 * `npm run seed -- --events 10M --hosts 20 --days 30 [--data DIR] [--db postgres://…/NAME]`:
 * a realistic store of that size through the real ingest path, ready for `pofr web --data DIR`
 * and the other analyst commands. A PostgreSQL database that does not exist yet is created.
 */
const USAGE =
  'usage: npm run seed -- --events 10M --hosts 20 --days 30 [--data DIR] [--db postgres://…/NAME] [--seed N] [--concurrency N] [--batch-records N]';

function count(s: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(s.trim());
  if (!m) throw new Error(`${option} ${s}: give a number such as 500k, 10M or 250000\n${USAGE}`);
  const mult = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6 }[m[2]] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

async function ensurePostgresDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    throw new Error(`--db ${url}: the database name must be an SQL identifier`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    // The name was checked to be an identifier above: safe to put in DDL, which takes no parameters.
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '1M' },
      hosts: { type: 'string', default: '20' },
      days: { type: 'string', default: '30' },
      data: { type: 'string', default: 'pofr-seed' },
      db: { type: 'string' },
      seed: { type: 'string', default: '12' },
      concurrency: { type: 'string' },
      'batch-records': { type: 'string', default: '5000' },
    },
  });
  const dataDir = resolve(values.data!);
  const events = count(values.events!, '--events');
  const hosts = count(values.hosts!, '--hosts');
  const days = Number(values.days);
  if (!(days > 0) || hosts < 1 || events < hosts)
    throw new Error(`--days, --hosts and --events must be positive\n${USAGE}`);
  if (values.db !== undefined && !isPostgresUrl(values.db))
    throw new Error(`--db ${values.db}: give a postgres:// URL\n${USAGE}`);
  if (values.db !== undefined) await ensurePostgresDatabase(values.db);
  const config = initStoreConfig(dataDir, values.db);
  const store = await openStore(config);
  try {
    const existing = await store.db.selectFrom('hosts').select('host_id').limit(1).execute();
    if (existing.length > 0) {
      throw new Error(
        `${dataDir} (${config.kind}) already holds hosts; seed into a new --data directory (and a new --db database)`,
      );
    }
    const concurrency =
      values.concurrency === undefined
        ? config.kind === 'postgres'
          ? 3
          : 1
        : count(values.concurrency, '--concurrency');
    process.stderr.write(
      `seed: ${events.toLocaleString('en')} events, ${hosts} hosts, ${days} days into ${config.kind} (${dataDir})\n`,
    );
    const r = await seedFleet(store, {
      events,
      hosts,
      days,
      seed: Number(values.seed),
      concurrency,
      batchRecords: count(values['batch-records']!, '--batch-records'),
      progress: (p) =>
        process.stderr.write(
          `seed: ${p.events.toLocaleString('en')} events in ${p.batches} batches, ${(p.elapsedMs / 1000).toFixed(0)} s, ${Math.round(p.events / (p.elapsedMs / 1000)).toLocaleString('en')} events/s\n`,
        ),
    });
    for (const h of r.hosts) {
      process.stderr.write(
        `seed:   ${h.name.padEnd(12)} ${h.status.padEnd(9)} ${String(h.events).padStart(9)} events ${String(h.batches).padStart(6)} batches${h.lost ? `, ${h.lost} lost (chain gap)` : ''}${h.incident ? ', intrusion' : ''}\n`,
      );
    }
    if (config.kind === 'postgres') {
      // A deployed PostgreSQL gathers planner statistics through autovacuum as the store grows; a
      // store written in one go (or on a server with autovacuum off) has none, and its plans would
      // not be the ones a real deployment gets. SQLite's server runs no ANALYZE, so neither do we.
      process.stderr.write('seed: ANALYZE (planner statistics, as autovacuum would gather them)\n');
      await sql`ANALYZE`.execute(store.db);
    }
    const s = r.elapsedMs / 1000;
    process.stdout.write(
      `${JSON.stringify({ data: dataDir, store: config.kind, events: r.events, batches: r.batches, hosts: r.hosts.length, seconds: Math.round(s), events_per_s: Math.round(r.events / s) })}\n`,
    );
    process.stderr.write(`seed: done in ${s.toFixed(0)} s; open it with: ./bin/pofr web --data ${dataDir}\n`);
  } finally {
    await store.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`seed: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
