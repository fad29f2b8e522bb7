import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import {
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  type PofrRecord,
} from '../src/protocol/index.js';
import { BatchAssembler } from '../src/roles/client/batch-assembler.js';
import { CrashJournal } from '../src/spool/index.js';
import { type Daemon, pofr, startPofr, waitUntil } from '../test/helpers/pofr-cli.js';
import { type BenchResult, isMain, median } from './bench-result.js';

/**
 * The crash journal's price and what it buys, with real processes: a `pofr server run` and a
 * `pofr client run` over SSH on loopback, and a load of a steady 200 records/s (a process that
 * every 100 ms closes its 10 oldest files and opens 10 new ones, 300 held: 100 file_open and 100
 * file_close records a second, each file seen by any sampling interval up to 3 s).
 *
 * 1. Recorder CPU and writes per second with the journal against without, alternating runs in the
 *    same process, medians: CPU from /proc/PID/task/{@literal *}/schedstat (every thread, ns), write
 *    syscalls and bytes from /proc/PID/io, "to disk" as write_bytes − cancelled_write_bytes (journal
 *    pages truncated at a seal before writeback never reach the disk; a window's edges can shift one
 *    journal segment in or out of it). Keyframes (60 s by default) are kept out of the window: each
 *    costs its size once in the spool and once in the journal.
 * 2. Records lost to a SIGKILL: the recorder (defaults: 1 s cycles, 5 s batches) is killed at a
 *    random moment and started again; every file the load opened or closed at least one cycle
 *    before the kill must be in the store with its own open and close. Lost = those that are not.
 */
const REPS = Number(process.env.POFR_BENCH_JOURNAL_REPS ?? 3);
const WARM_MS = 3000;
const WINDOW_MS = Number(process.env.POFR_BENCH_JOURNAL_WINDOW_MS ?? 8000);
/** The cost runs keep keyframes out of the window: one lands in a window or not, which is noise. */
const NO_KEYFRAME = ['--keyframe', '600000'];
/**
 * /proc sampling alone: tracing instances belong to the recorder's own benchmarks. With kernel
 * events the recorder ticks every 100 ms, but a tick with nothing new is journaled at most once a
 * second, so the 100 ms sampling runs bound the journal's write rate from above.
 */
const SOURCES = ['--sources', 'procfs'];

const LOAD = `
const fs = require('node:fs');
const dir = process.argv[1];
const held = [];
let n = 0;
const us = () => Date.now() * 1000;
const open = () => {
  const path = dir + '/f-' + n++;
  held.push({ fd: fs.openSync(path, 'w'), path });
  process.stdout.write('O ' + path + ' ' + us() + '\\n');
};
for (let i = 0; i < 300; i++) open();
process.stdout.write('ready\\n');
setInterval(() => {
  for (let i = 0; i < 10; i++) {
    const f = held.shift();
    fs.closeSync(f.fd);
    process.stdout.write('C ' + f.path + ' ' + us() + '\\n');
    open();
  }
}, 100);
`;

/**
 * The journal's own CPU per record, in this process, against what the recorder already spends on
 * the same records when it seals them (JSON, gzip, sha256, ed25519): the shared host's noise, which
 * moves a whole recorder's CPU by more than the journal costs, does not reach this ratio.
 */
export function journalCpuPerRecord(dir: string): {
  journalUs: number;
  sealUs: number;
  bytesPerRecord: number;
} {
  const CYCLES = 2000;
  const PER_CYCLE = 20;
  const T = Date.now() * 1000;
  const cycle = (c: number): PofrRecord[] =>
    Array.from({ length: PER_CYCLE }, (_, i) =>
      i % 2 === 0
        ? {
            type: 'file_open',
            t: T + c * 100_000,
            file: {
              pid: 4242,
              start_ticks: 777,
              fd: 3 + i,
              path: `/var/lib/app/data/file-${c}-${i}.db`,
              kind: 'file',
            },
          }
        : { type: 'file_close', t: T + c * 100_000, pid: 4242, start_ticks: 777, fd: 3 + i },
    );
  const cycles = Array.from({ length: CYCLES }, (_, c) => cycle(c));
  const journal = CrashJournal.open(
    join(dir, 'cpu-journal'),
    {
      host_id: 'h',
      boot_id: 'b',
      pid: process.pid,
      started: T,
      base_seq: 0,
      base_hash: GENESIS_HASH,
    },
    { syncMs: null },
  );
  const cpu = () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  let bytes = 0;
  const j0 = cpu();
  for (let c = 0; c < CYCLES; c++) {
    journal.write(T + c * 100_000, cycles[c]);
    bytes = Math.max(bytes, journal.status().bytes);
    // A seal every 50 cycles (5 s at 100 ms) empties it, as the assembler does.
    if (c % 50 === 49) journal.sealed({ seq: c, hash: GENESIS_HASH }, T + c * 100_000, []);
  }
  const journalUs = cpu() - j0;
  journal.close();
  const sink = {
    head: { seq: 0, hash: GENESIS_HASH },
    append(b: { header: { seq: number }; hash: string }) {
      this.head = { seq: b.header.seq, hash: b.hash };
    },
    chainHead() {
      return this.head;
    },
  };
  const assembler = new BatchAssembler({
    hostId: 'h',
    bootId: 'b',
    signingKey: loadPrivateKey(generateSigningKeyPair().privatePem),
    sink,
    maxRecords: 50 * PER_CYCLE,
    maxAgeMs: Number.MAX_SAFE_INTEGER,
  });
  const s0 = cpu();
  for (let c = 0; c < CYCLES; c++) assembler.add(cycles[c], c);
  const sealUs = cpu() - s0;
  const records = CYCLES * PER_CYCLE;
  return {
    journalUs: journalUs / records,
    sealUs: sealUs / records,
    bytesPerRecord: bytes / (50 * PER_CYCLE),
  };
}

interface LoadLog {
  opened: Map<string, number>;
  closed: Map<string, number>;
}

/** The 200 records/s load: a node process opening and closing files, logging when. */
async function startLoad(dir: string): Promise<{ child: ChildProcess; log: LoadLog }> {
  mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, ['-e', LOAD, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const log: LoadLog = { opened: new Map(), closed: new Map() };
  let buf = '';
  let ready: () => void;
  const isReady = new Promise<void>((r) => {
    ready = r;
  });
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) {
      if (l === 'ready') ready();
      const [op, path, t] = l.split(' ');
      if (op === 'O') log.opened.set(path, Number(t));
      if (op === 'C') log.closed.set(path, Number(t));
    }
  });
  await isReady;
  return { child, log };
}

interface Counters {
  cpuNs: number;
  syscw: number;
  wchar: number;
  diskBytes: number;
}

function counters(pid: number): Counters {
  let cpuNs = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      cpuNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  const io = Object.fromEntries(
    readFileSync(`/proc/${pid}/io`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => {
        const [k, v] = l.split(':');
        return [k.trim(), Number(v)];
      }),
  );
  return {
    cpuNs,
    syscw: io.syscw,
    wchar: io.wchar,
    diskBytes: io.write_bytes - io.cancelled_write_bytes,
  };
}

interface Variant {
  readonly name: string;
  readonly flags: readonly string[];
}

interface Rate {
  /** Records the recorder produced a second (the load's 200, and whatever else the host does). */
  recordsPerS: number;
  cpuPct: number;
  writesPerS: number;
  wcharPerS: number;
  diskPerS: number;
}

async function measure(data: string, state: string, hostName: string, v: Variant): Promise<Rate> {
  const client = startPofr(['client', 'run', '--state', state, ...SOURCES, ...NO_KEYFRAME, ...v.flags]);
  let rate: Omit<Rate, 'recordsPerS'>;
  let window: [number, number];
  try {
    await client.waitFor(/pofr client recording/);
    await sleep(WARM_MS);
    const pid = client.child.pid!;
    const a = counters(pid);
    const t0 = performance.now();
    const from = Date.now() * 1000;
    await sleep(WINDOW_MS);
    const b = counters(pid);
    window = [from, Date.now() * 1000];
    const s = (performance.now() - t0) / 1000;
    rate = {
      cpuPct: ((b.cpuNs - a.cpuNs) / 1e9 / s) * 100,
      writesPerS: (b.syscw - a.syscw) / s,
      wcharPerS: (b.wchar - a.wchar) / s,
      diskPerS: (b.diskBytes - a.diskBytes) / s,
    };
  } finally {
    await client.stop();
  }
  // The clean stop delivered every batch: count the records of the window at the server.
  const db = new Database(join(data, 'pofr.db'), { readonly: true, fileMustExist: true });
  try {
    const r = db
      .prepare(
        'SELECT sum(b.record_count) AS n FROM batches b JOIN hosts h ON h.host_id = b.host_id WHERE h.name = ? AND b.t_to >= ? AND b.t_to <= ?',
      )
      .get(hostName, window[0], window[1]) as { n: number | null };
    return { ...rate, recordsPerS: (r.n ?? 0) / ((window[1] - window[0]) / 1e6) };
  } finally {
    db.close();
  }
}

/** Kills the recorder with SIGKILL after a random time, restarts it, and counts what the store lacks. */
async function killAndCount(
  data: string,
  state: string,
  hostName: string,
  loadDir: string,
  journal: boolean,
): Promise<{ lost: number; expected: number; sinceSealMs: number }> {
  const load = await startLoad(loadDir);
  const flags = [...SOURCES, ...(journal ? [] : ['--no-journal'])];
  try {
    const first = startPofr(['client', 'run', '--state', state, ...flags]);
    await first.waitFor(/pofr client recording/);
    // What happened before the first samples is not the crash's to lose.
    const since = Date.now() * 1000 + 1_500_000;
    await sleep(6000 + Math.random() * 5000);
    const killedAt = Date.now() * 1000;
    const gone = once(first.child, 'exit');
    first.child.kill('SIGKILL');
    await gone;
    const second = startPofr(['client', 'run', '--state', state, ...flags]);
    await second.waitFor(/pofr client recording/);
    const restartedAt = Date.now() * 1000;
    const db = new Database(join(data, 'pofr.db'), { readonly: true, fileMustExist: true });
    try {
      const hostId = (
        db.prepare('SELECT host_id FROM hosts WHERE name = ?').get(hostName) as { host_id: string }
      ).host_id;
      // Everything of the first run is in once the server holds records from after the restart.
      await waitUntil(
        'the restarted recorder’s batches at the server',
        async () => {
          const r = db.prepare('SELECT max(t_to) AS t FROM batches WHERE host_id = ?').get(hostId) as {
            t: number | null;
          };
          return r.t !== null && r.t > restartedAt + 2_000_000 ? true : undefined;
        },
        60_000,
      );
      await second.stop();
      const rows = db
        .prepare(
          `SELECT path, first_seen, last_seen, is_open FROM file_opens WHERE host_id = ? AND path LIKE ? ORDER BY id`,
        )
        .all(hostId, `${loadDir}/%`) as {
        path: string;
        first_seen: number;
        last_seen: number;
        is_open: number;
      }[];
      const byPath = new Map<string, { first_seen: number; last_seen: number; is_open: number }>();
      for (const r of rows) if (!byPath.has(r.path)) byPath.set(r.path, r);
      const lastSealed = db
        .prepare(`SELECT max(t_to) AS t FROM batches WHERE host_id = ? AND t_to < ?`)
        .get(hostId, killedAt) as { t: number | null };
      // Seen by a sample before the kill: opened or closed at least one cycle (1 s) and a margin before it.
      const horizon = killedAt - 1_500_000;
      let expected = 0;
      let lost = 0;
      for (const [path, t] of load.log.opened) {
        if (t < since || t > horizon) continue;
        expected++;
        // Its own open record, not the restart's keyframe finding it open.
        const row = byPath.get(path);
        if (row === undefined || row.first_seen >= killedAt) lost++;
      }
      for (const [path, t] of load.log.closed) {
        if (t < since || t > horizon) continue;
        expected++;
        const row = byPath.get(path);
        // Its own close record, not the restart's keyframe closing what it found gone.
        if (row === undefined || row.is_open === 1 || row.last_seen >= killedAt) lost++;
      }
      const sinceSealMs = lastSealed.t === null ? Number.NaN : (killedAt - lastSealed.t) / 1000;
      return { lost, expected, sinceSealMs };
    } finally {
      db.close();
    }
  } finally {
    load.child.kill('SIGKILL');
  }
}

export async function run(): Promise<BenchResult> {
  const base = mkdtempSync(join(tmpdir(), 'pofr-bench-journal-'));
  const daemons: Daemon[] = [];
  let load: ChildProcess | null = null;
  try {
    const data = join(base, 'server');
    await pofr(['server', 'init', '--data', data]);
    const fp = (await pofr(['server', 'fingerprint', '--data', data])).stdout.trim();
    const server = startPofr(['server', 'run', '--data', data, '--listen', '127.0.0.1:0']);
    daemons.push(server);
    const port = Number((await server.waitFor(/"port":(\d+)/))[1]);
    const enroll = async (name: string) => {
      const state = join(base, name);
      const token = (await pofr(['server', 'token', '--data', data, '--approve'])).stdout.trim();
      const r = await pofr([
        ...['client', 'enroll', '--state', state, '--server', `127.0.0.1:${port}`],
        ...['--token', token, '--fingerprint', fp, '--name', name],
      ]);
      if (r.code !== 0) throw new Error(`crash-journal: enroll failed: ${r.stderr}`);
      return state;
    };

    // 1. CPU and writes, alternating variants so that the machine's drift hits them alike.
    const state = await enroll('bench-cost');
    const started = await startLoad(join(base, 'load-cost'));
    load = started.child;
    const variants: Variant[] = [
      { name: '1 s cycles, no journal', flags: ['--no-journal'] },
      { name: '1 s cycles, journal (fdatasync ≤ 1/s, default)', flags: [] },
      { name: '1 s cycles, journal, never fdatasync', flags: ['--journal-sync', 'off'] },
      { name: '100 ms cycles, no journal', flags: ['--interval', '100', '--no-journal'] },
      { name: '100 ms cycles, journal (fdatasync ≤ 1/s)', flags: ['--interval', '100'] },
      {
        name: '100 ms cycles, journal, fdatasync every cycle',
        flags: ['--interval', '100', '--journal-sync', '0'],
      },
    ];
    const rates = new Map<string, Rate[]>(variants.map((v) => [v.name, []]));
    for (let rep = 0; rep < REPS; rep++) {
      for (const v of rep % 2 === 0 ? variants : [...variants].reverse())
        rates.get(v.name)!.push(await measure(data, state, 'bench-cost', v));
    }
    load.kill('SIGKILL');
    load = null;
    const med = (name: string, k: keyof Rate) => median(rates.get(name)!.map((r) => r[k]));

    // 2. Records lost to a SIGKILL at 200 records/s, with the journal and without.
    const kills: { journal: boolean; lost: number; expected: number; sinceSealMs: number }[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      for (const journal of [true, false]) {
        const name = `bench-kill-${journal ? 'j' : 'n'}-${rep}`;
        const s = await enroll(name);
        kills.push({ journal, ...(await killAndCount(data, s, name, join(base, `load-${name}`), journal)) });
      }
    }

    const perRecord = [0, 1, 2].map(() => journalCpuPerRecord(base));
    const jUs = median(perRecord.map((r) => r.journalUs));
    const sUs = median(perRecord.map((r) => r.sealUs));
    const metrics: Record<string, number> = {
      journal_cpu_us_per_record: jUs,
      seal_cpu_us_per_record: sUs,
      journal_vs_seal_cpu: jUs / sUs,
      journal_bytes_per_record: perRecord[0].bytesPerRecord,
    };
    const lines: string[] = [
      `in process, 40,000 file records in cycles of 20: journal ${jUs.toFixed(2)} µs CPU a record (${perRecord[0].bytesPerRecord.toFixed(0)} bytes), against ${sUs.toFixed(2)} µs to seal it into a batch (JSON, gzip, sha256, ed25519): ${(jUs / sUs).toFixed(2)} × the sealing cost`,
      `load: 200 records/s (100 file opens + 100 closes a second, 300 files held), plus whatever else the host does (records/s: all the recorder produced); ${REPS} runs per variant, ${WINDOW_MS / 1000} s each after ${WARM_MS / 1000} s warm-up; medians`,
      'variant                                           records/s   CPU % of a core   write() calls/s   bytes written/s   to disk/s',
    ];
    for (const v of variants) {
      const cpu = med(v.name, 'cpuPct');
      const w = med(v.name, 'writesPerS');
      const wc = med(v.name, 'wcharPerS');
      const disk = med(v.name, 'diskPerS');
      const recs = med(v.name, 'recordsPerS');
      lines.push(
        `${v.name.padEnd(50)}${recs.toFixed(0).padStart(9)}${cpu.toFixed(2).padStart(18)}${w.toFixed(1).padStart(18)}${kib(wc).padStart(18)}${kib(disk).padStart(12)}`,
      );
      const key = v.name.replace(/[^a-z0-9]+/gi, '_').toLowerCase();
      Object.assign(metrics, {
        [`${key}_records_per_s`]: recs,
        [`${key}_cpu_pct`]: cpu,
        [`${key}_writes_per_s`]: w,
        [`${key}_wchar_per_s`]: wc,
        [`${key}_disk_bytes_per_s`]: disk,
      });
    }
    const ratio = (a: string, b: string, k: keyof Rate) => med(a, k) / med(b, k);
    const j1 = '1 s cycles, journal (fdatasync ≤ 1/s, default)';
    const n1 = '1 s cycles, no journal';
    const j100 = '100 ms cycles, journal (fdatasync ≤ 1/s)';
    const n100 = '100 ms cycles, no journal';
    metrics.cpu_ratio_1s = ratio(j1, n1, 'cpuPct');
    metrics.cpu_ratio_100ms = ratio(j100, n100, 'cpuPct');
    lines.push(
      `journal against none, same run: CPU ${metrics.cpu_ratio_1s.toFixed(2)} × at 1 s cycles, ${metrics.cpu_ratio_100ms.toFixed(2)} × at 100 ms; ` +
        `+${(med(j1, 'writesPerS') - med(n1, 'writesPerS')).toFixed(1)} write() calls/s at 1 s, +${(med(j100, 'writesPerS') - med(n100, 'writesPerS')).toFixed(1)} at 100 ms`,
    );
    for (const journal of [true, false]) {
      const k = kills.filter((x) => x.journal === journal);
      const lost = k.map((x) => x.lost);
      const tag = journal ? 'with journal' : 'no journal';
      lines.push(
        `SIGKILL at 200 records/s, ${tag}: lost ${lost.join(', ')} of ${k.map((x) => x.expected).join(', ')} records (median ${median(lost)}); killed ${k
          .map((x) => (x.sinceSealMs / 1000).toFixed(1))
          .join(', ')} s after the last sealed record`,
      );
      metrics[`sigkill_lost_${journal ? 'journal' : 'no_journal'}_median`] = median(lost);
      metrics[`sigkill_lost_${journal ? 'journal' : 'no_journal'}_max`] = Math.max(...lost);
    }
    lines.push('goal: at most one cycle’s worth (200 records at 1 s cycles) with the journal');
    return { name: 'crash-journal', lines, metrics };
  } finally {
    load?.kill('SIGKILL');
    for (const d of daemons) await d.stop(5000);
    rmSync(base, { recursive: true, force: true });
  }
}

function kib(bytesPerS: number): string {
  return `${(bytesPerS / 1024).toFixed(1)} KiB`;
}

if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
