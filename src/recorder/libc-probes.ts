import { readFileSync } from 'node:fs';
import { readElfFunctionOffsets } from './sources/tracefs/elf-symbols.js';
import type { EventFormat } from './sources/tracefs/event-format.js';
import type { TraceInstance } from './sources/tracefs/trace-instance.js';
import { addUprobe, removeUprobe } from './sources/tracefs/uprobe-events.js';

export interface LibcProbesOptions {
  readonly tracefsRoot: string;
  readonly instance: TraceInstance;
  /** The recorder's owner token: the probes' group, and a prefix of their event names. */
  readonly token: string;
  /** The C library to probe (default: the one this process runs on, from /proc/self/maps). */
  readonly libcPath?: string;
}

/** One probe to define: on the first of `symbols` the library has (aliases share an address). */
export interface LibcProbeSpec {
  /** Short name, part of the event name (`open`, `getaddrinfo`). */
  readonly func: string;
  readonly symbols: readonly string[];
  /** Fetch arguments, e.g. `path=+0(%di):ustring`. */
  readonly args: readonly string[];
}

/**
 * uprobes on the host's glibc functions (file opens, name lookups): each defined under the
 * recorder's group, enabled only in its instance, removed with it. A function the library does not
 * export, or an address already probed under another name, is skipped: one hit per call.
 */
export class LibcProbes {
  readonly #o: LibcProbesOptions;
  readonly #events: { func: string; event: string }[] = [];
  readonly #offsets = new Set<number>();
  readonly path: string | null;

  constructor(opts: LibcProbesOptions) {
    this.#o = opts;
    this.path = opts.libcPath ?? hostLibc();
  }

  /** Event names defined, for their hit counts. */
  events(): string[] {
    return this.#events.map((e) => e.event);
  }

  funcs(): string[] {
    return this.#events.map((e) => e.func);
  }

  /**
   * Defines and enables the probes (with a kernel-side `filter`, e.g. `common_pid != 42`);
   * `onFormat` registers each one's decoder before it is enabled.
   * Returns why nothing could be probed, or null when at least one probe is on.
   */
  add(
    specs: readonly LibcProbeSpec[],
    onFormat: (func: string, format: EventFormat) => void,
    filter?: string,
  ): string | null {
    if (this.path === null) return 'no glibc found in /proc/self/maps';
    const wanted = new Set(specs.flatMap((s) => s.symbols));
    const offsets = readElfFunctionOffsets(this.path, wanted);
    let why: string | null = `${this.path} exports none of ${[...wanted].join(', ')}`;
    let added = 0;
    for (const spec of specs) {
      const symbol = spec.symbols.find((s) => offsets.has(s));
      if (symbol === undefined) continue;
      const offset = offsets.get(symbol) as number;
      if (this.#offsets.has(offset)) continue;
      const event = `${this.#o.token}_${spec.func}`;
      try {
        addUprobe(this.#o.tracefsRoot, {
          group: this.#o.token,
          event,
          path: this.path,
          offset,
          args: spec.args,
        });
      } catch (e) {
        why = (e as Error).message;
        continue;
      }
      try {
        onFormat(spec.func, this.#o.instance.format(this.#o.token, event));
        this.#o.instance.enable(this.#o.token, event, filter);
      } catch (e) {
        removeUprobe(this.#o.tracefsRoot, this.#o.token, event);
        why = (e as Error).message;
        continue;
      }
      this.#offsets.add(offset);
      this.#events.push({ func: spec.func, event });
      added++;
    }
    return added > 0 ? null : why;
  }

  /** Removes every probe defined (the instance must be closed first); the failures, if any. */
  removeAll(): string[] {
    const failed: string[] = [];
    for (const e of this.#events) {
      const err = removeUprobe(this.#o.tracefsRoot, this.#o.token, e.event);
      if (err !== null) failed.push(`${e.event}: ${err}`);
    }
    this.#events.length = 0;
    this.#offsets.clear();
    return failed;
  }
}

/** The glibc this process is linked against: the host's, for a recorder run from the host. */
function hostLibc(): string | null {
  try {
    const maps = readFileSync('/proc/self/maps', 'latin1');
    const m = /\s(\/\S*\/libc\.so\.6)$/m.exec(maps);
    return m ? m[1] : null;
  } catch {
    return null;
  }
}
