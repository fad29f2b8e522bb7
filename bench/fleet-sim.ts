import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  frontierFromSeed,
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  newSealSeed,
  type PofrRecord,
  type SealedBatch,
  type SealFrontier,
  sealBatch,
  sealKeyAt,
} from '../src/protocol/index.js';
import {
  BatchUploader,
  enrollOverSsh,
  generateSshKeyPair,
  type UploadQueue,
} from '../src/transport/index.js';

/**
 * A simulated fleet for `bench/fleet.ts` and `test/e2e/fleet.test.ts`: N hosts, each with its own
 * SSH key, signing key and seal seed, enrolled over real SSH, each with its own connection and
 * BatchUploader sending sealed batches of a realistic record mix, from this one process, to a real
 * `pofr server run` in another. What the server costs is read from /proc of that process.
 */

export const POFR_MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/**
 * One host's records for `ms` of a busy host: per process a start with argv, file opens and closes,
 * a TCP connection with a state change and its close, an exit — 17 records a process.
 */
export function busyRecords(t0: number, processes: number, pidBase: number): PofrRecord[] {
  const recs: PofrRecord[] = [];
  let t = t0;
  for (let i = 0; i < processes; i++) {
    const pid = pidBase + i;
    const start_ticks = pid * 10;
    t += 1000;
    recs.push({
      type: 'process_start',
      t,
      proc: {
        pid,
        start_ticks,
        start: t,
        ppid: 1,
        parent_start_ticks: null,
        exe: '/usr/bin/bash',
        comm: 'bash',
        argv: ['bash', '-c', `curl -s https://api.example.org/v1/jobs/${pid} | jq .status`],
        cwd: '/srv/app',
        ruid: 1000,
        euid: 1000,
        rgid: 1000,
        egid: 1000,
        source: 'sample',
        observer: false,
      },
    });
    for (let fd = 3; fd < 8; fd++) {
      recs.push({
        type: 'file_open',
        t: t + fd,
        file: { pid, start_ticks, fd, path: `/srv/app/cache/${pid}-${fd}`, kind: 'file' },
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
        local_port: 30000 + (pid % 30000),
        remote_ip: '93.184.216.34',
        remote_port: 443,
        state: 'SYN_SENT',
        inode: pid * 7,
      },
    });
    recs.push({ type: 'endpoint_state', t: t + 20, key, state: 'ESTABLISHED' });
    recs.push({ type: 'endpoint_close', t: t + 30, key });
    for (let fd = 3; fd < 8; fd++) recs.push({ type: 'file_close', t: t + 40 + fd, pid, start_ticks, fd });
    recs.push({ type: 'process_exit', t: t + 50, pid, start_ticks });
  }
  return recs;
}

/** A running `pofr server run`, with what it costs read from /proc. */
export interface ServerProcess {
  readonly pid: number;
  readonly port: number;
  readonly fingerprint: string;
  /** User + system CPU seconds so far. */
  cpuSeconds(): number;
  rssBytes(): number;
  peakRssBytes(): number;
  stop(): Promise<void>;
}

const TICKS = 100;

export async function startServerProcess(data: string): Promise<ServerProcess> {
  // POFR_BENCH_SERVER_NODE_ARGS: flags for the server's node only (e.g. `--cpu-prof --cpu-prof-dir=DIR`).
  const nodeArgs = (process.env.POFR_BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  const child = spawn(
    process.execPath,
    [...nodeArgs, POFR_MAIN, 'server', 'run', '--data', data, '--listen', '127.0.0.1:0'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 30_000);
    child.stderr!.on('data', (d: Buffer) => {
      // Only the start is kept: a long run logs a line per connection.
      if (err.length < 20_000) err += d.toString();
      const m = /"port":(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)));
  });
  const fp = /"fingerprint":"(SHA256:[^"]+)"/.exec(err)?.[1] ?? '';
  const pid = child.pid!;
  const status = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  };
  return {
    pid,
    port,
    fingerprint: fp,
    cpuSeconds() {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) / TICKS;
    },
    rssBytes: () => status('VmRSS'),
    peakRssBytes: () => status('VmHWM'),
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** An in-memory spool for one simulated host that remembers when each batch was handed over. */
class TimedQueue implements UploadQueue {
  readonly #pending = new Map<number, { bytes: Buffer; since: number }>();
  readonly latenciesMs: number[] = [];
  refused = 0;
  acked = 0;

  push(b: SealedBatch): void {
    this.#pending.set(b.header.seq, { bytes: b.bytes, since: performance.now() });
  }
  get depth(): number {
    return this.#pending.size;
  }
  pending() {
    return [...this.#pending.entries()].map(([seq, p]) => ({ seq, read: () => p.bytes }));
  }
  ack(seq: number): void {
    const p = this.#pending.get(seq);
    if (!p) return;
    this.latenciesMs.push(performance.now() - p.since);
    this.#pending.delete(seq);
    this.acked++;
  }
  quarantine(seq: number): void {
    if (this.#pending.delete(seq)) this.refused++;
  }
}

/** One simulated monitored host: its keys, its seal frontier, its chain and its connection. */
export class SimHost {
  readonly queue = new TimedQueue();
  #seq = 0;
  #prev = GENESIS_HASH;
  #frontier: SealFrontier;
  #uploader: BatchUploader | null = null;

  private constructor(
    readonly hostId: string,
    readonly sshPrivateKey: string,
    readonly signingPem: string,
    frontier: SealFrontier,
  ) {
    this.#frontier = frontier;
  }

  /** Enrolls a new host with `token` over real SSH, with its own keys and seal seed. */
  static async enroll(port: number, fingerprint: string, token: string, n: number): Promise<SimHost> {
    const ssh = generateSshKeyPair();
    const signing = generateSigningKeyPair();
    const seed = newSealSeed();
    const { reply } = await enrollOverSsh({
      host: '127.0.0.1',
      port,
      sshPrivateKey: ssh.privateKey,
      pinnedFingerprint: fingerprint,
      request: {
        method: 'token',
        token,
        name: `sim-${n}`,
        signing_key: signing.publicPem,
        seal_seed: seed.toString('hex'),
        seal_from: 1,
        facts: {
          hostname: `sim-${n}.${hostname()}`,
          machine_id: `m-${n}`,
          os: 'Debian GNU/Linux 12',
          kernel: '6.1.0',
        },
      },
    });
    if (!reply.ok || reply.status !== 'approved')
      throw new Error(`enrollment of sim-${n}: ${JSON.stringify(reply)}`);
    const host = new SimHost(reply.host_id, ssh.privateKey, signing.privatePem, frontierFromSeed(seed));
    seed.fill(0);
    return host;
  }

  /** Seals the next batch of this host's chain (not yet handed to the uploader). */
  seal(records: PofrRecord[]): SealedBatch {
    const seq = this.#seq + 1;
    const { key, rest } = sealKeyAt(this.#frontier, seq);
    const b = sealBatch(
      { host_id: this.hostId, boot_id: 'sim-boot', seq, prev_hash: this.#prev, records },
      loadPrivateKey(this.signingPem),
      key,
    );
    this.#frontier = rest;
    this.#seq = seq;
    this.#prev = b.hash;
    return b;
  }

  send(b: SealedBatch): void {
    this.queue.push(b);
    this.#uploader?.notify();
  }

  connect(port: number, fingerprint: string, localAddress: string): void {
    this.#uploader = new BatchUploader({
      host: '127.0.0.1',
      port,
      username: this.hostId,
      sshPrivateKey: this.sshPrivateKey,
      pinnedFingerprint: fingerprint,
      queue: this.queue,
      localAddress,
      backoff: { minMs: 200, maxMs: 2000 },
      pollMs: 1000,
    });
    this.#uploader.start();
  }

  connected(): boolean {
    return this.#uploader?.status().connected ?? false;
  }

  flush(timeoutMs: number): Promise<boolean> {
    return this.#uploader?.flush(timeoutMs) ?? Promise.resolve(this.queue.depth === 0);
  }

  async stop(): Promise<void> {
    await this.#uploader?.stop();
  }
}

/** Enrolls `n` hosts, `concurrency` at a time, numbered from `first`. */
export async function enrollFleet(
  port: number,
  fingerprint: string,
  token: string,
  n: number,
  concurrency = 8,
  first = 0,
): Promise<SimHost[]> {
  const hosts: SimHost[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        hosts[i] = await SimHost.enroll(port, fingerprint, token, first + i);
      }
    }),
  );
  return hosts;
}

/** Connects every host, a few at a time, from several loopback addresses (as a fleet comes from many). */
export async function connectFleet(
  hosts: readonly SimHost[],
  port: number,
  fingerprint: string,
): Promise<void> {
  for (let i = 0; i < hosts.length; i++) {
    hosts[i].connect(port, fingerprint, `127.0.0.${1 + (i % 8)}`);
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 100));
  }
  const deadline = Date.now() + 120_000;
  while (!hosts.every((h) => h.connected())) {
    if (Date.now() > deadline) {
      throw new Error(
        `${hosts.filter((h) => !h.connected()).length} of ${hosts.length} hosts did not connect`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
