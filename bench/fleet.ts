import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ingestBatch } from '../src/ingest/index.js';
import {
  frontierFromSeed,
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  newSealSeed,
  type SealedBatch,
  sealBatch,
  sealKeyAt,
} from '../src/protocol/index.js';
import { openStore } from '../src/store/index.js';
import { type BenchResult, isMain, median } from './bench-result.js';
import {
  busyRecords,
  connectFleet,
  enrollFleet,
  POFR_MAIN,
  percentile,
  type ServerProcess,
  type SimHost,
  startServerProcess,
} from './fleet-sim.js';

/**
 * The fleet a server carries: N simulated hosts (default 200), each with its own SSH key, signing
 * key and seal seed, enrolled over real SSH and connected over loopback from this process to a real
 * `pofr server run` on SQLite, each sending one sealed batch every BATCH_SECONDS. A **busy host** is
 * the host of `recorded-hour-size` (docs/benchmarks.md: 4,134 records in 120 s, ~34 records/s): here
 * 10 processes of 17 records each per 5 s batch, 34 records/s. Measured: the server process's CPU
 * (from /proc) per host, its peak RSS, ACK latency (batch handed to the uploader → ACK), batches
 * refused; then the time one host takes to drain a one-hour backlog (720 such batches) through its
 * connection. Baseline, same run: the bare ingest floor — ingestBatch of the same batches in this
 * process into a fresh SQLite store, no SSH — as CPU per batch; the ratio is what SSH, framing and
 * the server around ingest add. Then the goal's load itself: POFR_BENCH_FLEET_CARRY hosts (default
 * 1,000) sending at once to the same server, and whether it carried them (all acknowledged, none
 * refused, ACK p99 under a second, the server keeping pace).
 */
const HOSTS = Number(process.env.POFR_BENCH_FLEET_HOSTS ?? 200);
const SECONDS = Number(process.env.POFR_BENCH_FLEET_SECONDS ?? 60);
/** Hosts of the second phase, sent at once to one server (the goal's load); 0 leaves it out. */
const CARRY = Number(process.env.POFR_BENCH_FLEET_CARRY ?? 1000);
const BATCH_SECONDS = 5;
const PROCS_PER_BATCH = 10;
const BACKLOG_BATCHES = 3600 / BATCH_SECONDS;

function pofr(args: string[]): string {
  return execFileSync(process.execPath, [POFR_MAIN, ...args], {
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString();
}

/** CPU ms per batch of ingestBatch in this process, for batches of the fleet's shape. */
async function ingestFloor(batches: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-bench-floor-'));
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'pofr.db') });
  try {
    const signing = generateSigningKeyPair();
    const seed = newSealSeed();
    await store.db
      .insertInto('hosts')
      .values({
        host_id: 'floor',
        name: 'floor',
        status: 'approved',
        ssh_key: 'ssh-ed25519 AAAA floor',
        ssh_fingerprint: 'SHA256:floor',
        signing_key: signing.publicPem,
        seal_seed: seed.toString('hex'),
        seal_from: 1,
        enrolled_at: 0,
      })
      .execute();
    const key = loadPrivateKey(signing.privatePem);
    let frontier = frontierFromSeed(seed);
    let prev = GENESIS_HASH;
    const sealed: SealedBatch[] = [];
    for (let seq = 1; seq <= batches; seq++) {
      const { key: sk, rest } = sealKeyAt(frontier, seq);
      frontier = rest;
      const records = busyRecords(1_795_000_000_000_000 + seq * 5_000_000, PROCS_PER_BATCH, 1000 + seq * 20);
      const b = sealBatch({ host_id: 'floor', boot_id: 'b', seq, prev_hash: prev, records }, key, sk);
      prev = b.hash;
      sealed.push(b);
    }
    const cpu0 = process.cpuUsage();
    for (const b of sealed) {
      const r = await ingestBatch(store, b.bytes, { principal: 'floor' });
      if (r.status !== 'accepted') throw new Error(`floor batch ${b.header.seq}: ${JSON.stringify(r)}`);
    }
    const cpu = process.cpuUsage(cpu0);
    return (cpu.user + cpu.system) / 1000 / batches;
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Every host sends one batch every BATCH_SECONDS for `seconds`, spread over each round as
 * independent recorders' timers would be; resolves when every batch is acknowledged. Every batch
 * is sealed beforehand, so that what this process does while the server is measured is sending.
 */
async function sendRounds(hosts: readonly SimHost[], server: ServerProcess, seconds: number) {
  const rounds = Math.max(1, Math.floor(seconds / BATCH_SECONDS));
  const planned = hosts.map((h, i) =>
    Array.from({ length: rounds }, (_, r) =>
      h.seal(busyRecords(Date.now() * 1000 + r * 5_000_000, PROCS_PER_BATCH, 1000 + i * 10_000 + r * 20)),
    ),
  );
  const seen = hosts.map((h) => h.queue.latenciesMs.length);
  const refusedBefore = hosts.reduce((n, h) => n + h.queue.refused, 0);
  const cpu0 = server.cpuSeconds();
  const simCpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let r = 0; r < rounds; r++) {
    const roundStart = t0 + r * BATCH_SECONDS * 1000;
    for (let i = 0; i < hosts.length; i++) {
      const due = roundStart + (i / hosts.length) * BATCH_SECONDS * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      hosts[i].send(planned[i][r]);
    }
  }
  await Promise.all(hosts.map((h) => h.flush(300_000)));
  const wallS = (performance.now() - t0) / 1000;
  const cpuS = server.cpuSeconds() - cpu0;
  const simCpu = process.cpuUsage(simCpu0);
  return {
    hosts: hosts.length,
    sent: rounds * hosts.length,
    wallS,
    cpuS,
    simCpuS: (simCpu.user + simCpu.system) / 1e6,
    latencies: hosts.flatMap((h, i) => h.queue.latenciesMs.slice(seen[i])),
    refused: hosts.reduce((n, h) => n + h.queue.refused, 0) - refusedBefore,
  };
}

function availableCores(): number {
  return Number(execFileSync('nproc').toString().trim());
}

export async function run(): Promise<BenchResult> {
  const base = mkdtempSync(join(tmpdir(), 'pofr-bench-fleet-'));
  const data = join(base, 'server');
  const lines: string[] = [];
  const loadBefore = loadavg()[0];
  let hosts: SimHost[] = [];
  const everyHost: SimHost[] = [];
  pofr(['server', 'init', '--data', data]);
  const server = await startServerProcess(data);
  try {
    const token = pofr(['server', 'token', '--data', data, '--approve', '--uses', String(HOSTS + 1)]).trim();
    const tEnroll = performance.now();
    hosts = await enrollFleet(server.port, server.fingerprint, token, HOSTS + 1);
    everyHost.push(...hosts);
    const enrollS = (performance.now() - tEnroll) / 1000;
    const backlogHost = hosts.pop()!;
    await connectFleet(hosts, server.port, server.fingerprint);

    const main = await sendRounds(hosts, server, SECONDS);
    const { wallS, cpuS, simCpuS, latencies, refused } = main;
    const batches = latencies.length;
    const peakRss = server.peakRssBytes();

    // One busy host's hour of backlog through its one connection, the fleet still connected.
    backlogHost.connect(server.port, server.fingerprint, '127.0.0.9');
    const backlog = Array.from({ length: BACKLOG_BATCHES }, (_, r) =>
      backlogHost.seal(busyRecords(Date.now() * 1000 + r * 5_000_000, PROCS_PER_BATCH, 1000 + r * 20)),
    );
    while (!backlogHost.connected()) await new Promise((res) => setTimeout(res, 20));
    const tDrain = performance.now();
    for (const b of backlog) backlogHost.send(b);
    await backlogHost.flush(600_000);
    const drainS = (performance.now() - tDrain) / 1000;
    const backlogRefused = backlogHost.queue.refused;

    // The goal's own load, measured rather than extrapolated: CARRY hosts at once (the fleet above
    // and more), carried if every batch is acknowledged, none refused, ACK p99 under a second and
    // the server keeping pace (the last round acknowledged within a round of being sent).
    let carry: Awaited<ReturnType<typeof sendRounds>> | undefined;
    if (CARRY > hosts.length) {
      const more = CARRY - hosts.length;
      const token2 = pofr(['server', 'token', '--data', data, '--approve', '--uses', String(more)]).trim();
      const extra = await enrollFleet(server.port, server.fingerprint, token2, more, 8, HOSTS + 1);
      everyHost.push(...extra);
      await connectFleet(extra, server.port, server.fingerprint);
      carry = await sendRounds([...hosts, ...extra], server, SECONDS);
    }

    const floorMs = median([await ingestFloor(120), await ingestFloor(120), await ingestFloor(120)]);
    const cpuPerBatchMs = (cpuS * 1000) / batches;
    const corePerHost = cpuS / wallS / hosts.length;
    const recordsPerSecond = (PROCS_PER_BATCH * 17) / BATCH_SECONDS;
    const metrics = {
      hosts: hosts.length,
      seconds: wallS,
      batches,
      refused: refused + backlogRefused,
      enroll_s: enrollS,
      server_cpu_s: cpuS,
      simulator_cpu_s: simCpuS,
      core_per_host: corePerHost,
      hosts_per_core: 1 / corePerHost,
      peak_rss_mb: peakRss / 1048576,
      ack_p50_ms: percentile(latencies, 50),
      ack_p99_ms: percentile(latencies, 99),
      backlog_drain_s: drainS,
      server_cpu_per_batch_ms: cpuPerBatchMs,
      floor_cpu_per_batch_ms: floorMs,
      ratio_to_floor: cpuPerBatchMs / floorMs,
    };
    lines.push(
      `fleet: ${hosts.length} hosts over SSH on loopback, each one sealed batch every ${BATCH_SECONDS} s (${PROCS_PER_BATCH * 17} records: a busy host, ${recordsPerSecond} records/s), ${wallS.toFixed(1)} s`,
      `enrollment of ${HOSTS + 1} hosts over SSH: ${enrollS.toFixed(1)} s`,
      `batches acknowledged: ${batches}, refused: ${refused}`,
      `server CPU: ${cpuS.toFixed(2)} s = ${((100 * cpuS) / wallS).toFixed(1)} % of a core for ${hosts.length} hosts, ${(100 * corePerHost).toFixed(3)} % per host → ${Math.round(1 / corePerHost)} busy hosts per core`,
      `server peak RSS: ${(peakRss / 1048576).toFixed(0)} MB`,
      `the simulated fleet (this process, all ${hosts.length} clients): ${((100 * simCpuS) / wallS).toFixed(1)} % of a core`,
      `ACK latency: p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms`,
      `one-hour backlog of a busy host (${BACKLOG_BATCHES} batches): drained in ${drainS.toFixed(1)} s, refused ${backlogRefused}`,
      `machine load average (1 min) before and after: ${loadBefore.toFixed(1)} and ${loadavg()[0].toFixed(1)} on ${availableCores()} cores — ACK latency is wall time, and waits for the CPU like everything else`,
      `baseline, bare ingest floor (ingestBatch in-process, same batches, median of 3): ${floorMs.toFixed(2)} ms CPU per batch`,
      `server CPU per batch over SSH: ${cpuPerBatchMs.toFixed(2)} ms — ${(cpuPerBatchMs / floorMs).toFixed(2)} × the floor`,
    );
    if (carry) {
      const carried =
        carry.refused === 0 &&
        carry.latencies.length === carry.sent &&
        percentile(carry.latencies, 99) < 1000 &&
        carry.wallS < SECONDS + BATCH_SECONDS;
      Object.assign(metrics, {
        carry_hosts: carry.hosts,
        carry_seconds: carry.wallS,
        carry_batches: carry.latencies.length,
        carry_refused: carry.refused,
        carry_server_core: carry.cpuS / carry.wallS,
        carry_cpu_per_batch_ms: (carry.cpuS * 1000) / carry.latencies.length,
        carry_ack_p50_ms: percentile(carry.latencies, 50),
        carry_ack_p99_ms: percentile(carry.latencies, 99),
        carried,
      });
      lines.push(
        `${carry.hosts} busy hosts at once: ${carry.latencies.length} of ${carry.sent} batches acknowledged, refused ${carry.refused}, in ${carry.wallS.toFixed(1)} s for ${SECONDS} s of sending; server CPU ${((100 * carry.cpuS) / carry.wallS).toFixed(1)} % of a core (${((carry.cpuS * 1000) / carry.latencies.length).toFixed(2)} ms a batch); ACK p50 ${percentile(carry.latencies, 50).toFixed(1)} ms, p99 ${percentile(carry.latencies, 99).toFixed(1)} ms → ${carried ? 'carried' : 'NOT carried (ACK p99 ≥ 1 s or the server fell behind)'}`,
      );
    }
    return { name: 'fleet', lines, metrics };
  } finally {
    for (const h of everyHost) await h.stop();
    await server.stop();
    rmSync(base, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
