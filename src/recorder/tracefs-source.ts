import { readdirSync } from 'node:fs';
import type { PofrRecord, ProcRef } from '../protocol/index.js';
import { CRED_CALLS, CredEvents } from './cred-events.js';
import { FileEvents } from './file-events.js';
import { InterpreterProbes } from './interpreter-probes.js';
import { type LibcProbeSpec, LibcProbes } from './libc-probes.js';
import type { LiveState } from './live-state.js';
import { LOOKUP_FUNCS, LookupEvents } from './lookup-events.js';
import { ProcessEvents } from './process-events.js';
import type { RecorderSource, SourceHealth } from './source.js';
import { readNetns } from './sources/net-table-reader.js';
import { DEFAULT_PROC_ROOT, listTgids, readClockTicks } from './sources/procfs-reader.js';
import { EventDecoder, type KernelEvent, type KernelFormats } from './sources/tracefs/kernel-events.js';
import { monoNowNs, TraceClock } from './sources/tracefs/trace-clock.js';
import { TraceInstance } from './sources/tracefs/trace-instance.js';
import {
  cleanStaleTracing,
  DEFAULT_TRACEFS_ROOTS,
  locateTracefs,
  ownerToken,
} from './sources/tracefs/tracefs-root.js';
import { readUprobeHits } from './sources/tracefs/uprobe-events.js';
import { TcpEvents } from './tcp-events.js';
import { sockaddrProbeArgs, UdpEvents } from './udp-events.js';

export interface TracefsSourceOptions {
  /** The live state to feed, shared with the procfs sampler. */
  readonly live: LiveState;
  readonly procRoot?: string;
  readonly tracefsRoots?: readonly string[];
  readonly observerPids?: () => ReadonlySet<number>;
  /** Ring buffer per CPU, KiB (default 8192: seconds of an exec storm). */
  readonly bufferKbPerCpu?: number;
  /** argv probes on ELF interpreters (default true). */
  readonly uprobes?: boolean;
  /** TCP state events (default true). */
  readonly tcp?: boolean;
  /** Brief file opens: glibc open probes + open/close syscall events (default: as `uprobes`). */
  readonly files?: boolean;
  /** UDP endpoints with their process: socket syscalls + glibc connect/sendto probes (default: as `uprobes`). */
  readonly udp?: boolean;
  /** Name lookups: glibc resolver probes (default: as `uprobes`). */
  readonly lookups?: boolean;
  readonly log?: (msg: string, fields?: object) => void;
}

/** The outcome of starting: a source, or why tracing is not available here (said once). */
export type TracefsStart =
  | { readonly ok: true; readonly source: TracefsSource }
  | { readonly ok: false; readonly reason: string };

/** What `pofr client status` shows of the tracing source. */
export interface TracefsHealth extends SourceHealth {
  readonly instance: string;
  /** 'on', or why argv comes from /proc instead. */
  readonly uprobes: string;
  readonly interpreters: readonly string[];
  /** The C libraries with glibc probes: the host's, and containers' own. */
  readonly libraries: readonly string[];
  readonly tcp: boolean;
  /** 'on' (glibc open probes), or why brief file opens are not recorded. */
  readonly files: string;
  /** 'on' (glibc resolver probes), or why name lookups are not recorded. */
  readonly lookups: string;
  /** 'on' (socket events + glibc connect/sendto probes), or why UDP comes from sampling alone. */
  readonly udp: string;
  readonly events: number;
  /** Events the kernel lost (buffer overruns, refused events, probe events missing). */
  readonly lost: number;
  readonly argv: { readonly probe: number; readonly proc: number; readonly event: number };
  readonly threads: number;
  readonly pendingExecs: number;
}

const MARK = 'pofr-clock ';
/** Unnamed fds of one process kept in an array up to this many; past it, a Set (see #fdUnnamed). */
const FD_ARRAY_MAX = 16;
/** Events younger than this at a drain wait for the next: every CPU has committed older ones. */
const SETTLE_NS = 1e6;
const RECALIBRATE_NS = 10e9;
/**
 * How often the loss counters (a stats file per CPU, uprobe_profile) are read when no page said
 * events were missed: reading them every 100 ms tick was a twentieth of a quiet host's recorder.
 */
const LOSS_CHECK_US = 1_000_000;

/**
 * Exact process and TCP events from the kernel's tracepoints, read through tracefs: plain file I/O
 * on a tracing instance of the recorder's own, no kernel module, no eBPF.
 *
 * - `task:task_newtask` (or `sched:sched_process_fork`), `sched:sched_process_exec|exit`: every
 *   process's start, each exec and its exit at the kernel's times; threads are grouped into their
 *   process (task_newtask carries the clone flags that tell a thread).
 * - a uprobe at each ELF interpreter's entry: argv from the new program's initial stack.
 * - `sock:inet_sock_set_state`: every TCP connect, accept, listen, state change and close.
 * - the instance's overrun and drop counters and the probes' hit counts become `gap` records.
 *
 * Each `poll` drains the per-CPU buffers (non-blocking), orders the events by time across CPUs,
 * and turns those every CPU has surely committed into records on the shared LiveState.
 * `close()` (also run at process exit) removes the instance and the probes.
 */
export class TracefsSource implements RecorderSource {
  readonly name = 'tracefs';
  readonly #o: TracefsSourceOptions;
  readonly #root: string;
  readonly #instance: TraceInstance;
  readonly #decoder: EventDecoder;
  readonly #clock: TraceClock;
  readonly #processes: ProcessEvents;
  readonly #tcp: TcpEvents | null;
  readonly #probes: InterpreterProbes | null;
  readonly #uprobesState: string;
  readonly #libc: LibcProbes | null;
  #files: FileEvents | null = null;
  /**
   * Descriptors that only /proc can name, per process: opens that came without their path (direct
   * system calls of static programs, Go, ld.so) and sockets. An entry goes when its close is seen,
   * so an fd opened and closed between two drains (ld.so's, at every start of a dynamic program)
   * sends the sampler to no fd table it could not learn from. A short array, not a Set, until it
   * grows: it mostly holds one or two fds for microseconds (ld.so's opens at each start), and a
   * Set per exec was a hash table allocated and dropped each time.
   */
  #fdUnnamed = new Map<number, number[] | Set<number>>();
  #filesState = 'off';
  #lookups: LookupEvents | null = null;
  #lookupsState = 'off';
  #creds: CredEvents | null = null;
  #udp: UdpEvents | null = null;
  #udpState = 'off';
  #closeEnabled = false;
  readonly #held: KernelEvent[] = [];
  readonly #marks = new Map<number, [number, number]>();
  readonly #onExit = () => this.close();
  #markSeq = 0;
  #lastMarkNs = 0;
  #events = 0;
  #lost = 0;
  #lastCycleMs = 0;
  #closed = false;
  #reconcile = false;
  /** Per CPU: kernel loss counters at the last look, and when that look was (wall µs). */
  #lossSeen: number[];
  #lastLook: number[];
  #lastLossCheck = 0;
  #probeHitsSeen = 0;
  #probeEventsRead = 0;
  #probeMissesReported = 0;
  #lastProbeLook = Date.now() * 1000;

  private constructor(
    opts: TracefsSourceOptions,
    root: string,
    instance: TraceInstance,
    decoder: EventDecoder,
    uprobes: boolean,
    tcp: boolean,
  ) {
    this.#o = opts;
    this.#root = root;
    this.#instance = instance;
    this.#decoder = decoder;
    const procRoot = opts.procRoot ?? DEFAULT_PROC_ROOT;
    this.#clock = new TraceClock(procRoot);
    const self = new Set([process.pid]);
    const observerPids = opts.observerPids ?? (() => self);
    this.#probes = uprobes
      ? new InterpreterProbes({
          tracefsRoot: root,
          instance,
          token: instance.name,
          decoder,
          procRoot,
        })
      : null;
    this.#processes = new ProcessEvents({
      live: opts.live,
      clock: this.#clock,
      procRoot,
      clockTicks: readClockTicks(),
      observerPids,
      onUnprobedExec: this.#probes
        ? (pid, filename) => {
            this.#probes?.probeExeOf(pid, filename);
            // The first program of a container: its own glibc gets the file, lookup and UDP probes.
            this.#libc?.probeRootOf(procRoot, pid);
          }
        : undefined,
    });
    this.#tcp = tcp
      ? new TcpEvents({
          live: opts.live,
          clock: this.#clock,
          ownerOfTid: (tid) => this.#ownerOfTid(tid),
          netnsOf: (pid) => readNetns(procRoot, pid),
        })
      : null;
    this.#libc = uprobes ? new LibcProbes({ tracefsRoot: root, instance, token: instance.name }) : null;
    this.#lossSeen = instance.cpus.map(() => 0);
    this.#lastLook = instance.cpus.map(() => Date.now() * 1000);
    if (this.#probes) {
      this.#probes.probeRunning();
      this.#uprobesState = this.#probes.unavailable ?? 'on';
    } else {
      this.#uprobesState = 'off (--sources)';
    }
  }

  /**
   * Starts tracing, or says why it cannot (not root, no tracefs, refused): the caller then
   * records by sampling alone. Stale instances and probes of dead recorders are removed first.
   */
  static start(opts: TracefsSourceOptions): TracefsStart {
    const procRoot = opts.procRoot ?? DEFAULT_PROC_ROOT;
    const where = locateTracefs(opts.tracefsRoots ?? DEFAULT_TRACEFS_ROOTS);
    if (!where.ok) return { ok: false, reason: where.reason };
    const root = where.root;
    let instance: TraceInstance;
    try {
      instance = TraceInstance.create(root, ownerToken(procRoot), {
        bufferKbPerCpu: opts.bufferKbPerCpu ?? 8192,
        clock: 'boot',
      });
    } catch (e) {
      return { ok: false, reason: `cannot create a tracing instance under ${root}: ${(e as Error).message}` };
    }
    const nested = pidNamespaceProblem(instance);
    if (nested !== null) {
      instance.close();
      return { ok: false, reason: nested };
    }
    // Only now: inside a PID namespace of its own every other recorder would look dead.
    const stale = cleanStaleTracing(root, procRoot);
    if (stale.instances.length > 0 || stale.probes.length > 0 || stale.failed.length > 0) {
      opts.log?.('removed tracing left by recorders that died without cleaning up', stale);
    }
    let source: TracefsSource | undefined;
    try {
      const formats = readFormats(instance, opts.tcp ?? true);
      const decoder = new EventDecoder(formats);
      source = new TracefsSource(
        opts,
        root,
        instance,
        decoder,
        opts.uprobes ?? true,
        formats.tcp !== undefined,
      );
      source.#enable(formats);
    } catch (e) {
      // The probes the source defined go with it; without a source, the instance alone.
      if (source) source.close();
      else instance.close();
      return { ok: false, reason: `kernel tracing is not usable here: ${(e as Error).message}` };
    }
    return { ok: true, source };
  }

  #enable(formats: KernelFormats): void {
    const inst = this.#instance;
    inst.enable('sched', 'sched_process_exec');
    inst.enable('sched', 'sched_process_exit');
    if (formats.newtask) inst.enable('task', 'task_newtask');
    else inst.enable('sched', 'sched_process_fork');
    if (formats.tcp) inst.enable('sock', 'inet_sock_set_state', 'protocol == 6');
    this.#enableFiles();
    this.#enableLookups();
    this.#enableCreds();
    this.#enableContextChanges();
    this.#enableUdp();
    if (this.#libc !== null) {
      const procRoot = this.#o.procRoot ?? DEFAULT_PROC_ROOT;
      for (const pid of listTgids(procRoot)) this.#libc.probeRootOf(procRoot, pid);
    }
    inst.open();
    process.once('exit', this.#onExit);
    this.#learnThreads();
    this.#mark();
    // The first drain brings the marker back: times convert exactly from the first event on.
    this.#drain();
  }

  /**
   * glibc's open functions give the path, the syscall exits the descriptor, close its end. The
   * recorder's own calls (its /proc reads: thousands a cycle) are filtered out in the kernel.
   */
  #enableFiles(): void {
    if (this.#libc === null || !(this.#o.files ?? true)) {
      this.#filesState = this.#libc === null ? 'off (no uprobes)' : 'off (--sources)';
      return;
    }
    const inst = this.#instance;
    const exits = ['openat', 'open', 'creat'].filter((c) => inst.hasEvent('syscalls', `sys_exit_${c}`));
    if (exits.length === 0 || !inst.hasEvent('syscalls', 'sys_enter_close')) {
      this.#filesState = 'off (no syscall events in this kernel)';
      return;
    }
    const notMe = `common_pid != ${process.pid}`;
    const why = this.#libc.add(
      FILE_PROBES,
      (func, format) => this.#decoder.addPathProbe(format, func),
      notMe,
    );
    if (why !== null) {
      this.#filesState = `off: ${why}`;
      return;
    }
    for (const c of exits) {
      this.#decoder.addSyscallExit(inst.format('syscalls', `sys_exit_${c}`), c);
      inst.enable('syscalls', `sys_exit_${c}`, notMe);
    }
    this.#enableClose();
    this.#files = new FileEvents({
      live: this.#o.live,
      clock: this.#clock,
      procRoot: this.#o.procRoot ?? DEFAULT_PROC_ROOT,
      ownerOfTid: (tid) => this.#ownerOfTid(tid),
    });
    this.#filesState = 'on';
  }

  /** glibc's resolver functions give the name a process looks up (the recorder's own left out). */
  #enableLookups(): void {
    if (this.#libc === null || !(this.#o.lookups ?? true)) {
      this.#lookupsState = this.#libc === null ? 'off (no uprobes)' : 'off (--sources)';
      return;
    }
    const why = this.#libc.add(
      LOOKUP_PROBES,
      (func, format) => this.#decoder.addPathProbe(format, func),
      `common_pid != ${process.pid}`,
    );
    if (why !== null) {
      this.#lookupsState = `off: ${why}`;
      return;
    }
    this.#lookups = new LookupEvents({ clock: this.#clock, ownerOfTid: (tid) => this.#ownerOfTid(tid) });
    this.#lookupsState = 'on';
  }

  /**
   * What moves a process to other namespaces or another cgroup without a clone: successful unshare
   * and setns calls, and cgroup moves. With all three seen, an exec keeps the context its process
   * image has (ProcessEvents' #contextKnown); without, every exec reads it.
   */
  #enableContextChanges(): void {
    const inst = this.#instance;
    const calls = ['unshare', 'setns'];
    if (
      !calls.every((c) => inst.hasEvent('syscalls', `sys_exit_${c}`)) ||
      !inst.hasEvent('cgroup', 'cgroup_attach_task')
    )
      return;
    for (const c of calls) {
      this.#decoder.addContextChange(inst.format('syscalls', `sys_exit_${c}`), 'common_pid');
      inst.enable('syscalls', `sys_exit_${c}`, 'ret == 0');
    }
    this.#decoder.addContextChange(inst.format('cgroup', 'cgroup_attach_task'), 'pid');
    inst.enable('cgroup', 'cgroup_attach_task');
    this.#processes.trackContextChanges();
  }

  /** Id changes without exec: the set*id calls' arguments and their success. No probe needed. */
  #enableCreds(): void {
    const inst = this.#instance;
    for (const [call, names] of Object.entries(CRED_CALLS)) {
      if (!inst.hasEvent('syscalls', `sys_enter_${call}`) || !inst.hasEvent('syscalls', `sys_exit_${call}`))
        continue;
      this.#decoder.addSyscallArgs(inst.format('syscalls', `sys_enter_${call}`), call, names);
      this.#decoder.addSyscallExit(inst.format('syscalls', `sys_exit_${call}`), call);
      inst.enable('syscalls', `sys_enter_${call}`);
      inst.enable('syscalls', `sys_exit_${call}`);
      this.#creds ??= new CredEvents({
        live: this.#o.live,
        clock: this.#clock,
        ownerOfTid: (tid) => this.#ownerOfTid(tid),
      });
    }
  }

  #enableClose(): void {
    if (this.#closeEnabled) return;
    this.#decoder.addCloseEnter(this.#instance.format('syscalls', 'sys_enter_close'));
    this.#instance.enable('syscalls', 'sys_enter_close', `common_pid != ${process.pid}`);
    this.#closeEnabled = true;
  }

  /**
   * UDP sockets by their syscalls (socket's type at entry, its fd at exit), their destinations by
   * glibc's connect and sendto (the address is in user memory), their end by close.
   */
  #enableUdp(): void {
    if (this.#libc === null || !(this.#o.udp ?? true)) {
      this.#udpState = this.#libc === null ? 'off (no uprobes)' : 'off (--sources)';
      return;
    }
    const inst = this.#instance;
    if (
      !['sys_enter_socket', 'sys_exit_socket', 'sys_enter_close'].every((e) => inst.hasEvent('syscalls', e))
    ) {
      this.#udpState = 'off (no socket syscall events in this kernel)';
      return;
    }
    const notMe = `common_pid != ${process.pid}`;
    const why = this.#libc.add(
      UDP_PROBES,
      (func, format) => this.#decoder.addSockaddrProbe(format, func),
      notMe,
    );
    if (why !== null) {
      this.#udpState = `off: ${why}`;
      return;
    }
    this.#decoder.addSyscallArgs(inst.format('syscalls', 'sys_enter_socket'), 'socket', ['family', 'type']);
    this.#decoder.addSyscallExit(inst.format('syscalls', 'sys_exit_socket'), 'socket');
    inst.enable('syscalls', 'sys_enter_socket', notMe);
    inst.enable('syscalls', 'sys_exit_socket', notMe);
    this.#enableClose();
    const procRoot = this.#o.procRoot ?? DEFAULT_PROC_ROOT;
    this.#udp = new UdpEvents({
      live: this.#o.live,
      clock: this.#clock,
      procRoot,
      ownerOfTid: (tid) => this.#ownerOfTid(tid),
      netnsOf: (pid) => readNetns(procRoot, pid),
    });
    this.#udpState = 'on';
  }

  health(): TracefsHealth {
    const c = this.#processes.counts;
    return {
      mode: 'tracing',
      limited: false,
      denied: 0,
      lastCycleMs: this.#lastCycleMs,
      processes: this.#o.live.processes.size,
      instance: this.#instance.name,
      uprobes: this.#probes?.unavailable ?? this.#uprobesState,
      interpreters: this.#probes?.paths() ?? [],
      libraries: this.#libc?.libraries() ?? [],
      tcp: this.#tcp !== null,
      files: this.#filesState,
      lookups: this.#lookupsState,
      udp: this.#udpState,
      events: this.#events,
      lost: this.#lost,
      argv: { probe: c.argvFromProbe, proc: c.argvFromProc, event: c.argvFromEvent },
      threads: this.#processes.threadCount,
      pendingExecs: this.#processes.pendingCount,
    };
  }

  /** What the sampler may leave to events: processes, and TCP when its event is on. */
  covers(): { readonly processes: boolean; readonly tcp: boolean } {
    return { processes: !this.#closed, tcp: !this.#closed && this.#tcp !== null };
  }

  /**
   * The processes holding a descriptor that the events could not name (an open without its path,
   * a socket) made since the last call and not closed again; null while those events are off. The
   * sampler re-reads their fd tables at once and leaves the others to a slower round: an open that
   * came with its path is a record already, and an fd closed again is no longer in any table.
   */
  takeFdChanges(): ReadonlySet<number> | null {
    const touched = new Set(this.#fdUnnamed.keys());
    // Socket and close events also run for UDP alone: the map is emptied either way.
    this.#fdUnnamed.clear();
    return this.#files === null || this.#closed ? null : touched;
  }

  #unnamedOpen(tid: number, fd: number): void {
    const pid = this.#processes.tgidOf(tid);
    const fds = this.#fdUnnamed.get(pid);
    if (fds === undefined) this.#fdUnnamed.set(pid, [fd]);
    else if (!Array.isArray(fds)) fds.add(fd);
    else if (fds.length >= FD_ARRAY_MAX) this.#fdUnnamed.set(pid, new Set([...fds, fd]));
    else if (!fds.includes(fd)) fds.push(fd);
  }

  #unnamedClose(tid: number, fd: number): void {
    const pid = this.#processes.tgidOf(tid);
    const fds = this.#fdUnnamed.get(pid);
    if (fds === undefined) return;
    if (!Array.isArray(fds)) {
      if (fds.delete(fd) && fds.size === 0) this.#fdUnnamed.delete(pid);
      return;
    }
    const i = fds.lastIndexOf(fd);
    if (i < 0) return;
    if (fds.length === 1) this.#fdUnnamed.delete(pid);
    else fds.splice(i, 1);
  }

  /** True once after the kernel lost events: the sampler should check everything against /proc. */
  takeReconcile(): boolean {
    const r = this.#reconcile;
    this.#reconcile = false;
    return r;
  }

  /** Everything the kernel reported until now, as records, in time order. */
  poll(now: number): PofrRecord[] {
    if (this.#closed) return [];
    const started = performance.now();
    const out: PofrRecord[] = [];
    const drainStart = monoNowNs();
    const missed = this.#drain();
    if (missed || now - this.#lastLossCheck >= LOSS_CHECK_US) this.#checkLoss(now, out);
    const watermark = drainStart + this.#bootMinusMono() - SETTLE_NS;
    this.#process(watermark, out);
    this.#processes.expire(watermark, out);
    this.#tcp?.expire(watermark, out);
    if (this.#clock.bootNowNs() - this.#lastMarkNs > RECALIBRATE_NS) this.#mark();
    this.#clock.followWallClock();
    this.#lastCycleMs = performance.now() - started;
    return out;
  }

  /** Settles what is still waiting (execs without their probe yet) and stops. */
  flush(): PofrRecord[] {
    this.#lastLossCheck = 0; // a loss in the last second is not left unsaid at a stop
    const out = this.poll(Date.now() * 1000);
    this.#process(Number.POSITIVE_INFINITY, out);
    this.#processes.flush(out);
    this.#tcp?.expire(Number.POSITIVE_INFINITY, out);
    return out;
  }

  /** Removes the instance and the probes. Safe to call twice; also runs at process exit. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    process.removeListener('exit', this.#onExit);
    this.#instance.close();
    const failed = [...(this.#probes?.removeAll() ?? []), ...(this.#libc?.removeAll() ?? [])];
    if (failed.length > 0) this.#o.log?.('some uprobes could not be removed', { failed });
  }

  #bootMinusMono(): number {
    return this.#clock.bootNowNs() - monoNowNs();
  }

  /** Returns true when a page said events were missed before it. */
  #drain(): boolean {
    const decoder = this.#decoder;
    const held = this.#held;
    const lost = this.#instance.drain((_cpu, ts, page, offset, length) => {
      const ev = decoder.decode(ts, page, offset, length);
      if (ev === null) return;
      this.#events++;
      if (ev.kind === 'marker') {
        this.#calibrate(ev.ts, ev.text);
        return;
      }
      if (ev.kind === 'argv') this.#probeEventsRead++;
      held.push(ev);
    });
    return lost.some((n) => n !== 0);
  }

  /** Turns the held events older than `watermark` into records, oldest first across CPUs. */
  #process(watermark: number, out: PofrRecord[]): void {
    const held = this.#held;
    if (held.length === 0) return;
    held.sort((a, b) => a.ts - b.ts);
    let n = 0;
    while (n < held.length && held[n].ts <= watermark) n++;
    if (n === 0) return;
    const ready = held.splice(0, n);
    // Where each pid's last exec and its process's end are among these events: an exec followed by
    // either is not looked up in /proc (it would show the later program, or nothing).
    const lastExec = new Map<number, number>();
    const ended = new Map<number, number>();
    for (let i = 0; i < ready.length; i++) {
      const ev = ready[i];
      if (ev.kind === 'exec') lastExec.set(ev.pid, i);
      else if (ev.kind === 'exit') {
        const pid = this.#processes.tgidOf(ev.tid);
        if (ev.groupDead ?? pid === ev.tid) ended.set(pid, i);
      }
    }
    this.#tcp?.beginBatch();
    for (let i = 0; i < ready.length; i++) {
      const ev = ready[i];
      switch (ev.kind) {
        case 'task':
          this.#processes.task(ev, out);
          break;
        case 'exec': {
          const passed = (lastExec.get(ev.pid) ?? i) > i || (ended.get(ev.pid) ?? -1) > i;
          this.#processes.exec(ev, out, passed);
          break;
        }
        case 'argv':
          this.#processes.argv(ev, out);
          break;
        case 'exit':
          this.#processes.exit(ev, out);
          break;
        case 'tcp':
          this.#tcp?.handle(ev, out);
          break;
        case 'path':
          if (LOOKUP_FUNCS.has(ev.func)) this.#lookups?.lookup(ev, out);
          else this.#files?.path(ev);
          break;
        case 'sysexit':
          if (ev.call === 'socket') {
            if (ev.ret >= 0) this.#unnamedOpen(ev.tid, ev.ret);
            this.#udp?.socketExited(ev);
          } else if (ev.call in CRED_CALLS) this.#creds?.exited(ev, out);
          else if (!(this.#files?.opened(ev, out) ?? false) && ev.ret >= 0) this.#unnamedOpen(ev.tid, ev.ret);
          break;
        case 'sysenter':
          if (ev.call === 'socket') this.#udp?.socketEntered(ev);
          else this.#creds?.entered(ev);
          break;
        case 'sockaddr':
          this.#udp?.sent(ev, out);
          break;
        case 'close':
          this.#unnamedClose(ev.tid, ev.fd);
          this.#files?.closed(ev, out);
          this.#udp?.closed(ev, out);
          break;
        case 'context':
          this.#processes.contextChanged(ev.tid);
          break;
        case 'marker':
          break;
      }
    }
  }

  /**
   * The kernel's own loss counters, per CPU, and the probes' hits against the probe events read:
   * any loss becomes one `gap` record naming its window and count, and asks the sampler to
   * reconcile what the lost events would have said.
   */
  #checkLoss(now: number, out: PofrRecord[]): void {
    this.#lastLossCheck = now;
    const inst = this.#instance;
    let bufferLoss = false;
    for (let i = 0; i < inst.cpus.length; i++) {
      const s = inst.stats(inst.cpus[i]);
      const total = s.overrun + s.dropped + s.commitOverrun;
      const delta = total - this.#lossSeen[i];
      this.#lossSeen[i] = total;
      if (delta > 0) {
        bufferLoss = true;
        this.#processes.eventsLost();
        this.#gap(
          out,
          now,
          this.#lastLook[i],
          delta,
          `kernel trace buffer of cpu ${inst.cpus[i]} lost events (overrun)`,
        );
      }
      this.#lastLook[i] = now;
    }
    if (this.#probes !== null && this.#probes.count > 0) {
      // Hits counted at the previous look have all been drained by now; a shortfall is probe events
      // lost. When the buffer itself lost events, its gap covers them already.
      const missing = this.#probeHitsSeen - this.#probeEventsRead;
      if (missing > this.#probeMissesReported && !bufferLoss) {
        this.#gap(
          out,
          now,
          this.#lastProbeLook,
          missing - this.#probeMissesReported,
          'argv probe events lost: those execs took argv from /proc or the exec event',
        );
      }
      this.#probeMissesReported = Math.max(this.#probeMissesReported, missing);
      const hits = readUprobeHits(this.#root);
      let sum = 0;
      for (const e of this.#probes.events()) sum += hits.get(e) ?? 0;
      this.#probeHitsSeen = sum;
      this.#lastProbeLook = now;
    }
  }

  #gap(out: PofrRecord[], now: number, from: number, dropped: number, reason: string): void {
    this.#lost += dropped;
    this.#reconcile = true;
    this.#o.log?.('kernel events were lost; the record has a gap there', { dropped, reason });
    out.push({ type: 'gap', t: now, from: Math.min(from, now), to: now, reason, dropped });
  }

  #mark(): void {
    const seq = this.#markSeq++;
    const before = monoNowNs();
    this.#instance.mark(`${MARK}${seq}`);
    this.#marks.set(seq, [before, monoNowNs()]);
  }

  #calibrate(ts: number, text: string): void {
    if (!text.startsWith(MARK)) return;
    const seq = Number(text.slice(MARK.length));
    const around = this.#marks.get(seq);
    if (around === undefined) return;
    this.#marks.delete(seq);
    this.#clock.calibrate(ts, around[0], around[1]);
    this.#lastMarkNs = ts;
  }

  /** Threads that exist already: their later exits and forks must find their process. */
  #learnThreads(): void {
    const procRoot = this.#o.procRoot ?? DEFAULT_PROC_ROOT;
    for (const tgid of listTgids(procRoot)) {
      let tasks: string[];
      try {
        tasks = readdirSync(`${procRoot}/${tgid}/task`);
      } catch {
        continue;
      }
      if (tasks.length <= 1) continue;
      for (const t of tasks) this.#processes.addThread(Number(t), tgid);
    }
  }

  #ownerOfTid(tid: number): ProcRef | null {
    const proc = this.#o.live.processOfPid(this.#processes.tgidOf(tid));
    return proc === undefined ? null : { pid: proc.pid, start_ticks: proc.start_ticks };
  }
}

/**
 * The kernel names tasks by their pids in the initial PID namespace. A recorder inside a PID
 * namespace of its own (a container) has other pids in its /proc: every event would name a process
 * it cannot read, or the wrong one. A marker written by this process comes back with the kernel's
 * pid for it; any other pid than its own means such a namespace. Null when all is well.
 */
function pidNamespaceProblem(instance: TraceInstance): string | null {
  const marker = instance.format('ftrace', 'print');
  const common = marker.fields.get('common_pid');
  if (common === undefined) return null;
  const text = `pofr-pid-check ${process.pid}`;
  instance.mark(text);
  instance.open();
  let kernelPid: number | null = null;
  instance.drain((_cpu, _ts, page, offset) => {
    if (page.readUInt16LE(offset) === marker.id && kernelPid === null)
      kernelPid = page.readInt32LE(offset + common.offset);
  });
  instance.closePipes();
  if (kernelPid === null || kernelPid === process.pid) return null;
  return `the recorder runs in a PID namespace of its own (the kernel knows it as pid ${kernelPid}, its /proc as ${process.pid}): kernel events name host pids it cannot see; run it in the host's PID namespace (e.g. docker run --pid=host)`;
}

/** glibc's exported open functions (open64, __open and open are one address; fopen calls it). */
const FILE_PROBES: readonly LibcProbeSpec[] = [
  { func: 'open', symbols: ['open64', 'open', '__open64', '__open'], args: ['path=+0(%di):ustring'] },
  { func: 'openat', symbols: ['openat64', 'openat'], args: ['dirfd=%di:s32', 'path=+0(%si):ustring'] },
  { func: 'creat', symbols: ['creat64', 'creat'], args: ['path=+0(%di):ustring'] },
];

/** glibc's connect (sockaddr in the 2nd argument), sendto (in the 5th), sendmsg (msghdr.msg_name). */
const UDP_PROBES: readonly LibcProbeSpec[] = [
  { func: 'connect', symbols: ['connect', '__connect'], args: sockaddrProbeArgs('%si') },
  { func: 'sendto', symbols: ['sendto', '__sendto'], args: sockaddrProbeArgs('%r8') },
  { func: 'sendmsg', symbols: ['sendmsg', '__sendmsg'], args: sockaddrProbeArgs('+0(%si)') },
];

/** glibc's resolver entry points; the name is the first argument of each. */
const LOOKUP_PROBES: readonly LibcProbeSpec[] = [...LOOKUP_FUNCS].map((func) => ({
  func,
  symbols: [func],
  args: ['path=+0(%di):ustring'],
}));

function readFormats(instance: TraceInstance, tcp: boolean): KernelFormats {
  return {
    newtask: instance.hasEvent('task', 'task_newtask') ? instance.format('task', 'task_newtask') : undefined,
    fork: instance.hasEvent('task', 'task_newtask')
      ? undefined
      : instance.format('sched', 'sched_process_fork'),
    exec: instance.format('sched', 'sched_process_exec'),
    exit: instance.format('sched', 'sched_process_exit'),
    tcp:
      tcp && instance.hasEvent('sock', 'inet_sock_set_state')
        ? instance.format('sock', 'inet_sock_set_state')
        : undefined,
    marker: instance.format('ftrace', 'print'),
  };
}
