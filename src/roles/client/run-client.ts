import { join } from 'node:path';
import { loadPrivateKey, type PofrRecord } from '../../protocol/index.js';
import { Recorder, readBootId, type SourceSelection } from '../../recorder/index.js';
import { Spool } from '../../spool/index.js';
import { BatchUploader } from '../../transport/index.js';
import { pofrVersion } from '../../version.js';
import { BatchAssembler } from './batch-assembler.js';
import { loadEnrollment, loadKeys, STATE_FILES, writeStateFile } from './client-state.js';
import { recoverJournal, startJournal } from './crash-recovery.js';
import { DEFAULT_HEARTBEAT_MS, effectiveConfig, RecorderHealth, type StopReason } from './recorder-health.js';

export type Log = (msg: string, fields?: object) => void;

export interface ClientOptions {
  readonly stateDir: string;
  /** Sampling period. */
  readonly intervalMs?: number;
  /** Longest a record waits before its batch is sealed. */
  readonly batchMs?: number;
  readonly keyframeMs?: number;
  readonly procRoot?: string;
  readonly spoolMaxBytes?: number;
  /** Which sources record (default: all: tracefs events, argv probes, procfs sampling). */
  readonly sources?: SourceSelection;
  /** tracefs mount points to try (tests point this at a missing path to force sampling). */
  readonly tracefsRoots?: readonly string[];
  /** Kernel event buffer per CPU, KiB. */
  readonly traceBufferKb?: number;
  /** How often the recorder says it is alive (default 30 s); the server calls it late past that. */
  readonly heartbeatMs?: number;
  /** false: no crash journal, so a SIGKILL loses what was not sealed yet (default true). */
  readonly journal?: boolean;
  readonly journalMaxBytes?: number;
  /** fdatasync the journal at most once per this many ms (0: every cycle; null: never). */
  readonly journalSyncMs?: number | null;
  readonly log: Log;
}

export interface ClientStatus {
  readonly pid: number;
  readonly host_id: string;
  readonly name: string;
  readonly server: string;
  readonly spool_depth: number;
  readonly spool_bytes: number;
  readonly last_ack_at: string | null;
  readonly acked: number;
  readonly connected: boolean;
  readonly last_error: string | null;
  /** The latest records that could not be spooled (full spool or disk): the gap record to come. */
  readonly last_loss: { readonly at: string; readonly dropped: number; readonly reason: string } | null;
  readonly sources: Record<string, unknown>;
  readonly config_hash: string;
  readonly heartbeat_ms: number;
  /** The crash journal: size, records not sealed yet, what it could not keep. Null when disabled. */
  readonly journal: { readonly bytes: number; readonly unsealed: number; readonly lost: number } | null;
  readonly updated_at: string;
}

export interface RunningClient {
  status(): ClientStatus;
  /** Seals what is pending and waits until the server has ACKed everything (or the timeout). */
  flush(timeoutMs: number): Promise<boolean>;
  /**
   * Samples once more (with a `recorder_stop` record saying why), seals, tries to deliver within
   * `flushMs`, then stops; the spool keeps the rest.
   */
  stop(flushMs?: number, why?: StopReason): Promise<void>;
}

/**
 * Composes the client: sources → diff → batch → spool → transport. One sampling cycle at a time
 * (a timer chain, never overlapping cycles); the uploader runs beside it and is woken per batch.
 */
export async function runClient(opts: ClientOptions): Promise<RunningClient> {
  const enrollment = loadEnrollment(opts.stateDir);
  const keys = loadKeys(opts.stateDir);
  const procRoot = opts.procRoot ?? '/proc';
  const intervalMs = opts.intervalMs ?? 1000;
  const spool = Spool.open(join(opts.stateDir, STATE_FILES.spool), { maxBytes: opts.spoolMaxBytes });
  const ownPids = new Set([process.pid]);
  const recorder = Recorder.start({
    procRoot,
    observerPids: () => ownPids,
    intervalMs,
    keyframeEveryMs: opts.keyframeMs,
    sources: opts.sources,
    tracefsRoots: opts.tracefsRoots,
    traceBufferKb: opts.traceBufferKb,
    log: opts.log,
  });
  const uploader = new BatchUploader({
    host: enrollment.server_host,
    port: enrollment.server_port,
    username: enrollment.host_id,
    sshPrivateKey: keys.sshPrivateKey,
    pinnedFingerprint: enrollment.server_fingerprint,
    queue: spool,
    clientVersion: pofrVersion(),
    log: opts.log,
  });
  let lastLoss: ClientStatus['last_loss'] = null;
  const bootId = readBootId(procRoot);
  const signingKey = loadPrivateKey(keys.signingPrivatePem);
  // Before anything new: what a crashed run left unsealed goes first, in the chain it belongs to.
  const journalPath = join(opts.stateDir, STATE_FILES.journal);
  const { records: recovered } = recoverJournal({
    path: journalPath,
    sink: spool,
    hostId: enrollment.host_id,
    bootId,
    signingKey,
    log: opts.log,
  });
  const journal = startJournal(opts, journalPath, {
    host_id: enrollment.host_id,
    boot_id: bootId,
    sink: spool,
  });
  const heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const health = new RecorderHealth({
    version: pofrVersion(),
    config: effectiveConfig(opts),
    heartbeatMs,
    batchMs: opts.batchMs ?? 5000,
    sources: () => recorder.health(),
    spool,
  });
  const assembler = new BatchAssembler({
    hostId: enrollment.host_id,
    bootId,
    signingKey,
    sink: spool,
    journal,
    maxAgeMs: opts.batchMs ?? 5000,
    onSealed: () => uploader.notify(),
    onLoss: (dropped, reason) => {
      lastLoss = { at: new Date().toISOString(), dropped, reason };
      opts.log('records lost, a gap record will say so', { dropped, reason });
    },
  });

  const status = (): ClientStatus => {
    const up = uploader.status();
    const js = journal?.status();
    return {
      pid: process.pid,
      host_id: enrollment.host_id,
      name: enrollment.name,
      server: `${enrollment.server_host}:${enrollment.server_port}`,
      spool_depth: spool.depth(),
      spool_bytes: spool.sizeBytes(),
      last_ack_at: up.lastAckAt === null ? null : new Date(up.lastAckAt).toISOString(),
      acked: up.acked,
      connected: up.connected,
      last_error: up.lastError,
      last_loss: lastLoss,
      sources: recorder.health(),
      config_hash: health.configHash,
      heartbeat_ms: heartbeatMs,
      journal:
        js === undefined ? null : { bytes: js.bytes, unsealed: js.unsealed, lost: js.lost?.dropped ?? 0 },
      updated_at: new Date().toISOString(),
    };
  };

  let lastStatusWrite = 0;
  /** One tick; `final`: the last one, with the stop record saying why. */
  const cycle = (final: StopReason | null = null) => {
    const nowMs = Date.now();
    const now = nowMs * 1000;
    const observed = final ? recorder.stop(nowMs) : recorder.tick(nowMs);
    const stop: PofrRecord[] = final ? [health.stopRecord(now, final)] : [];
    assembler.add([...health.poll(now), ...observed, ...stop], nowMs);
    if (nowMs - lastStatusWrite >= 2000) {
      lastStatusWrite = nowMs;
      writeStateFile(opts.stateDir, STATE_FILES.status, `${JSON.stringify(status())}\n`);
    }
  };

  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const loop = () => {
    if (stopped) return;
    const started = Date.now();
    try {
      cycle();
    } catch (e) {
      opts.log('sampling cycle failed', { error: (e as Error).stack ?? String(e) });
    }
    timer = setTimeout(loop, Math.max(0, recorder.tickMs - (Date.now() - started)));
  };

  uploader.start();
  assembler.add(recovered);
  loop();
  opts.log('pofr client recording', {
    host_id: enrollment.host_id,
    name: enrollment.name,
    interval_ms: intervalMs,
    tracefs: recorder.modes.tracefs,
    detail: recorder.modes.detail,
  });

  return {
    status,
    async flush(timeoutMs: number) {
      assembler.seal();
      uploader.notify();
      return uploader.flush(timeoutMs);
    },
    async stop(flushMs = 5000, why: StopReason = { reason: 'shutdown', signal: null }) {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      try {
        cycle(why);
      } catch (e) {
        opts.log('final sampling cycle failed', { error: String(e) });
      }
      assembler.seal();
      uploader.notify();
      const delivered = await uploader.flush(flushMs);
      if (!delivered)
        opts.log('stopping with batches still spooled; they are sent at next start', {
          depth: spool.depth(),
        });
      await uploader.stop();
      journal?.stop(Date.now() * 1000, why.signal ?? why.reason);
      writeStateFile(
        opts.stateDir,
        STATE_FILES.status,
        `${JSON.stringify({ ...status(), stopped: true })}\n`,
      );
    },
  };
}
