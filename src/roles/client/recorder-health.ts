import {
  type PofrRecord,
  type RecorderConfig,
  type RecordOf,
  type SourceMode,
  sha256Hex,
} from '../../protocol/index.js';
import { ALL_SOURCES } from '../../recorder/index.js';
import {
  DEFAULT_JOURNAL_MAX_BYTES,
  DEFAULT_JOURNAL_SYNC_MS,
  DEFAULT_SPOOL_MAX_BYTES,
} from '../../spool/index.js';
import { pofrVersion } from '../../version.js';
import type { ClientOptions } from './run-client.js';

export const DEFAULT_HEARTBEAT_MS = 30_000;

/** What a source's health says of it; `limited` when it sees less than the whole host. */
export interface SourceReport {
  readonly mode: string;
  readonly limited?: boolean;
}

/**
 * Why a recorder stops cleanly: a signal (SIGTERM, SIGINT), `pofr client deregister`, or the
 * program embedding it (the demo).
 */
export interface StopReason {
  readonly reason: 'signal' | 'deregister' | 'shutdown';
  readonly signal: string | null;
}

export interface RecorderHealthOptions {
  readonly version: string;
  /** The effective settings; their hash is the configuration hash. */
  readonly config: RecorderConfig;
  readonly heartbeatMs: number;
  readonly batchMs: number;
  /** Each source's health() by name (Recorder.health()), asked at start and at every heartbeat. */
  readonly sources: () => Readonly<Record<string, SourceReport>>;
  readonly spool: { depth(): number; sizeBytes(): number };
  readonly pid?: number;
}

/**
 * The recorder's own health as records: `recorder_start` (version, configuration hash, which
 * source runs in which mode, pid) in the first cycle, `recorder_heartbeat` every `heartbeatMs`
 * after it, and `recorder_stop` on a clean stop. They travel in the same signed batches as what
 * the recorder saw, so a silenced or reconfigured recorder is part of the record.
 *
 * @example
 * const health = new RecorderHealth({ version, config, heartbeatMs: 30_000, batchMs: 5000, sources, spool });
 * assembler.add([...health.poll(now), ...sampler.poll(now)]);
 */
export class RecorderHealth {
  readonly configHash: string;
  readonly #opts: RecorderHealthOptions;
  readonly #pid: number;
  #startedAt: number | null = null;
  #nextHeartbeat = 0;

  constructor(opts: RecorderHealthOptions) {
    this.#opts = opts;
    this.#pid = opts.pid ?? process.pid;
    this.configHash = configHash(opts.config);
  }

  /** The start record on the first call, then a heartbeat whenever one is due; `now` in µs. */
  poll(now: number): PofrRecord[] {
    const o = this.#opts;
    if (this.#startedAt === null) {
      this.#startedAt = now;
      this.#nextHeartbeat = now + o.heartbeatMs * 1000;
      return [
        {
          type: 'recorder_start',
          t: now,
          version: o.version,
          pid: this.#pid,
          config_hash: this.configHash,
          config: o.config,
          sources: sourceModes(o.sources()),
          heartbeat_ms: o.heartbeatMs,
          batch_ms: o.batchMs,
        },
      ];
    }
    if (now < this.#nextHeartbeat) return [];
    // Due times stay on the grid of the start: a slow cycle does not push every later heartbeat.
    while (this.#nextHeartbeat <= now) this.#nextHeartbeat += o.heartbeatMs * 1000;
    return [
      {
        type: 'recorder_heartbeat',
        t: now,
        pid: this.#pid,
        uptime_ms: Math.max(0, Math.round((now - this.#startedAt) / 1000)),
        config_hash: this.configHash,
        heartbeat_ms: o.heartbeatMs,
        batch_ms: o.batchMs,
        spool_depth: o.spool.depth(),
        spool_bytes: o.spool.sizeBytes(),
        sources: sourceModes(o.sources()),
      },
    ];
  }

  stopRecord(now: number, why: StopReason): RecordOf<'recorder_stop'> {
    return { type: 'recorder_stop', t: now, pid: this.#pid, reason: why.reason, signal: why.signal };
  }
}

/** Which source runs in which mode (tracing, sampling, off, unavailable), as each source's health() says. */
export function sourceModes(sources: Readonly<Record<string, SourceReport>>): SourceMode[] {
  return Object.entries(sources).map(([name, h]) => ({ name, mode: h.mode, limited: h.limited === true }));
}

/**
 * sha256 of the settings as JSON with sorted keys: the same settings give the same hash whatever
 * order they were given in, and any changed setting gives another.
 */
export function configHash(config: RecorderConfig): string {
  const keys = Object.keys(config).sort();
  const canonical = JSON.stringify(Object.fromEntries(keys.map((k) => [k, config[k]])));
  return sha256Hex(Buffer.from(canonical, 'utf8'));
}

/**
 * The recorder's effective settings, defaults filled in: two recorders with the same settings have
 * the same configuration hash, and a restart with any other setting (or version, or sources) has
 * another.
 */
export function effectiveConfig(opts: ClientOptions): RecorderConfig {
  const selected = opts.sources ?? ALL_SOURCES;
  return {
    version: pofrVersion(),
    state_dir: opts.stateDir,
    proc_root: opts.procRoot ?? '/proc',
    interval_ms: opts.intervalMs ?? 1000,
    batch_ms: opts.batchMs ?? 5000,
    keyframe_ms: opts.keyframeMs ?? 60_000,
    heartbeat_ms: opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    spool_max_bytes: opts.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES,
    journal: opts.journal !== false,
    journal_max_bytes: opts.journalMaxBytes ?? DEFAULT_JOURNAL_MAX_BYTES,
    journal_sync_ms: opts.journalSyncMs === undefined ? DEFAULT_JOURNAL_SYNC_MS : opts.journalSyncMs,
    sources: [...(selected.tracefs ? ['tracefs'] : []), ...(selected.uprobes ? ['uprobes'] : []), 'procfs'],
    trace_buffer_kb: opts.traceBufferKb ?? null,
    tracefs_roots: opts.tracefsRoots ? [...opts.tracefsRoots] : null,
  };
}
