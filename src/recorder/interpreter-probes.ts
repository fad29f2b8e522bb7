import { fileId } from './sources/file-id.js';
import { listTgids } from './sources/procfs-reader.js';
import { ARGV_SLOTS, argvProbeArgs, argvProbeFormat } from './sources/tracefs/argv-probe.js';
import { readElfEntry } from './sources/tracefs/elf-file.js';
import type { EventDecoder } from './sources/tracefs/kernel-events.js';
import type { TraceInstance } from './sources/tracefs/trace-instance.js';
import { addUprobe, removeUprobe } from './sources/tracefs/uprobe-events.js';

export interface InterpreterProbesOptions {
  readonly tracefsRoot: string;
  readonly instance: TraceInstance;
  /** The recorder's owner token: the probes' group, and a prefix of their event names. */
  readonly token: string;
  readonly decoder: EventDecoder;
  readonly procRoot: string;
  /** Most interpreters probed (each probe is a kernel object on the host). */
  readonly max?: number;
}

interface Probed {
  readonly event: string;
  readonly path: string;
}

/**
 * One argv probe per distinct ELF interpreter file in use: the host's ld.so, and each container's
 * own (another file, another inode). Interpreters are found in the programs that run: at start,
 * every running process's executable; later, any exec that no probe reported (the first program
 * run from a new container image, say). A statically linked program seen that way gets a probe on
 * its own entry point. At most `max` (64) probes: each is a kernel object on the host.
 */
export class InterpreterProbes {
  readonly #o: InterpreterProbesOptions;
  /** dev:ino of an interpreter → its probe. */
  readonly #byFile = new Map<string, Probed>();
  /** dev:ino of an executable → dev:ino of its interpreter, or null (static, or not ELF). */
  readonly #seenExe = new Map<string, string | null>();
  #unavailable: string | null = null;
  #next = 0;

  constructor(opts: InterpreterProbesOptions) {
    this.#o = opts;
  }

  /** Why probes cannot be used (the kernel refused the first one), or null. */
  get unavailable(): string | null {
    return this.#unavailable;
  }

  get count(): number {
    return this.#byFile.size;
  }

  /** Event names of the probes, for their hit counts in uprobe_profile. */
  events(): string[] {
    return [...this.#byFile.values()].map((p) => p.event);
  }

  paths(): string[] {
    return [...this.#byFile.values()].map((p) => p.path);
  }

  /** Probes the interpreters of every running process's executable (not static ones: rare at start). */
  probeRunning(): void {
    for (const pid of listTgids(this.#o.procRoot)) {
      if (this.#unavailable !== null) return;
      const elf = readElfEntry(`${this.#o.procRoot}/${pid}/exe`);
      if (elf?.interpreter) this.probeExeOf(pid);
    }
  }

  /**
   * Probes the interpreter of the process's executable if it is new, or, for a statically linked
   * program (no interpreter runs before it), the program's own entry point: its later runs then
   * have their argv from the probe too. `filename` (the exec event's path) stands in when the
   * process is already gone. False when nothing was added.
   */
  probeExeOf(pid: number, filename?: Buffer): boolean {
    if (this.#unavailable !== null || this.#byFile.size >= (this.#o.max ?? 64)) return false;
    const root = this.#o.procRoot;
    let exePath = `${root}/${pid}/exe`;
    let exeId = fileId(exePath);
    let inRoot = this.#rootOf(pid);
    if (exeId === null && filename !== undefined && filename[0] === 0x2f) {
      exePath = filename.toString('latin1');
      exeId = fileId(exePath);
      inRoot = '';
    }
    if (exeId === null || this.#seenExe.has(exeId)) return false;
    const elf = readElfEntry(exePath);
    if (elf === null || !elf.supported) {
      this.#seenExe.set(exeId, null);
      return false;
    }
    if (elf.interpreter === null) {
      this.#seenExe.set(exeId, exeId);
      return !this.#byFile.has(exeId) && this.#probe(exeId, exePath);
    }
    // The interpreter as this process sees it: inside its own root (a container's image).
    const interpPath = `${inRoot}${elf.interpreter.toString('latin1')}`;
    const interpId = fileId(interpPath);
    if (interpId === null) return false;
    this.#seenExe.set(exeId, interpId);
    if (this.#byFile.has(interpId)) return false;
    return this.#probe(interpId, interpPath);
  }

  /** Removes every probe this recorder defined (its instance must be closed first). */
  removeAll(): string[] {
    const failed: string[] = [];
    for (const p of this.#byFile.values()) {
      const err = removeUprobe(this.#o.tracefsRoot, this.#o.token, p.event);
      if (err !== null) failed.push(`${p.event}: ${err}`);
    }
    this.#byFile.clear();
    return failed;
  }

  #probe(interpId: string, path: string): boolean {
    const elf = readElfEntry(path);
    if (elf === null || !elf.supported || elf.entryOffset === null) return false;
    const event = `${this.#o.token}_argv${this.#next++}`;
    try {
      addUprobe(this.#o.tracefsRoot, {
        group: this.#o.token,
        event,
        path,
        offset: elf.entryOffset,
        args: argvProbeArgs(ARGV_SLOTS),
      });
    } catch (e) {
      // The first refusal (lockdown, no uprobe support) is final; a later one is this file only.
      if (this.#byFile.size === 0) this.#unavailable = (e as Error).message;
      return false;
    }
    try {
      this.#o.decoder.addArgvProbe(argvProbeFormat(this.#o.instance.format(this.#o.token, event)));
      this.#o.instance.enable(this.#o.token, event);
    } catch (e) {
      removeUprobe(this.#o.tracefsRoot, this.#o.token, event);
      if (this.#byFile.size === 0) this.#unavailable = (e as Error).message;
      return false;
    }
    this.#byFile.set(interpId, { event, path });
    return true;
  }

  /** "" for a process in the host's root, else its /proc root link (reaches a container's files). */
  #rootOf(pid: number): string {
    const link = `${this.#o.procRoot}/${pid}/root`;
    return fileId(link) === fileId('/') ? '' : link;
  }
}
