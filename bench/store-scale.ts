import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import pg from 'pg';
import { ingestBatch, pruneStore } from '../src/ingest/index.js';
import { generateSigningKeyPair, type SealedBatch } from '../src/protocol/index.js';
import { ensurePartitions, openStore, type Store, WEEK_US, WEEKS_AHEAD } from '../src/store/index.js';
import { type BenchResult, isMain } from './bench-result.js';
import { enrollBenchHosts, makeBatches } from './ingest-throughput.js';

/**
 * The store at scale, on SQLite and (with POFR_BENCH_PG_URL or POFR_TEST_PG_URL) PostgreSQL:
 * - bytes per record stored (evidence included), and so per host-day at a given record rate;
 * - prune time: four hosts' history pruned down to each host's newest batch;
 * - PostgreSQL ingest with one node vs two: the same four hosts sent by one process or split over
 *   two processes (each a node: its own pool, its own Node thread) on one database.
 * The baseline of the node comparison is the one-node run of the same batches, same run.
 */
const HOSTS = 4;
const BATCHES_PER_HOST = 40;
/** Record rates for the host-day figures: recorded-hour-size's light host, and a busy one. */
const LIGHT_PER_S = 35;
const BUSY_PER_S = 350;

interface Fleet {
  readonly publicPem: string;
  readonly privatePem: string;
  readonly hosts: readonly { hostId: string; batches: readonly SealedBatch[] }[];
}

function makeFleet(): Fleet {
  const keys = generateSigningKeyPair();
  return {
    publicPem: keys.publicPem,
    privatePem: keys.privatePem,
    hosts: Array.from({ length: HOSTS }, (_, i) => {
      const hostId = `scale-host-${i}`;
      return { hostId, batches: makeBatches(hostId, keys.privatePem, BATCHES_PER_HOST) };
    }),
  };
}

async function ingestAll(store: Store, hosts: Fleet['hosts']): Promise<number> {
  // PostgreSQL: the weeks exist before timing, as `pofr server run` makes them before it listens.
  if (store.caps.timePartitions) {
    const now = Date.now() * 1000;
    await ensurePartitions(store.db, now - 86_400_000_000, now + WEEKS_AHEAD * WEEK_US, now);
  }
  const t0 = process.hrtime.bigint();
  await Promise.all(
    hosts.map(async (h) => {
      for (const b of h.batches) {
        const r = await ingestBatch(store, b.bytes, { principal: h.hostId });
        if (r.status !== 'accepted')
          throw new Error(`batch ${h.hostId}#${b.header.seq}: ${JSON.stringify(r)}`);
      }
    }),
  );
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function pruneMs(store: Store): Promise<{ ms: number; rows: number }> {
  const t0 = process.hrtime.bigint();
  // Every batch is older than "now + 30 days": all but each host's newest go. On PostgreSQL every
  // week made is wholly older too: the prune drops them, moving the newest batches' rows out first.
  const reports = await pruneStore(store, { olderThan: (Date.now() + 30 * 86_400_000) * 1000 });
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, rows: reports.reduce((n, r) => n + r.rows, 0) };
}

async function sqliteFigures(fleet: Fleet, records: number) {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-bench-scale-'));
  try {
    const path = join(dir, 'pofr.db');
    const store = await openStore({ kind: 'sqlite', path });
    try {
      await enrollBenchHosts(
        store,
        fleet.hosts.map((h) => h.hostId),
        fleet.publicPem,
      );
      await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(store.db);
      const empty = statSync(path).size;
      const ms = await ingestAll(store, fleet.hosts);
      await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(store.db);
      const bytes = statSync(path).size - empty;
      const prune = await pruneMs(store);
      return { ms, bytesPerRecord: bytes / records, prune };
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function withPgDatabase<T>(adminUrl: string, fn: (url: string) => Promise<T>): Promise<T> {
  const name = `pofr_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  try {
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    return await fn(url.toString());
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

const dbSize = async (store: Store) =>
  Number(
    (await sql<{ n: string }>`SELECT pg_database_size(current_database()) AS n`.execute(store.db)).rows[0]?.n,
  );

async function postgresFigures(adminUrl: string, fleet: Fleet, records: number) {
  const sizes = await withPgDatabase(adminUrl, async (url) => {
    const store = await openStore({ kind: 'postgres', url });
    try {
      await enrollBenchHosts(
        store,
        fleet.hosts.map((h) => h.hostId),
        fleet.publicPem,
      );
      await sql`CHECKPOINT`.execute(store.db);
      const empty = await dbSize(store);
      const ms = await ingestAll(store, fleet.hosts);
      await sql`CHECKPOINT`.execute(store.db);
      const bytes = (await dbSize(store)) - empty;
      const prune = await pruneMs(store);
      return { ms, bytesPerRecord: bytes / records, prune };
    } finally {
      await store.close();
    }
  });
  const nodes = async (count: number) =>
    withPgDatabase(adminUrl, async (url) => {
      const store = await openStore({ kind: 'postgres', url });
      try {
        await enrollBenchHosts(
          store,
          fleet.hosts.map((h) => h.hostId),
          fleet.publicPem,
        );
      } finally {
        await store.close();
      }
      const groups = Array.from({ length: count }, (_, i) => fleet.hosts.filter((_, j) => j % count === i));
      return runNodes(
        url,
        fleet,
        groups.map((g) => g.map((h) => h.hostId)),
      );
    });
  const oneNode = await nodes(1);
  const twoNodes = await nodes(2);
  return { ...sizes, oneNode, twoNodes };
}

/** Starts one process per group (a node), lets them go at once, and returns the slowest one's time. */
async function runNodes(url: string, fleet: Fleet, groups: readonly string[][]): Promise<number> {
  const self = fileURLToPath(import.meta.url);
  const children = groups.map((hostIds) => {
    const child = spawn(process.execPath, [self], {
      env: {
        ...process.env,
        POFR_BENCH_NODE: JSON.stringify({ url, hostIds, privatePem: fleet.privatePem }),
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const ready = new Promise<void>((resolve) => {
      const check = () => (out.includes('ready') ? resolve() : setTimeout(check, 20));
      check();
    });
    const done = new Promise<number>((resolve, reject) =>
      child.on('exit', (code) => {
        const m = /ms (\d+(?:\.\d+)?)/.exec(out);
        if (code === 0 && m) resolve(Number(m[1]));
        else reject(new Error(`bench node exited ${code}: ${out}`));
      }),
    );
    return { child, ready, done };
  });
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.child.stdin.end('go\n');
  return Math.max(...(await Promise.all(children.map((c) => c.done))));
}

/** A node of the comparison: makes its hosts' batches, says ready, ingests them on "go". */
async function benchNode(spec: { url: string; hostIds: string[]; privatePem: string }) {
  const hosts = spec.hostIds.map((hostId) => ({
    hostId,
    batches: makeBatches(hostId, spec.privatePem, BATCHES_PER_HOST),
  }));
  const store = await openStore({ kind: 'postgres', url: spec.url });
  try {
    process.stdout.write('ready\n');
    await new Promise((resolve) => process.stdin.once('data', resolve));
    const ms = await ingestAll(store, hosts);
    process.stdout.write(`ms ${ms}\n`);
  } finally {
    await store.close();
  }
}

export async function run(): Promise<BenchResult> {
  const fleet = makeFleet();
  const records = fleet.hosts.reduce(
    (n, h) => n + h.batches.reduce((m, b) => m + b.header.record_count, 0),
    0,
  );
  const day = (bpr: number, perS: number) => (bpr * perS * 86_400) / 1024 ** 2;
  const s = await sqliteFigures(fleet, records);
  const lines = [
    `store at scale: ${HOSTS} hosts × ${BATCHES_PER_HOST} batches, ${records} records`,
    `  SQLite      ${s.bytesPerRecord.toFixed(0)} bytes/record stored → ${day(s.bytesPerRecord, LIGHT_PER_S).toFixed(0)} MiB per host-day at ${LIGHT_PER_S} records/s, ${day(s.bytesPerRecord, BUSY_PER_S).toFixed(0)} MiB at ${BUSY_PER_S}/s`,
    `  SQLite      prune to the newest batch: ${s.prune.ms.toFixed(0)} ms for ${s.prune.rows} rows (${((s.prune.rows / s.prune.ms) * 1000).toFixed(0)} rows/s); ingest was ${s.ms.toFixed(0)} ms`,
  ];
  const metrics: Record<string, number> = {
    records,
    sqlite_bytes_per_record: s.bytesPerRecord,
    sqlite_prune_ms: s.prune.ms,
    sqlite_prune_rows: s.prune.rows,
  };
  const pgUrl = process.env.POFR_BENCH_PG_URL ?? process.env.POFR_TEST_PG_URL;
  if (pgUrl) {
    const p = await postgresFigures(pgUrl, fleet, records);
    lines.push(
      `  PostgreSQL  ${p.bytesPerRecord.toFixed(0)} bytes/record stored → ${day(p.bytesPerRecord, LIGHT_PER_S).toFixed(0)} MiB per host-day at ${LIGHT_PER_S} records/s, ${day(p.bytesPerRecord, BUSY_PER_S).toFixed(0)} MiB at ${BUSY_PER_S}/s`,
      `  PostgreSQL  prune to the newest batch: ${p.prune.ms.toFixed(0)} ms for ${p.prune.rows} rows (${((p.prune.rows / p.prune.ms) * 1000).toFixed(0)} rows/s)`,
      `  PostgreSQL  one node ${p.oneNode.toFixed(0)} ms → ${((records / p.oneNode) * 1000).toFixed(0)} events/s; two nodes ${p.twoNodes.toFixed(0)} ms → ${((records / p.twoNodes) * 1000).toFixed(0)} events/s (${(p.oneNode / p.twoNodes).toFixed(2)}× one node)`,
    );
    Object.assign(metrics, {
      pg_bytes_per_record: p.bytesPerRecord,
      pg_prune_ms: p.prune.ms,
      pg_prune_rows: p.prune.rows,
      pg_one_node_ms: p.oneNode,
      pg_two_nodes_ms: p.twoNodes,
    });
  } else {
    lines.push('  PostgreSQL: skipped (set POFR_BENCH_PG_URL=postgres://… to measure it too)');
  }
  return { name: 'store-scale', lines, metrics };
}

if (process.env.POFR_BENCH_NODE) {
  await benchNode(JSON.parse(process.env.POFR_BENCH_NODE));
} else if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
