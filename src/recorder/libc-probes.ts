import { readFileSync } from 'node:fs';
import { fileId } from './sources/file-id.js';
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
  /** Most C libraries probed: the host's and containers' own (each costs a dozen kernel objects). */
  readonly maxLibraries?: number;
}

/** One probe to define: on the first of `symbols` the library has (aliases share an address). */
export interface LibcProbeSpec {
  /** Short name, part of the event name (`open`, `getaddrinfo`). */
  readonly func: string;
  readonly symbols: readonly string[];
  /** Fetch arguments, e.g. `path=+0(%di):ustring`. */
  readonly args: readonly string[];
}

interface ProbeSet {
  readonly specs: readonly LibcProbeSpec[];
  readonly onFormat: (func: string, format: EventFormat) => void;
  readonly filter: string | undefined;
}

interface Library {
  readonly path: string;
  /** Appended to event names: '' for the host's library, `_l1`, `_l2`… for containers' own. */
  readonly suffix: string;
  readonly offsets: Set<number>;
}

/** Where a glibc lives inside a root, by distribution (Debian/Ubuntu, Fedora/RHEL, Arch). */
const LIBC_PATHS = [
  '/lib/x86_64-linux-gnu/libc.so.6',
  '/usr/lib/x86_64-linux-gnu/libc.so.6',
  '/lib/aarch64-linux-gnu/libc.so.6',
  '/usr/lib/aarch64-linux-gnu/libc.so.6',
  '/lib64/libc.so.6',
  '/usr/lib64/libc.so.6',
  '/usr/lib/libc.so.6',
];

/**
 * uprobes on glibc functions (file opens, name lookups, UDP destinations): the host's C library,
 * and each container's own once a process of that container is seen (found through
 * /proc/PID/root, as the argv probes find a container's ld.so). Each is defined under the
 * recorder's group, enabled only in its instance, removed with it. A function the library does not
 * export, or an address already probed under another name, is skipped: one hit per call.
 */
export class LibcProbes {
  readonly #o: LibcProbesOptions;
  readonly #events: { func: string; event: string }[] = [];
  readonly #sets: ProbeSet[] = [];
  /** dev:ino of a library file → the library. */
  readonly #libs = new Map<string, Library>();
  readonly path: string | null;

  constructor(opts: LibcProbesOptions) {
    this.#o = opts;
    this.path = opts.libcPath ?? hostLibc();
    const id = this.path === null ? null : fileId(this.path);
    if (this.path !== null && id !== null)
      this.#libs.set(id, { path: this.path, suffix: '', offsets: new Set() });
  }

  /** Event names defined, for their hit counts. */
  events(): string[] {
    return this.#events.map((e) => e.event);
  }

  /** The C libraries probed. */
  libraries(): string[] {
    return [...this.#libs.values()].map((l) => l.path);
  }

  /**
   * Defines and enables the probes (with a kernel-side `filter`, e.g. `common_pid != 42`) on every
   * library probed, now and later; `onFormat` registers each one's decoder before it is enabled.
   * Returns why nothing could be probed on the host's library, or null when a probe is on.
   */
  add(
    specs: readonly LibcProbeSpec[],
    onFormat: (func: string, format: EventFormat) => void,
    filter?: string,
  ): string | null {
    if (this.path === null || this.#libs.size === 0) return 'no glibc found in /proc/self/maps';
    const set = { specs, onFormat, filter };
    let why: string | null = null;
    for (const lib of this.#libs.values()) {
      const r = this.#apply(lib, set);
      if (lib.suffix === '') why = r;
    }
    if (why === null) this.#sets.push(set);
    return why;
  }

  /**
   * Probes the C library of the process's root when it is not the host's (a container's own
   * glibc). False when there is none, it is probed already, or the bound is reached.
   */
  probeRootOf(procRoot: string, pid: number): boolean {
    const root = `${procRoot}/${pid}/root`;
    if (this.#sets.length === 0 || fileId(root) === fileId('/')) return false;
    if (this.#libs.size >= (this.#o.maxLibraries ?? 8)) return false;
    for (const p of LIBC_PATHS) {
      const id = fileId(`${root}${p}`);
      if (id === null) continue;
      if (this.#libs.has(id)) return false;
      const lib = { path: `${root}${p}`, suffix: `_l${this.#libs.size}`, offsets: new Set<number>() };
      this.#libs.set(id, lib);
      for (const set of this.#sets) this.#apply(lib, set);
      return true;
    }
    return false;
  }

  /** Removes every probe defined (the instance must be closed first); the failures, if any. */
  removeAll(): string[] {
    const failed: string[] = [];
    for (const e of this.#events) {
      const err = removeUprobe(this.#o.tracefsRoot, this.#o.token, e.event);
      if (err !== null) failed.push(`${e.event}: ${err}`);
    }
    this.#events.length = 0;
    for (const lib of this.#libs.values()) lib.offsets.clear();
    return failed;
  }

  /** The set's probes on one library; why none could be defined, or null. */
  #apply(lib: Library, set: ProbeSet): string | null {
    const wanted = new Set(set.specs.flatMap((s) => s.symbols));
    const offsets = readElfFunctionOffsets(lib.path, wanted);
    let why: string | null = `${lib.path} exports none of ${[...wanted].join(', ')}`;
    let added = 0;
    for (const spec of set.specs) {
      const symbol = spec.symbols.find((s) => offsets.has(s));
      if (symbol === undefined) continue;
      const offset = offsets.get(symbol) as number;
      if (lib.offsets.has(offset)) continue;
      const event = `${this.#o.token}_${spec.func}${lib.suffix}`;
      try {
        addUprobe(this.#o.tracefsRoot, {
          group: this.#o.token,
          event,
          path: lib.path,
          offset,
          args: spec.args,
        });
      } catch (e) {
        why = (e as Error).message;
        continue;
      }
      try {
        set.onFormat(spec.func, this.#o.instance.format(this.#o.token, event));
        this.#o.instance.enable(this.#o.token, event, set.filter);
      } catch (e) {
        removeUprobe(this.#o.tracefsRoot, this.#o.token, event);
        why = (e as Error).message;
        continue;
      }
      lib.offsets.add(offset);
      this.#events.push({ func: spec.func, event });
      added++;
    }
    return added > 0 ? null : why;
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
