import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openGeoip } from '../src/enrich/index.js';
import { ingestBatch } from '../src/ingest/index.js';
import {
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  type PofrRecord,
  type SealedBatch,
  sealBatch,
} from '../src/protocol/index.js';
import { ensurePartitions, openStore, type Store } from '../src/store/index.js';
import { type BenchResult, isMain, median } from './bench-result.js';

/**
 * Ingest throughput into SQLite: pre-sealed batches of a realistic record mix (process starts with
 * argv, file opens/closes, TCP endpoints with state changes, exits) go through the full ingest path
 * (frame, signature, dedupe, chain, decode, one transaction). Baseline, same run: the same number of
 * rows inserted with bare better-sqlite3 prepared statements, one transaction per batch — the floor
 * for any SQLite writer. The same records are then sent by four hosts at once (a server's load:
 * PostgreSQL ingests hosts in parallel, SQLite one transaction after the other), and both again on
 * PostgreSQL when POFR_BENCH_PG_URL (or POFR_TEST_PG_URL) names a server.
 */
const BATCHES = 120;
// The server's path includes the country lookup of every endpoint's remote address.
const geo = openGeoip();
const PROCS_PER_BATCH = 60;

/**
 * `count` signed batches of the record mix, recorded from `from` (µs; default an hour ago: the
 * server's weeks ahead of time cover it on PostgreSQL, as they do a live host's); `extra(b, t, pid)`
 * adds records to batch b (pids above `pid` are free).
 */
export function makeBatches(
  hostId: string,
  signingPem: string,
  count = BATCHES,
  extra?: (b: number, t: number, pid: number) => PofrRecord[],
  from = Date.now() * 1000 - 3_600_000_000,
): SealedBatch[] {
  const key = loadPrivateKey(signingPem);
  const out: SealedBatch[] = [];
  let prev = GENESIS_HASH;
  let t = from;
  let pid = 1000;
  for (let b = 0; b < count; b++) {
    const recs: PofrRecord[] = [];
    for (let i = 0; i < PROCS_PER_BATCH; i++) {
      pid++;
      t += 1000;
      const start_ticks = pid * 10;
      recs.push({
        type: 'process_start',
        t,
        proc: {
          pid,
          start_ticks,
          start: t,
          ppid: 1,
          parent_start_ticks: null,
          exe: '/usr/bin/python3.11',
          comm: 'python3',
          argv: ['python3', '/opt/app/worker.py', '--queue', `jobs-${i}`, '--verbose'],
          cwd: '/opt/app',
          ruid: 1000,
          euid: 1000,
          rgid: 1000,
          egid: 1000,
          source: 'sample',
          observer: false,
        },
      });
      for (let fd = 3; fd < 9; fd++) {
        recs.push({
          type: 'file_open',
          t: t + fd,
          file: { pid, start_ticks, fd, path: `/var/lib/app/data-${pid}-${fd}.db`, kind: 'file' },
        });
      }
      const key = `tcp4:${pid * 7}`;
      recs.push({
        type: 'endpoint_open',
        t: t + 10,
        endpoint: {
          key,
          pid,
          start_ticks,
          proto: 'tcp',
          family: 4,
          local_ip: '10.0.0.5',
          local_port: 40000 + (pid % 20000),
          remote_ip: '93.184.216.34',
          remote_port: 443,
          state: 'ESTABLISHED',
          inode: pid * 7,
        },
      });
      recs.push({ type: 'endpoint_state', t: t + 20, key, state: 'FIN_WAIT1' });
      recs.push({ type: 'endpoint_close', t: t + 30, key });
      for (let fd = 3; fd < 9; fd++) recs.push({ type: 'file_close', t: t + 40 + fd, pid, start_ticks, fd });
      recs.push({ type: 'process_exit', t: t + 50, pid, start_ticks });
    }
    if (extra) {
      const more = extra(b, t + 100, pid);
      recs.push(...more);
      t += 1000;
      pid += more.length;
    }
    const sealed = sealBatch(
      { host_id: hostId, boot_id: 'bench-boot', seq: b + 1, prev_hash: prev, records: recs },
      key,
    );
    prev = sealed.hash;
    out.push(sealed);
  }
  return out;
}

/** A fresh store for one run, and how to remove it. */
export interface BenchStore {
  readonly store: Store;
  dispose(): Promise<void>;
}

export async function sqliteStore(): Promise<BenchStore> {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-bench-ingest-'));
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'pofr.db') });
  return {
    store,
    async dispose() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A database created for the run on the server of `adminUrl`, dropped afterwards. */
export async function postgresStore(adminUrl: string): Promise<BenchStore> {
  const name = `pofr_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const store = await openStore({ kind: 'postgres', url: url.toString() });
  return {
    store,
    async dispose() {
      await store.close();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** One enrolled host and the batches it sends, in order. */
interface HostLoad {
  readonly hostId: string;
  readonly publicPem: string;
  readonly batches: readonly SealedBatch[];
}

/** Approved hosts whose batches `publicPem` verifies, as enrollment would leave them (no SSH, no seal). */
export async function enrollBenchHosts(store: Store, hostIds: readonly string[], publicPem: string) {
  for (const hostId of hostIds) {
    await store.db
      .insertInto('hosts')
      .values({
        host_id: hostId,
        name: hostId,
        status: 'approved',
        ssh_key: 'ssh-ed25519 AAAA bench',
        ssh_fingerprint: `SHA256:${hostId}`,
        signing_key: publicPem,
        enrolled_at: 0,
        approved_at: 0,
      })
      .execute();
  }
}

/** Every host sends its batches one after the other; the hosts send at the same time (as at a server). */
async function pofrIngest(open: () => Promise<BenchStore>, hosts: readonly HostLoad[]): Promise<number> {
  const { store, dispose } = await open();
  try {
    for (const h of hosts) await enrollBenchHosts(store, [h.hostId], h.publicPem);
    // What `pofr server run` does before it listens (src/roles/server/partition-keeper.ts): the weeks exist.
    if (store.caps.timePartitions) {
      const ts = hosts.flatMap((h) => h.batches.map((b) => b.header.t_to));
      await ensurePartitions(store.db, Math.min(...ts) - 3_600_000_000, Math.max(...ts));
    }
    const t0 = process.hrtime.bigint();
    await Promise.all(
      hosts.map(async (h) => {
        for (const b of h.batches) {
          const r = await ingestBatch(store, b.bytes, { principal: h.hostId, geo });
          if (r.status !== 'accepted')
            throw new Error(`bench batch ${b.header.seq} was ${r.status}: ${JSON.stringify(r)}`);
        }
      }),
    );
    return Number(process.hrtime.bigint() - t0) / 1e6;
  } finally {
    await dispose();
  }
}

function rawInsert(batches: readonly SealedBatch[]): number {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-bench-raw-'));
  try {
    const db = new Database(join(dir, 'raw.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE ev (id INTEGER PRIMARY KEY, host TEXT, t INTEGER, kind TEXT, body TEXT)');
    const ins = db.prepare('INSERT INTO ev (host, t, kind, body) VALUES (?, ?, ?, ?)');
    const t0 = process.hrtime.bigint();
    for (const b of batches) {
      const n = b.header.record_count;
      db.transaction(() => {
        for (let i = 0; i < n; i++)
          ins.run('bench', b.header.t_from + i, 'x', 'record body of typical length for a file open row');
      })();
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    db.close();
    return ms;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Hosts sending at once in the second measurement (the shape of a server's load). */
const PARALLEL_HOSTS = 4;

export async function run(): Promise<BenchResult> {
  const keys = generateSigningKeyPair();
  const hostId = 'bench-host';
  const batches = makeBatches(hostId, keys.privatePem);
  const one: HostLoad[] = [{ hostId, publicPem: keys.publicPem, batches }];
  // The same number of batches, spread over hosts that send at the same time.
  const many: HostLoad[] = Array.from({ length: PARALLEL_HOSTS }, (_, i) => ({
    hostId: `bench-host-${i}`,
    publicPem: keys.publicPem,
    batches: makeBatches(`bench-host-${i}`, keys.privatePem, BATCHES / PARALLEL_HOSTS),
  }));
  const records = batches.reduce((n, b) => n + b.header.record_count, 0);
  const perS = (ms: number) => records / (ms / 1000);
  const medianOf3 = async (f: () => Promise<number>) => median([await f(), await f(), await f()]);
  const ms = await medianOf3(() => pofrIngest(sqliteStore, one));
  const manyMs = await medianOf3(() => pofrIngest(sqliteStore, many));
  const raws = [rawInsert(batches), rawInsert(batches), rawInsert(batches)];
  const rawMs = median(raws);
  const eventsPerS = perS(ms);
  const batchesPerS = batches.length / (ms / 1000);
  const rawPerS = perS(rawMs);
  // PostgreSQL too when a server is named (the scale-out store), in the same run.
  const pgUrl = process.env.POFR_BENCH_PG_URL ?? process.env.POFR_TEST_PG_URL;
  const pgLines: string[] = [];
  const pgMetrics: Record<string, number> = {};
  if (pgUrl) {
    const pgMs = await medianOf3(() => pofrIngest(() => postgresStore(pgUrl), one));
    const pgManyMs = await medianOf3(() => pofrIngest(() => postgresStore(pgUrl), many));
    pgMetrics.pg_ms = pgMs;
    pgMetrics.pg_events_per_s = perS(pgMs);
    pgMetrics.pg_parallel_ms = pgManyMs;
    pgMetrics.pg_parallel_events_per_s = perS(pgManyMs);
    pgLines.push(
      `  PostgreSQL, 1 host     ${pgMs.toFixed(0)} ms → ${perS(pgMs).toFixed(0)} events/s (${(pgMs / ms).toFixed(2)}× the SQLite time)`,
      `  PostgreSQL, ${PARALLEL_HOSTS} hosts    ${pgManyMs.toFixed(0)} ms → ${perS(pgManyMs).toFixed(0)} events/s (${(pgManyMs / manyMs).toFixed(2)}× the SQLite time)`,
    );
  } else {
    pgLines.push('  PostgreSQL: skipped (set POFR_BENCH_PG_URL=postgres://… to measure it too)');
  }
  return {
    name: 'ingest-throughput',
    lines: [
      `ingest: ${batches.length} batches, ${records} records (${(records / batches.length).toFixed(0)} per batch), median of 3 runs`,
      `  SQLite, 1 host         ${ms.toFixed(0)} ms → ${eventsPerS.toFixed(0)} events/s, ${batchesPerS.toFixed(1)} batches/s`,
      `  SQLite, ${PARALLEL_HOSTS} hosts        ${manyMs.toFixed(0)} ms → ${perS(manyMs).toFixed(0)} events/s`,
      `  baseline raw rows      ${rawMs.toFixed(0)} ms → ${rawPerS.toFixed(0)} rows/s (bare better-sqlite3, 1 tx per batch)`,
      `  ratio pofr/raw time ${(ms / rawMs).toFixed(1)}×`,
      ...pgLines,
    ],
    metrics: {
      records,
      batches: batches.length,
      ms,
      events_per_s: eventsPerS,
      batches_per_s: batchesPerS,
      parallel_ms: manyMs,
      parallel_events_per_s: perS(manyMs),
      raw_ms: rawMs,
      raw_rows_per_s: rawPerS,
      ...pgMetrics,
    },
  };
}

if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
