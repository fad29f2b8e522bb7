import type { PofrRecord } from '../protocol/index.js';
import { InventoryWatcher } from './inventory.js';
import { LiveState } from './live-state.js';
import { ProcfsSampler } from './procfs-sampler.js';
import type { SourceHealth } from './source.js';
import { TracefsSource } from './tracefs-source.js';

/** Which sources record. procfs always runs: it is the keyframes' safety net and sees open files. */
export interface SourceSelection {
  /** Kernel events through tracefs (exact execs, exits, TCP). */
  readonly tracefs: boolean;
  /** argv probes on ELF interpreters (needs tracefs). */
  readonly uprobes: boolean;
}

export const ALL_SOURCES: SourceSelection = { tracefs: true, uprobes: true };

/** The names `--sources` takes, in the order they are listed. */
export const SOURCE_NAMES = ['tracefs', 'uprobes', 'procfs'] as const;

/** Parses `--sources tracefs,uprobes,procfs`; an error message for anything else. */
export function parseSources(text: string): SourceSelection | string {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const unknown = names.filter((n) => !(SOURCE_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0)
    return `unknown source ${unknown.join(', ')}: choose among ${SOURCE_NAMES.join(', ')}`;
  if (!names.includes('procfs')) {
    return 'procfs cannot be left out: it sees open files and UDP, and keyframes check everything against it';
  }
  if (names.includes('uprobes') && !names.includes('tracefs'))
    return 'uprobes need tracefs (the probes report there)';
  return { tracefs: names.includes('tracefs'), uprobes: names.includes('uprobes') };
}

export interface RecorderOptions {
  readonly procRoot?: string;
  readonly observerPids?: () => ReadonlySet<number>;
  /** Sampling period of /proc, ms. */
  readonly intervalMs: number;
  /** How often kernel events are drained, ms (default 100). */
  readonly eventsEveryMs?: number;
  readonly keyframeEveryMs?: number;
  readonly sources?: SourceSelection;
  readonly tracefsRoots?: readonly string[];
  readonly traceBufferKb?: number;
  readonly log?: (msg: string, fields?: object) => void;
}

/** How each source runs, for `client status` and the log. */
export interface SourceModes {
  readonly tracefs: 'tracing' | 'off' | 'unavailable';
  /** Why tracefs is unavailable, or how argv is read. */
  readonly detail: string;
}

/**
 * Composes the recorder's sources over one LiveState: inventory, the tracefs events, the procfs
 * sampler. `tick` is called on the recorder's timer; it drains events every `eventsEveryMs` and
 * samples /proc every `intervalMs`, the sampler's cycle draining the events between its /proc
 * listing and its diff (see ProcfsSampler.poll). Where tracing is not available it is said once
 * (in the log and in `modes()`), and sampling alone records.
 *
 * @example
 * const recorder = Recorder.start({ intervalMs: 1000 });
 * setInterval(() => assembler.add(recorder.tick(Date.now())), recorder.tickMs);
 */
export class Recorder {
  readonly live: LiveState;
  readonly sampler: ProcfsSampler;
  readonly trace: TracefsSource | null;
  readonly modes: SourceModes;
  readonly #inventory: InventoryWatcher;
  readonly #intervalMs: number;
  readonly #eventsEveryMs: number;
  #nextSample = 0;

  private constructor(
    opts: RecorderOptions,
    live: LiveState,
    trace: TracefsSource | null,
    modes: SourceModes,
  ) {
    const procRoot = opts.procRoot ?? '/proc';
    this.live = live;
    this.trace = trace;
    this.modes = modes;
    this.#intervalMs = opts.intervalMs;
    this.#eventsEveryMs = Math.min(opts.eventsEveryMs ?? 100, opts.intervalMs);
    this.sampler = new ProcfsSampler({
      procRoot,
      observerPids: opts.observerPids,
      keyframeEveryMs: opts.keyframeEveryMs,
      live: this.live,
      events: trace ?? undefined,
    });
    this.#inventory = new InventoryWatcher({ procRoot });
  }

  static start(opts: RecorderOptions): Recorder {
    const sources = opts.sources ?? ALL_SOURCES;
    const live = new LiveState();
    if (!sources.tracefs) {
      return new Recorder(opts, live, null, { tracefs: 'off', detail: 'procfs sampling only (--sources)' });
    }
    const started = TracefsSource.start({
      live,
      procRoot: opts.procRoot,
      tracefsRoots: opts.tracefsRoots,
      observerPids: opts.observerPids,
      bufferKbPerCpu: opts.traceBufferKb,
      uprobes: sources.uprobes,
      log: opts.log,
    });
    if (!started.ok) {
      opts.log?.('kernel tracing unavailable: recording by sampling /proc alone', { reason: started.reason });
      return new Recorder(opts, live, null, { tracefs: 'unavailable', detail: started.reason });
    }
    const h = started.source.health();
    const probed = h.uprobes === 'on' ? `; files ${h.files}, lookups ${h.lookups}, udp ${h.udp}` : '';
    const detail =
      h.uprobes === 'on'
        ? `argv probes on ${h.interpreters.join(', ')}${probed}`
        : `argv from /proc: ${h.uprobes}`;
    const off = { files: h.files, lookups: h.lookups, udp: h.udp };
    if (h.uprobes === 'on' && Object.values(off).some((v) => v !== 'on')) {
      opts.log?.('some glibc probes are off: those activities come from sampling alone', off);
    }
    if (h.uprobes !== 'on' && sources.uprobes) {
      opts.log?.('argv probes unavailable: argv is read from /proc at each exec', { reason: h.uprobes });
    }
    return new Recorder(opts, live, started.source, { tracefs: 'tracing', detail });
  }

  /** How often `tick` should be called, ms. */
  get tickMs(): number {
    return this.trace ? this.#eventsEveryMs : this.#intervalMs;
  }

  /** Records since the last tick: events every tick, a /proc sample when one is due. */
  tick(nowMs: number): PofrRecord[] {
    const now = nowMs * 1000;
    const out: PofrRecord[] = [];
    if (nowMs < this.#nextSample) {
      if (this.trace) for (const r of this.trace.poll(now)) out.push(r);
      return out;
    }
    this.#nextSample = nowMs + this.#intervalMs - Math.min(this.#eventsEveryMs / 2, 10);
    for (const r of this.#inventory.poll(now)) out.push(r);
    const sampled = this.sampler.poll(now, () => {
      if (this.trace) for (const r of this.trace.poll(now)) out.push(r);
    });
    for (const r of sampled) out.push(r);
    return out;
  }

  /** The last records: events still waiting settle, /proc is sampled once more; then tracing stops. */
  stop(nowMs: number): PofrRecord[] {
    try {
      const out = this.tick(nowMs);
      if (this.trace) for (const r of this.trace.flush()) out.push(r);
      return out;
    } finally {
      this.trace?.close();
      this.sampler.close();
    }
  }

  health(): Record<string, SourceHealth | { mode: string; reason: string }> {
    const out: Record<string, SourceHealth | { mode: string; reason: string }> = {
      procfs: this.sampler.health(),
    };
    out.tracefs = this.trace ? this.trace.health() : { mode: this.modes.tracefs, reason: this.modes.detail };
    return out;
  }
}
