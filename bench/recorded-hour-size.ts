import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { sql } from 'kysely';
import { ProcfsSampler } from '../src/recorder/index.js';
import { enrollClient } from '../src/roles/client/enroll-client.js';
import { runClient } from '../src/roles/client/run-client.js';
import { createToken } from '../src/roles/server/enrollment.js';
import { runServer } from '../src/roles/server/run-server.js';
import { initStoreConfig, type Store } from '../src/store/index.js';
import { type BenchResult, isMain } from './bench-result.js';

/**
 * The size of a recorded hour per host: the real client (1 s sampling, 60 s keyframes) records this
 * machine through a real server for SECONDS while a light workload runs (a 1.5 s shell and sleep every
 * second, a TCP connection every 2 s), then the bytes on the wire (sum of sealed batches) and the
 * growth of the SQLite store (rows + raw evidence) are scaled to one hour.
 */
const SECONDS = Number(process.env.POFR_BENCH_HOUR_SECONDS ?? 120);

/** Bytes the store really uses: WAL folded in, free pages not counted. */
async function sqliteBytes(store: Store): Promise<number> {
  await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(store.db);
  const pages = await sql<{
    n: number;
  }>`SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count()) AS n`.execute(
    store.db,
  );
  const size = await sql<{ page_size: number }>`PRAGMA page_size`.execute(store.db);
  return pages.rows[0].n * size.rows[0].page_size;
}

export async function run(): Promise<BenchResult> {
  const base = mkdtempSync(join(tmpdir(), 'pofr-bench-hour-'));
  const quiet = () => {};
  const stops: (() => void)[] = [];
  try {
    const dataDir = join(base, 'server');
    initStoreConfig(dataDir);
    const server = await runServer({ dataDir, host: '127.0.0.1', port: 0, log: quiet });
    try {
      const token = await createToken(server.store, { ttlMs: 60_000, uses: 1, approve: true });
      await enrollClient({
        stateDir: join(base, 'client'),
        server: `127.0.0.1:${server.port}`,
        token,
        fingerprint: server.fingerprint,
        name: 'bench',
      });
      const sink = createServer((s) => s.on('data', () => {}).on('error', () => {}));
      await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
      const port = (sink.address() as { port: number }).port;
      stops.push(() => sink.close());
      const dbBefore = await sqliteBytes(server.store);
      const client = await runClient({
        stateDir: join(base, 'client'),
        intervalMs: 1000,
        batchMs: 5000,
        keyframeMs: 60_000,
        log: quiet,
      });
      const procTimer = setInterval(
        () => spawn('sh', ['-c', 'sleep 1.5; :', 'bench-workload'], { stdio: 'ignore' }),
        1000,
      );
      const netTimer = setInterval(() => {
        const c = connect(port, '127.0.0.1', () => setTimeout(() => c.destroy(), 1500));
        c.on('error', () => {});
      }, 2000);
      stops.push(
        () => clearInterval(procTimer),
        () => clearInterval(netTimer),
      );
      await new Promise((r) => setTimeout(r, SECONDS * 1000));
      clearInterval(procTimer);
      clearInterval(netTimer);
      await client.stop(20_000);
      const batches = await server.store.db
        .selectFrom('batches')
        .select((eb) => [
          eb.fn.countAll<number>().as('n'),
          eb.fn.sum<number>('bytes').as('bytes'),
          eb.fn.sum<number>('record_count').as('records'),
        ])
        .executeTakeFirstOrThrow();
      const procs = await server.store.db
        .selectFrom('processes')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      const alive = await server.store.db
        .selectFrom('processes')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('end', 'is', null)
        .executeTakeFirstOrThrow();
      // Baseline, same run: a recorder that ships the full state every second (what POFR does),
      // each snapshot gzipped on its own — one real keyframe of this host, times 3600.
      const snapshotSampler = new ProcfsSampler({ observerPids: () => new Set([process.pid]) });
      const snapshot = gzipSync(JSON.stringify(snapshotSampler.poll(Date.now() * 1000))).length;
      snapshotSampler.close();
      const scale = 3600 / SECONDS;
      const wire = Number(batches.bytes) * scale;
      const db = ((await sqliteBytes(server.store)) - dbBefore) * scale;
      return {
        name: 'recorded-hour-size',
        lines: [
          `recorded ${SECONDS} s of this host (~${Number(alive.n)} live processes, 1 s sampling, 60 s keyframes, workload: a 1.5 s shell + sleep every second, a 1.5 s TCP connection every 2 s)`,
          `  ${Number(batches.n)} batches, ${Number(batches.records)} records, ${Number(procs.n)} process images`,
          `  on the wire: ${(wire / 1e6).toFixed(2)} MB per host-hour (signed, compressed batches)`,
          `  in SQLite:   ${(db / 1e6).toFixed(2)} MB per host-hour (rows + indexes + raw evidence)`,
          `  baseline, same run: full snapshot every second, gzipped: ${((snapshot * 3600) / 1e6).toFixed(2)} MB per host-hour (${(snapshot / 1024).toFixed(1)} KiB per snapshot) — pofr ships ${(wire / (snapshot * 3600)).toFixed(3)}× that`,
          `  for scale: POFR's own figure (ARCHITECTURE.md) is 8 GB/day raw = ${(8000 / 24).toFixed(0)} MB per host-hour`,
        ],
        metrics: {
          seconds: SECONDS,
          batches: Number(batches.n),
          records: Number(batches.records),
          wire_bytes_per_hour: wire,
          snapshot_baseline_bytes_per_hour: snapshot * 3600,
          sqlite_bytes_per_hour: db,
        },
      };
    } finally {
      await server.close();
    }
  } finally {
    for (const s of stops) s();
    rmSync(base, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
