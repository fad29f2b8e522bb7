import { statSync } from 'node:fs';
import {
  type ArgvSource,
  EXEC_CHANGE_FIELDS,
  type PofrRecord,
  type ProcessImage,
  type RecordOf,
  toWireBytes,
  UNKNOWN_ID,
  type WireBytes,
} from '../protocol/index.js';
import type { LiveState } from './live-state.js';
import { type ContextFields, readContextFields } from './sources/process-context.js';
import {
  isReadFailure,
  procAlive,
  readCmdline,
  readCwd,
  readExe,
  readStat,
  readStatus,
} from './sources/procfs-reader.js';
import type { ArgvEvent, ExecEvent, ExitEvent, TaskEvent } from './sources/tracefs/kernel-events.js';

/** Conversions from the trace clock the tracker needs. */
export interface EventClock {
  /** Wall-clock µs of a trace-clock time. */
  wallMicros(ts: number): number;
}

export interface ProcessEventsOptions {
  readonly live: LiveState;
  readonly clock: EventClock;
  readonly procRoot: string;
  /** USER_HZ: /proc/PID/stat start times count in these. */
  readonly clockTicks: number;
  readonly observerPids: () => ReadonlySet<number>;
  /** How long an exec waits for its argv probe, in trace-clock ns, before /proc stands in. */
  readonly probeWaitNs?: number;
  /**
   * Told of an exec that no probe reported: the source probes the program's interpreter (a
   * container's own ld.so, say), or a static program itself, from now on.
   */
  readonly onUnprobedExec?: (pid: number, filename: Buffer) => void;
  /** Most execs waiting for their probe at once; past it the oldest is settled without one. */
  readonly maxPending?: number;
  /** Most threads remembered; past it new threads are not tracked (counted in `shed`). */
  readonly maxThreads?: number;
}

/** What the tracker knows of the process at its exec, read from /proc at once if it still runs. */
interface ExecSight {
  readonly exe: WireBytes | null;
  readonly cwd: WireBytes | null;
  readonly comm: WireBytes;
  readonly ppid: number;
  readonly ruid: number;
  readonly euid: number;
  readonly rgid: number;
  readonly egid: number;
  /** cgroup, container and namespaces right after the exec. */
  readonly context: ContextFields;
}

interface PendingExec {
  readonly ev: ExecEvent;
  /** The image before the exec (the fork's copy of its parent, or the previous exec), if known. */
  readonly before: ProcessImage | undefined;
  readonly startTicks: number;
  readonly sight: ExecSight | null;
}

export interface ProcessEventCounts {
  processes: number;
  execs: number;
  exits: number;
  argvFromProbe: number;
  argvFromProc: number;
  argvFromEvent: number;
  /** Thread or exec state dropped to stay within bounds. */
  shed: number;
}

/** (uid_t)-1: the ids of a process whose credentials could not be read. */
export { UNKNOWN_ID };

/** How long after a tick boundary a fork event may still belong to the tick before. */
const BOUNDARY_NS = 1e6;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const FD_PATHS = /^\/(?:dev|proc\/self|proc\/\d+)\/fd\//;

/**
 * Turns the kernel's task, exec, argv-probe and exit events into process records, applied to the
 * shared LiveState as they are made (so that the sampler and later events see them).
 *
 * - A new task that is a process starts as a copy of its parent (same program, arguments, cwd,
 *   credentials), at the kernel's fork time — a process_fork record naming the identities alone
 *   when the parent's image was stated whole by a record, else a full process_start; a thread
 *   only joins its process.
 * - An exec waits for the argv probe (which fires at the new program's first instruction, a few
 *   microseconds later). Credentials, exe and cwd are read from /proc at the exec event if the
 *   process is still there; a process already gone keeps what the event gave: the executed path,
 *   its pid and parent, and its credentials from before the exec (with a set-user-ID or
 *   set-group-ID file's owner applied).
 * - An exit closes the process's open files, then ends it, at the kernel's exit time.
 *
 * @example
 * const tracker = new ProcessEvents({ live, clock, procRoot: '/proc', clockTicks: 100, observerPids });
 * const records = [];
 * for (const ev of events) tracker.handle(ev, records);
 */
export class ProcessEvents {
  readonly counts: ProcessEventCounts = {
    processes: 0,
    execs: 0,
    exits: 0,
    argvFromProbe: 0,
    argvFromProc: 0,
    argvFromEvent: 0,
    shed: 0,
  };
  readonly #o: ProcessEventsOptions;
  /** Thread id → its process (leaders, whose tid is their pid, are not listed). */
  readonly #tgidOf = new Map<number, number>();
  readonly #pending = new Map<number, PendingExec>();
  readonly #tickNs: number;
  readonly #probeWaitNs: number;
  readonly #maxPending: number;
  readonly #maxThreads: number;
  /**
   * Processes whose image's cgroup and namespaces are known to be current: read at an exec or a
   * clone into a new context, or inherited from such a parent by a plain fork, with no unshare,
   * setns or cgroup move since. Their execs keep the image's context instead of reading it (four
   * readlinks and a read of a short process's). Used only once the source reports those changes.
   */
  readonly #contextKnown = new Set<number>();
  #contextTracked = false;
  readonly #modes = new Map<
    string,
    { at: number; value: { mode: number; uid: number; gid: number } | null }
  >();

  constructor(opts: ProcessEventsOptions) {
    this.#o = opts;
    this.#tickNs = 1e9 / opts.clockTicks;
    this.#probeWaitNs = opts.probeWaitNs ?? 200e6;
    this.#maxPending = opts.maxPending ?? 65_536;
    this.#maxThreads = opts.maxThreads ?? 1_000_000;
  }

  /** Threads known at start (from /proc/PID/task), so their later events find their process. */
  addThread(tid: number, tgid: number): void {
    if (tid === tgid) return;
    if (this.#tgidOf.size >= this.#maxThreads) {
      this.counts.shed++;
      return;
    }
    this.#tgidOf.set(tid, tgid);
  }

  /** The source reports every unshare, setns and cgroup move (contextChanged): see #contextKnown. */
  trackContextChanges(): void {
    this.#contextTracked = true;
  }

  /** This thread's process may be in other namespaces or another cgroup than its image says. */
  contextChanged(tid: number): void {
    this.#contextKnown.delete(this.tgidOf(tid));
  }

  /** Events were lost: any of them could have been a context change, so no context is known. */
  eventsLost(): void {
    this.#contextKnown.clear();
  }

  /** The process a thread belongs to (a leader's tid is its pid). */
  tgidOf(tid: number): number {
    return this.#tgidOf.get(tid) ?? tid;
  }

  get threadCount(): number {
    return this.#tgidOf.size;
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * `passed` is true when another exec of the same pid, or its exit, follows in the events at
   * hand: /proc then shows a later program or a dead process, and is not read for this one (most
   * short processes of an exec storm are over by the time their exec is handled).
   */
  exec(ev: ExecEvent, out: PofrRecord[], passed: boolean): void {
    this.#settle(ev.pid, out);
    if (ev.oldPid !== ev.pid) this.#tgidOf.delete(ev.oldPid);
    const before = this.#o.live.processOfPid(ev.pid);
    const contextKnown = before !== undefined && this.#contextKnown.has(ev.pid);
    const sight = passed ? null : this.#look(ev, before, contextKnown);
    if (sight !== null && this.#contextTracked) this.#knowContext(ev.pid);
    let startTicks = before?.start_ticks ?? sight?.startTicks ?? null;
    if (startTicks === null) startTicks = Math.floor(ev.ts / this.#tickNs);
    if (this.#pending.size >= this.#maxPending) {
      const oldest = this.#pending.keys().next().value as number;
      this.counts.shed++;
      this.#settle(oldest, out);
    }
    this.#pending.set(ev.pid, { ev, before, startTicks, sight: sight?.sight ?? null });
  }

  argv(ev: ArgvEvent, out: PofrRecord[]): void {
    const pid = this.#tgidOf.get(ev.tid) ?? ev.tid;
    const p = this.#pending.get(pid);
    // A hit with no exec waiting: its exec was lost (a gap says so) or already settled late.
    if (p === undefined) return;
    this.#pending.delete(pid);
    let argv: WireBytes[] = ev.argv.map(toWireBytes);
    let source: ArgvSource = 'probe';
    let complete = ev.complete;
    if (!complete) {
      const fromProc = this.#cmdline(pid, p.startTicks);
      if (fromProc !== null) {
        argv = fromProc;
        source = 'proc';
        complete = true;
      }
    }
    this.#emitExec(p, argv, source, complete, out);
  }

  task(ev: TaskEvent, out: PofrRecord[]): void {
    const parentPid = this.#tgidOf.get(ev.parentTid) ?? ev.parentTid;
    let thread = ev.thread;
    if (thread === null) {
      const status = readStatus(this.#o.procRoot, ev.tid);
      thread = !isReadFailure(status) && status.tgid !== ev.tid;
    }
    if (thread) {
      this.addThread(ev.tid, parentPid);
      return;
    }
    // A parent that forks has run its new program: an exec still waiting for its probe never gets one.
    this.#settle(parentPid, out);
    const live = this.#o.live;
    const parent = live.processOfPid(parentPid);
    const expected = Math.floor(ev.ts / this.#tickNs);
    // The kernel stamps the start a few microseconds before the event fires: only an event just past
    // a tick boundary can belong to the tick before, and only then is /proc asked (a read per fork
    // would be much of the cost of a fork storm). A later value belongs to a reused pid.
    const nearBoundary = ev.ts - expected * this.#tickNs < BOUNDARY_NS;
    const st =
      nearBoundary && procAlive(this.#o.procRoot, ev.tid) ? readStat(this.#o.procRoot, ev.tid) : 'gone';
    const startTicks =
      !isReadFailure(st) && st.startTicks <= expected && st.startTicks >= expected - 1
        ? st.startTicks
        : expected;
    const start = this.#o.clock.wallMicros(ev.ts);
    const observer = this.#o.observerPids().has(ev.tid);
    const base = parent ?? this.#childFromProc(ev, startTicks);
    // A fork inherits its parent's cgroup and namespaces; a clone into new namespaces is read.
    const context = ev.newNamespaces === true && parent ? readContextFields(this.#o.procRoot, ev.tid) : null;
    if (this.#contextTracked && parent !== undefined) {
      if (context !== null || (ev.newNamespaces === false && this.#contextKnown.has(parentPid)))
        this.#knowContext(ev.tid);
    }
    this.counts.processes++;
    if (parent !== undefined && context === null && live.isStated(parent)) {
      // The image is the parent's, which the records stated whole: naming the identity says it all,
      // in a fifth of the bytes (an exec storm's forks were half of what the recorder serialised).
      this.#push(out, {
        type: 'process_fork',
        t: start,
        pid: ev.tid,
        start_ticks: startTicks,
        ppid: parentPid,
        parent_start_ticks: parent.start_ticks,
        observer,
      });
      return;
    }
    const image: ProcessImage = {
      ...base,
      ...context,
      pid: ev.tid,
      start_ticks: startTicks,
      start,
      ppid: parentPid,
      parent_start_ticks: parent?.start_ticks ?? null,
      source: 'trace',
      observer,
    };
    this.#push(out, { type: 'process_start', t: start, proc: image });
  }

  exit(ev: ExitEvent, out: PofrRecord[]): void {
    const pid = this.#tgidOf.get(ev.tid) ?? ev.tid;
    this.#tgidOf.delete(ev.tid);
    // Without group_dead (old kernels), only the leader's exit is taken as the process's end.
    const last = ev.groupDead ?? ev.tid === pid;
    if (!last) return;
    this.#contextKnown.delete(pid);
    this.#settle(pid, out);
    const live = this.#o.live;
    const proc = live.processOfPid(pid);
    if (proc === undefined) return;
    const t = this.#o.clock.wallMicros(ev.ts);
    const files = live.filesOf(`${proc.pid}:${proc.start_ticks}`);
    const records: PofrRecord[] = [];
    if (files) {
      for (const fd of files.keys()) {
        records.push({ type: 'file_close', t, pid: proc.pid, start_ticks: proc.start_ticks, fd });
      }
    }
    records.push({ type: 'process_exit', t, pid: proc.pid, start_ticks: proc.start_ticks });
    this.counts.exits++;
    for (const r of records) this.#push(out, r);
  }

  /** Settles every exec that waited for its probe longer than allowed, as of trace time `nowTs`. */
  expire(nowTs: number, out: PofrRecord[]): void {
    for (const [pid, p] of this.#pending) {
      if (nowTs - p.ev.ts < this.#probeWaitNs) break;
      this.#settle(pid, out);
    }
  }

  /** Settles everything still waiting (at shutdown). */
  flush(out: PofrRecord[]): void {
    for (const pid of [...this.#pending.keys()]) this.#settle(pid, out);
  }

  /** An exec that no probe reported: its argv comes from /proc if it still runs, else the event. */
  #settle(pid: number, out: PofrRecord[]): void {
    const p = this.#pending.get(pid);
    if (p === undefined) return;
    this.#pending.delete(pid);
    const fromProc = p.sight === null ? null : this.#cmdline(pid, p.startTicks);
    if (fromProc !== null) this.#emitExec(p, fromProc, 'proc', true, out);
    else this.#emitExec(p, [toWireBytes(p.ev.filename)], 'event', false, out);
    this.#o.onUnprobedExec?.(pid, p.ev.filename);
  }

  #emitExec(
    p: PendingExec,
    argv: WireBytes[],
    source: ArgvSource,
    complete: boolean,
    out: PofrRecord[],
  ): void {
    const { ev, before, sight } = p;
    const t = this.#o.clock.wallMicros(ev.ts);
    const creds = sight ?? this.#credsAfterExec(before, ev.filename);
    const image: ProcessImage = {
      pid: ev.pid,
      start_ticks: p.startTicks,
      start: before?.start ?? t,
      ppid: sight?.ppid ?? before?.ppid ?? 0,
      parent_start_ticks: before?.parent_start_ticks ?? null,
      exe: sight?.exe ?? this.#resolvedPath(ev.filename, before),
      comm: sight?.comm ?? toWireBytes(commOf(ev.filename)),
      argv,
      cwd: sight?.cwd ?? before?.cwd ?? null,
      ruid: creds.ruid,
      euid: creds.euid,
      rgid: creds.rgid,
      egid: creds.egid,
      source: 'trace',
      observer: this.#o.observerPids().has(ev.pid),
      argv_source: source,
      argv_complete: complete,
      ...(sight?.context ?? contextOf(before)),
    };
    if (source === 'probe') this.counts.argvFromProbe++;
    else if (source === 'proc') this.counts.argvFromProc++;
    else this.counts.argvFromEvent++;
    this.counts.execs++;
    // A process the recorder had not seen before its exec (it predates the recorder, or its start
    // was lost) starts here, with the image it exec'd.
    if (before === undefined) this.#push(out, { type: 'process_start', t, proc: image });
    else if (this.#o.live.isStated(before)) this.#push(out, execDelta(t, before, image));
    else this.#push(out, { type: 'process_exec', t, proc: image });
  }

  /**
   * Reads the process right after its exec, if it is still the same process running the program
   * the event names (not a reused pid, not already a later exec: its comm is the executed name).
   */
  #knowContext(pid: number): void {
    // Bounded like the thread map: past it, the next execs read their context again.
    if (this.#contextKnown.size >= this.#maxThreads) this.#contextKnown.clear();
    this.#contextKnown.add(pid);
  }

  #look(
    ev: ExecEvent,
    before: ProcessImage | undefined,
    contextKnown: boolean,
  ): { sight: ExecSight; startTicks: number } | null {
    const root = this.#o.procRoot;
    if (!procAlive(root, ev.pid)) return null;
    const st = readStat(root, ev.pid);
    if (isReadFailure(st)) return null;
    if (before !== undefined ? st.startTicks !== before.start_ticks : st.startTicks * this.#tickNs > ev.ts) {
      return null;
    }
    if (!FD_PATHS.test(ev.filename.toString('latin1')) && !st.comm.equals(commOf(ev.filename))) return null;
    const status = readStatus(root, ev.pid);
    if (isReadFailure(status)) return null;
    const exe = readExe(root, ev.pid);
    const cwd = readCwd(root, ev.pid);
    return {
      startTicks: st.startTicks,
      sight: {
        exe: exe === null || exe === 'denied' ? null : toWireBytes(exe),
        cwd: cwd === null || cwd === 'denied' ? null : toWireBytes(cwd),
        comm: toWireBytes(st.comm),
        ppid: status.ppid,
        ruid: status.ruid,
        euid: status.euid,
        rgid: status.rgid,
        egid: status.egid,
        // An exec keeps the cgroup and namespaces: only a change since the image was read moves them.
        context: contextKnown ? contextOf(before) : readContextFields(root, ev.pid),
      },
    };
  }

  /**
   * A child whose parent the recorder does not know: what /proc shows of it (it is still its
   * parent's copy, unless it exec'd already), or only what the event gave.
   */
  #childFromProc(ev: TaskEvent, startTicks: number): ProcessImage {
    const root = this.#o.procRoot;
    const st = procAlive(root, ev.tid) ? readStat(root, ev.tid) : 'gone';
    // Still the parent's copy only while its comm is the parent's (the event's): after an exec
    // /proc shows the new program, which is not what the fork started.
    const same = !isReadFailure(st) && st.startTicks === startTicks && st.comm.equals(ev.comm);
    const status = same ? readStatus(root, ev.tid) : 'gone';
    const argv = isReadFailure(status) ? null : this.#cmdline(ev.tid, startTicks);
    const known = !isReadFailure(status);
    const exe = known ? readExe(root, ev.tid) : null;
    const cwd = known ? readCwd(root, ev.tid) : null;
    return {
      pid: ev.tid,
      start_ticks: startTicks,
      start: 0,
      ppid: 0,
      parent_start_ticks: null,
      exe: exe === null || exe === 'denied' ? null : toWireBytes(exe),
      comm: toWireBytes(ev.comm),
      argv: argv ?? [],
      cwd: cwd === null || cwd === 'denied' ? null : toWireBytes(cwd),
      ruid: known ? status.ruid : UNKNOWN_ID,
      euid: known ? status.euid : UNKNOWN_ID,
      rgid: known ? status.rgid : UNKNOWN_ID,
      egid: known ? status.egid : UNKNOWN_ID,
      source: 'trace',
      observer: false,
      argv_source: argv === null ? 'event' : 'proc',
      argv_complete: argv !== null,
      ...(known ? readContextFields(root, ev.tid) : {}),
    };
  }

  /** argv from /proc/PID/cmdline, if the process is still the one that exec'd. */
  #cmdline(pid: number, startTicks: number): WireBytes[] | null {
    const root = this.#o.procRoot;
    if (!procAlive(root, pid)) return null;
    const st = readStat(root, pid);
    if (isReadFailure(st) || st.startTicks !== startTicks) return null;
    const raw = readCmdline(root, pid);
    if (isReadFailure(raw)) return null;
    return raw.map(toWireBytes);
  }

  /**
   * Credentials of a process gone before /proc could be read: those it had before the exec (an exec
   * keeps them), with the file's owner as effective id when it is set-user-ID or set-group-ID.
   */
  #credsAfterExec(
    before: ProcessImage | undefined,
    filename: Buffer,
  ): { ruid: number; euid: number; rgid: number; egid: number } {
    const creds = before
      ? { ruid: before.ruid, euid: before.euid, rgid: before.rgid, egid: before.egid }
      : { ruid: UNKNOWN_ID, euid: UNKNOWN_ID, rgid: UNKNOWN_ID, egid: UNKNOWN_ID };
    if (filename[0] !== 0x2f) return creds;
    const mode = this.#fileMode(filename);
    // A file gone too leaves the credentials from before the exec as all that is known.
    if (mode !== null && (mode.mode & S_ISUID) !== 0) creds.euid = mode.uid;
    if (mode !== null && (mode.mode & S_ISGID) !== 0) creds.egid = mode.gid;
    return creds;
  }

  /**
   * The mode and owner of an executed file, cached for a second: a storm of execs runs the same few
   * programs, and a changed set-user-ID bit still shows within that second.
   */
  #fileMode(filename: Buffer): { mode: number; uid: number; gid: number } | null {
    const key = filename.toString('latin1');
    const now = Date.now();
    const hit = this.#modes.get(key);
    if (hit !== undefined && now - hit.at < 1000) return hit.value;
    const st = statSync(filename, { throwIfNoEntry: false });
    const value = st === undefined ? null : { mode: st.mode, uid: st.uid, gid: st.gid };
    if (this.#modes.size >= 4096) this.#modes.clear();
    this.#modes.set(key, { at: now, value });
    return value;
  }

  /** The executed path, made absolute against the cwd when the exec named it relatively. */
  #resolvedPath(filename: Buffer, before: ProcessImage | undefined): WireBytes {
    if (filename[0] === 0x2f || before?.cwd == null) return toWireBytes(filename);
    const cwd =
      typeof before.cwd === 'string' ? Buffer.from(before.cwd) : Buffer.from(before.cwd.b64, 'base64');
    const rel = filename[0] === 0x2e && filename[1] === 0x2f ? filename.subarray(2) : filename;
    return toWireBytes(
      Buffer.concat([cwd, cwd[cwd.length - 1] === 0x2f ? Buffer.alloc(0) : Buffer.from('/'), rel]),
    );
  }

  #push(out: PofrRecord[], r: PofrRecord): void {
    this.#o.live.apply([r]);
    out.push(r);
  }
}

/**
 * An exec as what it changed: the program's fields, and the others only where they differ from the
 * image before (most execs keep cwd, ids, parent and context: a short process's exec shrinks from
 * ~560 bytes of JSON to ~150, and serialising it from ~4.5 µs to ~1 µs).
 */
function execDelta(t: number, before: ProcessImage, image: ProcessImage): RecordOf<'process_exec_delta'> {
  const r: RecordOf<'process_exec_delta'> = {
    type: 'process_exec_delta',
    t,
    pid: image.pid,
    start_ticks: image.start_ticks,
    exe: image.exe,
    comm: image.comm,
    argv: image.argv,
    argv_source: image.argv_source ?? 'event',
    argv_complete: image.argv_complete ?? false,
  };
  const out = r as unknown as Record<string, unknown>;
  const was = before as unknown as Record<string, unknown>;
  const now = image as unknown as Record<string, unknown>;
  for (const f of EXEC_CHANGE_FIELDS) if (!sameField(was[f], now[f])) out[f] = now[f];
  return r;
}

/** Field values of an image: numbers, booleans, null, strings, or `{ b64 }` bytes. */
function sameField(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if (typeof a === 'object' && typeof b === 'object')
    return (a as { b64: string }).b64 === (b as { b64: string }).b64;
  return false;
}

/** The comm an exec gives: the executed path's last component, cut to 15 bytes (TASK_COMM_LEN). */
function commOf(filename: Buffer): Buffer {
  const slash = filename.lastIndexOf(0x2f);
  const base = slash < 0 ? filename : filename.subarray(slash + 1);
  return base.subarray(0, 15);
}

/** A gone process's context is the one it had before the exec (an exec keeps namespaces and cgroup). */
function contextOf(before: ProcessImage | undefined): ContextFields {
  if (before === undefined) return {};
  const { cgroup, container_id, ns_pid, ns_net, ns_mnt, ns_user } = before;
  return { cgroup, container_id, ns_pid, ns_net, ns_mnt, ns_user };
}
