import {
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { type EventFormat, parseEventFormat } from './event-format.js';
import { readSubbuffer } from './ring-buffer-page.js';

/**
 * One tracing instance of the recorder's own (`instances/<name>` under tracefs): its own ring
 * buffer, clock and enabled events, so that it neither disturbs nor is disturbed by anyone else
 * tracing on the host. Events are read in binary form from `per_cpu/cpuN/trace_pipe_raw`, opened
 * non-blocking: a blocking read from Node's fs would hold a libuv thread forever, and the instance
 * could then never be removed (rmdir answers EBUSY while a reader is open).
 */
export class TraceInstance {
  readonly dir: string;
  readonly cpus: readonly number[];
  #pipes: number[] = [];
  #page: Buffer;
  #closed = false;

  private constructor(
    readonly root: string,
    readonly name: string,
    pageBytes: number,
  ) {
    this.dir = join(root, 'instances', name);
    this.cpus = readdirSync(join(this.dir, 'per_cpu'))
      .map((d) => /^cpu(\d+)$/.exec(d)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    this.#page = Buffer.alloc(pageBytes);
  }

  /**
   * Creates the instance with its clock and buffer sizes. The sub-buffer is raised to 8 KiB where
   * the kernel allows it: a uprobe event carries up to a page (4 KiB) of fetched strings, and in a
   * 4 KiB sub-buffer such an event does not fit and would be dropped whole.
   */
  static create(root: string, name: string, opts: InstanceOptions): TraceInstance {
    const dir = join(root, 'instances', name);
    // tracefs builds the instance's whole tree (buffers, events, options) on a plain mkdir.
    mkdirSync(dir);
    try {
      const subbuf = join(dir, 'buffer_subbuf_size_kb');
      if (existsSync(subbuf)) tryWrite(subbuf, String(opts.subbufferKb ?? 8));
      writeFileSync(join(dir, 'buffer_size_kb'), String(opts.bufferKbPerCpu));
      writeFileSync(join(dir, 'trace_clock'), opts.clock);
      const subbufKb = existsSync(subbuf) ? Number(readFileSync(subbuf, 'latin1').trim()) || 4 : 4;
      return new TraceInstance(root, name, subbufKb * 1024);
    } catch (e) {
      removeInstanceDir(dir);
      throw e;
    }
  }

  /** The event's binary layout as this kernel defines it. */
  format(system: string, event: string): EventFormat {
    return parseEventFormat(
      system,
      readFileSync(join(this.dir, 'events', system, event, 'format'), 'latin1'),
    );
  }

  hasEvent(system: string, event: string): boolean {
    return existsSync(join(this.dir, 'events', system, event, 'enable'));
  }

  /** Enables one event in this instance only, with an optional kernel-side filter. */
  enable(system: string, event: string, filter?: string): void {
    const ev = join(this.dir, 'events', system, event);
    if (filter !== undefined) writeFileSync(join(ev, 'filter'), filter);
    writeFileSync(join(ev, 'enable'), '1');
  }

  disable(system: string, event: string): void {
    tryWrite(join(this.dir, 'events', system, event, 'enable'), '0');
  }

  /** Closes the raw pipes (open() opens them again). */
  closePipes(): void {
    for (const fd of this.#pipes) {
      try {
        closeSync(fd);
      } catch {
        // Already closed: nothing is left to release.
      }
    }
    this.#pipes = [];
  }

  /** Opens every CPU's raw pipe; call after the events are enabled. */
  open(): void {
    for (const cpu of this.cpus) {
      this.#pipes.push(
        openSync(
          join(this.dir, 'per_cpu', `cpu${cpu}`, 'trace_pipe_raw'),
          constants.O_RDONLY | constants.O_NONBLOCK,
        ),
      );
    }
  }

  /**
   * Reads whatever the kernel holds now, CPU by CPU, sub-buffer by sub-buffer, and hands every
   * record to `visit(cpu, ts, page, offset, length)`; `page` is reused, so a visitor copies what it
   * keeps. Returns the events lost before the pages read, per CPU (-1: some, count unknown).
   */
  drain(visit: (cpu: number, ts: number, page: Buffer, offset: number, length: number) => void): number[] {
    const lost: number[] = [];
    const page = this.#page;
    for (let i = 0; i < this.#pipes.length; i++) {
      const cpu = this.cpus[i];
      let cpuLost = 0;
      for (;;) {
        let n: number;
        try {
          n = readSync(this.#pipes[i], page, 0, page.length, null);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EAGAIN') break;
          throw e;
        }
        if (n <= 0) break;
        const info = readSubbuffer(page, n, (ts, offset, length) => visit(cpu, ts, page, offset, length));
        if (info.lostBefore !== 0)
          cpuLost = cpuLost < 0 || info.lostBefore < 0 ? -1 : cpuLost + info.lostBefore;
      }
      lost.push(cpuLost);
    }
    return lost;
  }

  /** The kernel's own counters for one CPU's buffer (`per_cpu/cpuN/stats`). */
  stats(cpu: number): BufferStats {
    const text = readFileSync(join(this.dir, 'per_cpu', `cpu${cpu}`, 'stats'), 'latin1');
    const num = (label: string) => Number(new RegExp(`^${label}:\\s*(\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return {
      overrun: num('overrun'),
      commitOverrun: num('commit overrun'),
      dropped: num('dropped events'),
      entries: num('entries'),
    };
  }

  /** Writes a line into this instance's buffer (the `ftrace:print` event), e.g. to pin its clock. */
  mark(text: string): void {
    writeFileSync(join(this.dir, 'trace_marker'), text);
  }

  /** Disables every event, closes the pipes and removes the instance. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    tryWrite(join(this.dir, 'events', 'enable'), '0');
    this.closePipes();
    removeInstanceDir(this.dir);
  }
}

export interface InstanceOptions {
  /** Ring buffer per CPU, KiB. */
  readonly bufferKbPerCpu: number;
  readonly subbufferKb?: number;
  /** `boot`: nanoseconds since boot, suspend included, the clock /proc/PID/stat start times use. */
  readonly clock: string;
}

export interface BufferStats {
  /** Events overwritten before they were read (overwrite mode). */
  readonly overrun: number;
  readonly commitOverrun: number;
  /** Events refused because the buffer was full (no-overwrite mode) or too large. */
  readonly dropped: number;
  readonly entries: number;
}

/**
 * Removes an instance directory. rmdir can answer EBUSY for a moment after the last reader closed
 * (the kernel releases the pipes asynchronously): a few retries cover it.
 */
export function removeInstanceDir(dir: string): boolean {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      rmdirSync(dir);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY') return false;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
  return false;
}

function tryWrite(path: string, text: string): boolean {
  try {
    writeFileSync(path, text);
    return true;
  } catch {
    return false;
  }
}
