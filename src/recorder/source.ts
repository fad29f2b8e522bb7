import type { PofrRecord } from '../protocol/index.js';

/** How a source is doing, for `pofr client status` and the recorder's own log. */
export interface SourceHealth {
  /** 'sampling' (procfs), 'tracing' (tracefs), 'inventory'. */
  readonly mode: 'sampling' | 'tracing' | 'inventory';
  /** True when the source sees less than the whole host (not root: other users' fds are hidden). */
  readonly limited: boolean;
  /** Processes whose exe, cwd or fds the source was refused (EACCES) in the last cycle. */
  readonly denied: number;
  /** Wall time of the last poll, milliseconds. */
  readonly lastCycleMs: number;
  /** Processes the source currently tracks. */
  readonly processes: number;
}

/**
 * One producer of records. The recorder calls `poll` on its own timer with the current time in µs
 * since the epoch; a poll does one bounded piece of synchronous work and returns what changed.
 *
 * @example
 * const src: RecorderSource = new ProcfsSampler();
 * const records = src.poll(Date.now() * 1000);
 */
export interface RecorderSource {
  readonly name: string;
  poll(now: number): PofrRecord[];
  health(): SourceHealth;
}
