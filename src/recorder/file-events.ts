import { readlinkSync } from 'node:fs';
import { type PofrRecord, type ProcRef, toWireBytes, type WireBytes } from '../protocol/index.js';
import type { LiveState } from './live-state.js';
import type { EventClock } from './process-events.js';
import { classifyFdTarget } from './sources/procfs-reader.js';
import type { CloseEvent, PathProbeEvent, SyscallExitEvent } from './sources/tracefs/kernel-events.js';

export interface FileEventsOptions {
  readonly live: LiveState;
  readonly clock: EventClock;
  readonly procRoot: string;
  /** The process a thread id belongs to, if the recorder knows it. */
  readonly ownerOfTid: (tid: number) => ProcRef | null;
  /** Most threads with an open call in flight remembered at once. */
  readonly maxPending?: number;
}

export interface FileEventCounts {
  opened: number;
  closed: number;
  /** Opens whose call failed (the return value was an error). */
  failed: number;
  /** Opens of a thread the recorder does not know (its start was not seen). */
  unowned: number;
}

const AT_FDCWD = -100;

/**
 * Files opened however briefly: a glibc probe at `open`/`openat`/`creat` gives the path the program
 * passed, the `sys_exit_openat` (or `sys_exit_open`) that follows on the same thread gives the new
 * descriptor, and `sys_enter_close` ends it. The pair is joined per thread: a thread makes one system
 * call at a time, so the next open exit of a thread after its probe hit is that call's.
 *
 * A relative path is made absolute from /proc/PID/fd/N while the file is still open there, else
 * against the process's cwd (for a path relative to the cwd); a path relative to another directory
 * descriptor stays as the program gave it.
 */
export class FileEvents {
  readonly counts: FileEventCounts = { opened: 0, closed: 0, failed: 0, unowned: 0 };
  readonly #o: FileEventsOptions;
  readonly #pending = new Map<number, PathProbeEvent>();
  readonly #max: number;

  constructor(opts: FileEventsOptions) {
    this.#o = opts;
    this.#max = opts.maxPending ?? 65_536;
  }

  path(ev: PathProbeEvent): void {
    // A thread's call that never reached the kernel (glibc refused it) is replaced by its next one.
    if (this.#pending.size >= this.#max && !this.#pending.has(ev.tid)) this.#pending.clear();
    this.#pending.set(ev.tid, ev);
  }

  /** True when the open became a record with its path; false when only /proc can tell what it opened. */
  opened(ev: SyscallExitEvent, out: PofrRecord[]): boolean {
    const call = this.#pending.get(ev.tid);
    // An open by a program that called the kernel directly (static, Go, ld.so): no path to record.
    if (call === undefined) return false;
    this.#pending.delete(ev.tid);
    if (ev.ret < 0) {
      this.counts.failed++;
      return false;
    }
    const owner = this.#o.ownerOfTid(ev.tid);
    if (owner === null) {
      this.counts.unowned++;
      return false;
    }
    const path = this.#absolute(owner, ev.ret, call);
    this.counts.opened++;
    this.#push(out, {
      type: 'file_open',
      t: this.#o.clock.wallMicros(ev.ts),
      file: {
        pid: owner.pid,
        start_ticks: owner.start_ticks,
        fd: ev.ret,
        path: toWireBytes(path),
        kind: classifyFdTarget(path),
      },
    });
    return true;
  }

  closed(ev: CloseEvent, out: PofrRecord[]): void {
    const owner = this.#o.ownerOfTid(ev.tid);
    if (owner === null) return;
    const files = this.#o.live.filesOf(`${owner.pid}:${owner.start_ticks}`);
    if (files === undefined || !files.has(ev.fd)) return;
    this.counts.closed++;
    this.#push(out, {
      type: 'file_close',
      t: this.#o.clock.wallMicros(ev.ts),
      pid: owner.pid,
      start_ticks: owner.start_ticks,
      fd: ev.fd,
    });
  }

  #absolute(owner: ProcRef, fd: number, call: PathProbeEvent): Buffer {
    if (call.path[0] === 0x2f) return call.path;
    const rel = call.path[0] === 0x2e && call.path[1] === 0x2f ? call.path.subarray(2) : call.path;
    try {
      const target = readlinkSync(`${this.#o.procRoot}/${owner.pid}/fd/${fd}`, { encoding: 'buffer' });
      // Still the file opened (not the descriptor reused for another since): its name ends the same.
      if (target[0] === 0x2f && target.subarray(target.length - rel.length).equals(rel)) return target;
    } catch {
      // Closed already (or the process is gone): fall back to the cwd below.
    }
    if (call.dirfd !== null && call.dirfd !== AT_FDCWD) return call.path;
    const cwd = this.#o.live.processOfPid(owner.pid)?.cwd;
    // The image's cwd is that of its exec; unknown (read too late), the process's cwd now.
    const base = cwd == null ? this.#cwdNow(owner.pid) : bytesOf(cwd);
    if (base === null) return call.path;
    return Buffer.concat([base, base[base.length - 1] === 0x2f ? Buffer.alloc(0) : Buffer.from('/'), rel]);
  }

  #cwdNow(pid: number): Buffer | null {
    try {
      return readlinkSync(`${this.#o.procRoot}/${pid}/cwd`, { encoding: 'buffer' });
    } catch {
      return null;
    }
  }

  #push(out: PofrRecord[], r: PofrRecord): void {
    this.#o.live.apply([r]);
    out.push(r);
  }
}

function bytesOf(w: WireBytes): Buffer {
  return typeof w === 'string' ? Buffer.from(w) : Buffer.from(w.b64, 'base64');
}
