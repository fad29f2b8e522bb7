import { statSync } from 'node:fs';
import {
  type EndpointInfo,
  type FileInfo,
  type PofrRecord,
  type ProcessImage,
  toWireBytes,
  type WireBytes,
} from '../protocol/index.js';
import { diffEndpoints, diffFiles, diffProcesses, type ObservedEndpoint } from './diff.js';
import { LiveState, processKey } from './live-state.js';
import type { RecorderSource, SourceHealth } from './source.js';
import {
  type NetRow,
  type NetTables,
  readNetCounters,
  readNetns,
  readNetTables,
} from './sources/net-table-reader.js';
import { readContextFields } from './sources/process-context.js';
import {
  classifyFdTarget,
  closeProcFile,
  DEFAULT_PROC_ROOT,
  isFdDirectory,
  isKernelThread,
  isReadFailure,
  listTgids,
  ONE_READ,
  openProcFile,
  type ProcStat,
  parseSchedRunNs,
  parseStat,
  preadProcFile,
  readBootTimeMicros,
  readClockTicks,
  readCmdline,
  readCwd,
  readExe,
  readFdTable,
  readOpenFileLimit,
  readProcFile,
  readStat,
  readStatus,
} from './sources/procfs-reader.js';

export interface ProcfsSamplerOptions {
  procRoot?: string;
  /** Pids of the recorder's own processes, tagged `observer: true`. Default: this process. */
  observerPids?: () => ReadonlySet<number>;
  /** Full keyframe interval, milliseconds (default 60 000). */
  keyframeEveryMs?: number;
  /** Longest time between two reads of the socket tables, milliseconds (default 5 000). */
  endpointsEveryMs?: number;
  /** The live state to feed; pass one to share it with another source. */
  live?: LiveState;
  /** An event source that reports processes (and TCP) exactly, for the sampler to leave them to. */
  events?: EventCoverage;
}

/**
 * What an exact event source (tracefs) tells the sampler. While it covers processes, the sampler
 * no longer lists /proc every cycle to race short processes: it looks only at the processes the
 * live state holds (for their open files), and checks the whole process table against /proc on
 * keyframes and after the source lost events. While it covers TCP, the sampler reads only the UDP
 * socket tables.
 */
export interface EventCoverage {
  covers(): { readonly processes: boolean; readonly tcp: boolean };
  /** True once after the source lost events: everything is checked against /proc that cycle. */
  takeReconcile(): boolean;
  /**
   * The pids that made a descriptor the source could not name (an open without its path, a
   * socket) since the last call and still hold it, or null when the source does not see those
   * calls. With it, any other process is looked at only every UNTOUCHED_VISIT_US: what it opened
   * with a path is a record already, and what it can gain otherwise (dup, a descriptor passed over
   * a socket) waits for that round or its next such call.
   */
  takeFdChanges?(): ReadonlySet<number> | null;
}

/** How often a process is looked at while the event source reports its open and close calls. */
const UNTOUCHED_VISIT_US = 1_000_000;

/** What the sampler remembers of one process between cycles (the records' state lives in LiveState). */
interface ProcMemo {
  readonly key: string;
  readonly pid: number;
  readonly startTicks: number;
  image: ProcessImage;
  comm: Buffer;
  execSignature: number;
  cpuTicks: number;
  numThreads: number;
  runNs: number;
  readonly kernel: boolean;
  denied: boolean;
  /** Raw fd targets as last read: an fd whose bytes did not change keeps its FileInfo. */
  fds: Map<number, Buffer>;
  cycle: number;
  /** /proc/PID/stat and schedstat held open (see openProcFile), or -1. */
  statFd: number;
  schedFd: number;
  /** Its network namespace (read at first sight and after an exec), null when hidden. */
  netns: number | null;
  /** The last exec check read an empty argv: looked at again next cycle before it is believed. */
  emptyArgvOnce: boolean;
  /** Cycles to skip re-reading an unchanged-looking fd table (see #fdsMayHaveChanged), and when. */
  fdBackoff: number;
  nextFdRead: number;
  /** When #visitLive looked at it last (µs), for the slower round of untouched processes. */
  visitedAt: number;
}

/**
 * The procfs source: one poll = one pass over /proc, adaptive so that an idle process costs one
 * pread(2) of its schedstat per cycle and nothing more.
 *
 * - Each process's stat and schedstat stay open between cycles (within a quarter of the fd
 *   limit; past it, they are read by path). A held procfs fd fails with ESRCH once its process
 *   is gone, even if the pid was reused, so it doubles as the identity check.
 * - stat is read again when schedstat's run time moved, for multi-threaded processes (schedstat
 *   is the leader's alone; stat's utime+stime and thread count cover the group), on keyframes.
 * - status, cmdline, exe, cwd are read at first sight. cmdline and exe are read again (exec
 *   check) when stat shows a new comm or new exec addresses (start/end code, stack, arg_start,
 *   arg_end: an exec maps a new, ASLR-randomised image, so they move even when program and comm
 *   are the same), when those are hidden (not root) and the process used CPU, and on keyframes;
 *   status and cwd again only when the image changed.
 * - The fd table is read again at first sight, after an exec, on keyframes, and when the process
 *   used CPU since the last look.
 * - Kernel threads are read once: they have no fds and never exec.
 * - Call `close()` to release the held fds.
 *
 * @example
 * const sampler = new ProcfsSampler({ keyframeEveryMs: 60_000 });
 * setInterval(() => spool.push(sampler.poll(Date.now() * 1000)), 500);
 */
export class ProcfsSampler implements RecorderSource {
  readonly name = 'procfs';
  readonly live: LiveState;
  readonly #procRoot: string;
  readonly #observerPids: () => ReadonlySet<number>;
  readonly #keyframeEveryUs: number;
  readonly #bootTimeUs: number;
  readonly #clockTicks: number;
  readonly #memos = new Map<number, ProcMemo>();
  #cycle = 0;
  #lastKeyframe: number | null = null;
  #lastCycleMs = 0;
  #denied = 0;
  #fresh: ProcessImage[] = [];
  #fdUpdates: Array<[ProcMemo, Map<number, FileInfo>]> = [];
  readonly #endpointsEveryUs: number;
  #lastEndpointRead = 0;
  #netCounters: Buffer | null = null;
  #deferred = new Set<number>();
  /** The recorder's own network namespace: its sockets are read from /proc/net. */
  readonly #ownNetns: number | null;
  #held = 0;
  /**
   * The fd numbers of those held files, in this process. They are the sampler's own handles, not
   * what the recorder does: left out of this process's fd table, or every process the sampler
   * holds would be a file_open and a file_close of the recorder itself (1,900 of 28,575 records
   * in a 5 s exec storm, when the recorder fell behind and held hundreds at once).
   */
  readonly #heldFds = new Set<number>();
  /** Held procfs fds allowed: a quarter of the fd limit, so the rest of the recorder never runs short. */
  #heldBudget = Math.min(16_384, Math.floor(readOpenFileLimit() / 4));
  readonly #events: EventCoverage | undefined;
  /** Whether this kernel gives the fd count as the size of /proc/PID/fd. */
  readonly #fdCountKnown: boolean;
  /** Whether events covered processes last cycle. */
  #coveredBefore = false;

  constructor(opts: ProcfsSamplerOptions = {}) {
    this.#procRoot = opts.procRoot ?? DEFAULT_PROC_ROOT;
    const self = new Set([process.pid]);
    this.#observerPids = opts.observerPids ?? (() => self);
    this.#keyframeEveryUs = (opts.keyframeEveryMs ?? 60_000) * 1000;
    this.#endpointsEveryUs = (opts.endpointsEveryMs ?? 5_000) * 1000;
    this.#bootTimeUs = readBootTimeMicros(this.#procRoot);
    this.#clockTicks = readClockTicks();
    this.#ownNetns = readNetns(this.#procRoot, 'self');
    this.live = opts.live ?? new LiveState();
    this.#events = opts.events;
    // This process holds fds, so a size of 0 means the kernel does not count them there (< 6.2).
    this.#fdCountKnown = (fdCount(this.#procRoot, process.pid) ?? 0) > 0;
  }

  health(): SourceHealth {
    return {
      mode: 'sampling',
      limited: this.#denied > 0,
      denied: this.#denied,
      lastCycleMs: this.#lastCycleMs,
      processes: this.#memos.size,
    };
  }

  /**
   * One cycle. `between` runs once per cycle, after /proc was listed and before the listing is
   * compared with the live state: an event source drains there, so that a process that started or
   * ended around the listing is already in the live state, and is not taken for one the events missed.
   */
  poll(now: number, between?: () => void): PofrRecord[] {
    const started = performance.now();
    const first = this.#lastKeyframe === null;
    const keyframe = first || now - this.#lastKeyframe! >= this.#keyframeEveryUs;
    const cycle = ++this.#cycle;
    const observers = this.#observerPids();
    const cover = this.#events?.covers() ?? { processes: false, tcp: false };
    const lossReconcile = this.#events?.takeReconcile() ?? false;
    const covered = cover.processes && !lossReconcile && this.#coveredBefore;
    // A source that just started (or stopped) covering is checked against /proc once, in full.
    const listing = keyframe || !covered;
    this.#coveredBefore = cover.processes;
    this.#denied = 0;
    this.#fresh = [];
    this.#fdUpdates = [];
    const live = this.live;
    let records: PofrRecord[];
    if (listing) {
      const seen = new Map<string, ProcessImage>();
      const execCheck = !cover.processes || lossReconcile;
      for (const pid of listTgids(this.#procRoot))
        this.#observe(pid, cycle, keyframe, execCheck, observers, seen);
      this.#linkParents();
      between?.();
      if (cover.processes) this.#preferEventImages(seen);
      this.#keepUnsampled(seen);
      for (const memo of [...this.#memos.values()]) if (memo.cycle !== cycle) this.#forget(memo);
      records = diffProcesses(live, seen, now);
    } else {
      between?.();
      this.#visitLive(cycle, observers, now, this.#events?.takeFdChanges?.() ?? null);
      records = [];
    }
    let socketsMoved = this.#touchesSockets(records);
    live.apply(records);
    const fileStart = records.length;
    for (const [memo, next] of this.#fdUpdates) {
      // An event source may have ended the process since its fds were read.
      if (!live.processes.has(memo.key)) continue;
      diffFiles({ pid: memo.pid, start_ticks: memo.startTicks }, live.filesOf(memo.key), next, now, records);
    }
    const fileRecords = records.slice(fileStart);
    socketsMoved = this.#touchesSockets(fileRecords) || socketsMoved;
    live.apply(fileRecords);
    const udpOnly = cover.tcp && !lossReconcile && !first;
    const namespaces = this.#namespaces();
    if (this.#endpointsDue(namespaces, now, keyframe, socketsMoved, udpOnly)) {
      this.#diffEndpoints(namespaces, now, keyframe, udpOnly, records);
    }

    this.#fresh = [];
    this.#fdUpdates = [];
    this.#lastCycleMs = performance.now() - started;
    if (!keyframe) return records;
    this.#lastKeyframe = now;
    const kf = live.keyframe(now);
    // The first keyframe is the whole story so far: events diffed against nothing add nothing.
    if (first) return [kf];
    records.push(kf);
    return records;
  }

  /**
   * A process that events recorded while /proc was being listed keeps the events' image: it was
   * read at its exec, not a moment later, and it must not look like another exec.
   */
  #preferEventImages(seen: Map<string, ProcessImage>): void {
    for (const [key, img] of seen) {
      const fromEvents = this.live.processes.get(key);
      if (fromEvents === undefined || fromEvents === img) continue;
      seen.set(key, fromEvents);
      const memo = this.#memos.get(fromEvents.pid);
      if (memo !== undefined && memo.key === key) memo.image = fromEvents;
    }
  }

  /**
   * The cycle while events cover processes: the processes the live state holds, each looked at as
   * cheaply as #revisit allows (their fd tables re-read when they used CPU); memos of processes the
   * events ended are dropped. No /proc listing, no exec checks, no process records.
   */
  #visitLive(
    cycle: number,
    observers: ReadonlySet<number>,
    now: number,
    touched: ReadonlySet<number> | null,
  ): void {
    for (const [key, img] of this.live.processes) {
      let memo = this.#memos.get(img.pid);
      if (memo !== undefined && memo.key !== key) {
        this.#forget(memo);
        memo = undefined;
      }
      if (memo === undefined) {
        // A process the events started less than a round ago with no descriptor only /proc can
        // name holds what it inherited, no more: it waits for the slower round like any untouched
        // one (most of an exec storm's are gone by then, and their first sight was most of its cost).
        if (touched !== null && !touched.has(img.pid) && now - img.start < UNTOUCHED_VISIT_US) continue;
        memo = this.#firstSight(img.pid, observers);
        if (memo === undefined) continue;
        if (memo.key !== key) {
          this.#forget(memo);
          continue;
        }
        this.#memos.set(img.pid, memo);
      } else {
        memo.image = img;
        if (touched !== null && !touched.has(memo.pid) && now - memo.visitedAt < UNTOUCHED_VISIT_US) {
          memo.cycle = cycle;
          if (memo.denied) this.#denied++;
          continue;
        }
        memo.visitedAt = now;
        if (!this.#revisit(memo, false, false)) {
          // Gone: its exit event is on its way. Its memo goes; the events end it.
          this.#forget(memo);
          continue;
        }
      }
      memo.cycle = cycle;
      if (memo.denied) this.#denied++;
    }
    for (const memo of [...this.#memos.values()]) if (memo.cycle !== cycle) this.#forget(memo);
  }

  /**
   * Reading /proc/net/tcp walks the kernel's whole TCP hash table (milliseconds on a large host,
   * whatever the socket count), so the tables are re-read only when something may have changed:
   * a socket fd came or went, the TCP/UDP counters moved (every TCP state change sends or
   * receives a segment), an endpoint was deferred last cycle, on keyframes, and at least every
   * `endpointsEveryMs` for the changes that timers make alone (TIME_WAIT expiring).
   */
  #endpointsDue(
    namespaces: Map<number | null, number[]>,
    now: number,
    keyframe: boolean,
    socketsMoved: boolean,
    udpOnly: boolean,
  ): boolean {
    const parts: Buffer[] = [];
    for (const [ns, pids] of namespaces) {
      const dir = ns === this.#ownNetns ? `${this.#procRoot}/net` : `${this.#procRoot}/${pids[0]}/net`;
      const c = readNetCounters(dir, udpOnly ? 'udp' : 'all');
      if (c !== null) parts.push(Buffer.from(`${ns}\n`), c);
    }
    const counters = parts.length === 0 ? null : Buffer.concat(parts);
    const countersMoved =
      counters === null || this.#netCounters === null || !counters.equals(this.#netCounters);
    this.#netCounters = counters;
    return (
      keyframe ||
      // A socket fd says nothing of its protocol: with TCP from events, UDP's counters decide.
      (socketsMoved && !udpOnly) ||
      countersMoved ||
      this.#deferred.size > 0 ||
      now - this.#lastEndpointRead >= this.#endpointsEveryUs
    );
  }

  #diffEndpoints(
    namespaces: Map<number | null, number[]>,
    now: number,
    keyframe: boolean,
    udpOnly: boolean,
    records: PofrRecord[],
  ): void {
    const live = this.live;
    this.#lastEndpointRead = now;
    const rows = this.#readAllNetTables(namespaces, udpOnly ? 'udp' : 'all');
    const deferredBefore = this.#deferred;
    const deferred = new Set<number>();
    // A socket made after its owner's fd table was read this cycle is listed without an owner;
    // waiting one cycle (the owner used CPU, so its fds are read next time) joins it. Sockets
    // that stay ownerless (other pid namespaces, denied processes) open on their second sighting.
    const defer = (row: ObservedEndpoint): boolean => {
      if (keyframe || row.inode === 0 || deferredBefore.has(row.inode)) return false;
      deferred.add(row.inode);
      return true;
    };
    // TCP left to events: only UDP endpoints are compared with the (UDP-only) rows.
    const known = udpOnly ? udpEndpoints(live.endpoints) : live.endpoints;
    const ep = diffEndpoints(known, rows, (inode) => live.socketOwner(inode), now, defer);
    this.#deferred = deferred;
    live.apply(ep.records);
    for (const info of ep.revised) live.reviseEndpoint(info);
    for (const r of ep.records) records.push(r);
  }

  /**
   * Network namespaces with a live process in them, each with those processes' pids (any of them
   * shows the namespace's tables). The recorder's own comes first, also when no memo names it.
   */
  #namespaces(): Map<number | null, number[]> {
    const out = new Map<number | null, number[]>([[this.#ownNetns, []]]);
    for (const memo of this.#memos.values()) {
      if (memo.netns === null || memo.netns === this.#ownNetns) continue;
      const pids = out.get(memo.netns);
      if (pids) pids.push(memo.pid);
      else out.set(memo.netns, [memo.pid]);
    }
    return out;
  }

  /**
   * The socket tables of every network namespace in use: a container's sockets are not in the
   * host's /proc/net. Socket inodes are unique system-wide, so the join to fd tables holds.
   */
  #readAllNetTables(namespaces: Map<number | null, number[]>, protos: NetTables): NetRow[] {
    const rows: NetRow[] = [];
    for (const [ns, pids] of namespaces) {
      if (ns === this.#ownNetns) {
        rows.push(...(readNetTables(`${this.#procRoot}/net`, ns, protos) ?? []));
        continue;
      }
      // The first process may have exited since it was listed: any other one in there will do.
      for (const pid of pids) {
        const found = readNetTables(`${this.#procRoot}/${pid}/net`, ns, protos);
        if (found === null || readNetns(this.#procRoot, pid) !== ns) continue;
        rows.push(...found);
        break;
      }
    }
    return rows;
  }

  /** Whether these (not yet applied) records open or close a socket fd. */
  #touchesSockets(records: readonly PofrRecord[]): boolean {
    for (const r of records) {
      if (r.type === 'file_open' && r.file.kind === 'socket') return true;
      if (r.type === 'file_close') {
        const f = this.live.filesOf(processKey(r.pid, r.start_ticks))?.get(r.fd);
        if (f?.kind === 'socket') return true;
      }
    }
    return false;
  }

  #observe(
    pid: number,
    cycle: number,
    keyframe: boolean,
    execCheck: boolean,
    observers: ReadonlySet<number>,
    seen: Map<string, ProcessImage>,
  ): void {
    let memo = this.#memos.get(pid);
    if (memo !== undefined) {
      // An event source may have recorded an exec since: its image is the one to keep.
      const fromEvents = this.live.processes.get(memo.key);
      if (fromEvents !== undefined) memo.image = fromEvents;
    }
    if (memo !== undefined && !this.#revisit(memo, keyframe, execCheck)) {
      this.#forget(memo);
      memo = undefined;
    }
    if (memo === undefined) {
      memo = this.#firstSight(pid, observers);
      if (memo === undefined) return;
      this.#memos.set(pid, memo);
    }
    memo.cycle = cycle;
    if (memo.denied) this.#denied++;
    seen.set(memo.key, memo.image);
  }

  /**
   * Looks again at a known process, reading as little as it can: the schedstat run time alone
   * when it did not move (single-threaded, no keyframe). False when this is no longer the same
   * process (gone, or its pid reused).
   */
  #revisit(memo: ProcMemo, keyframe: boolean, execCheck: boolean): boolean {
    const root = this.#procRoot;
    const runBuf =
      memo.schedFd >= 0
        ? preadProcFile(memo.schedFd)
        : readProcFile(`${root}/${memo.pid}/schedstat`, ONE_READ);
    if (isReadFailure(runBuf)) return false;
    const runNs = parseSchedRunNs(runBuf);
    // A held fd proves identity by itself; without one, only stat's start time does. The leader's
    // schedstat misses the other threads' work: a multi-threaded process gets stat every time.
    const identityKnown = memo.schedFd >= 0;
    if (identityKnown && !keyframe && runNs === memo.runNs && (memo.numThreads <= 1 || memo.kernel))
      return true;
    if (memo.kernel && identityKnown) return true;
    const statBuf =
      memo.statFd >= 0 ? preadProcFile(memo.statFd) : readProcFile(`${root}/${memo.pid}/stat`, ONE_READ);
    if (isReadFailure(statBuf)) return false;
    const st = parseStat(statBuf);
    if (st === null || st.startTicks !== memo.startTicks) return false;
    if (memo.kernel) return true;
    const cpuUsed =
      runNs !== memo.runNs || st.cpuTicks !== memo.cpuTicks || st.numThreads !== memo.numThreads;
    const zombie = st.state === 'Z' || st.state === 'X';
    let execed = false;
    // A zombie has lost its mm and argv: what it shows now is no exec.
    if (
      !zombie &&
      execCheck &&
      (keyframe ||
        st.execSignature !== memo.execSignature ||
        !st.comm.equals(memo.comm) ||
        (st.execSignature === 0 && cpuUsed))
    ) {
      const checked = this.#recheckImage(memo, st);
      if (checked === 'retry') {
        // Caught inside execve: look again next cycle, as if nothing had been seen yet.
        memo.runNs = -1;
        return true;
      }
      execed = checked;
    }
    memo.comm = st.comm;
    memo.execSignature = st.execSignature;
    memo.runNs = runNs;
    memo.cpuTicks = st.cpuTicks;
    memo.numThreads = st.numThreads;
    if (keyframe || execed || (cpuUsed && this.#fdsMayHaveChanged(memo))) this.#rereadFds(memo);
    return true;
  }

  #firstSight(pid: number, observers: ReadonlySet<number>): ProcMemo | undefined {
    const root = this.#procRoot;
    const statFd = this.#hold(`${root}/${pid}/stat`);
    if (statFd === 'gone' || statFd === 'denied') return undefined;
    const statBuf = statFd >= 0 ? preadProcFile(statFd) : readProcFile(`${root}/${pid}/stat`, ONE_READ);
    const st = isReadFailure(statBuf) ? null : parseStat(statBuf);
    const schedFd = st === null ? -1 : this.#hold(`${root}/${pid}/schedstat`);
    const runBuf =
      typeof schedFd !== 'number'
        ? schedFd
        : schedFd >= 0
          ? preadProcFile(schedFd)
          : readProcFile(`${root}/${pid}/schedstat`, ONE_READ);
    const cleanup = () => {
      this.#release(statFd);
      if (typeof schedFd === 'number') this.#release(schedFd);
    };
    if (st === null || isReadFailure(runBuf)) {
      cleanup();
      return undefined;
    }
    const kernel = isKernelThread(st);
    const key = processKey(pid, st.startTicks);
    const known = this.live.processes.get(key);
    let denied = false;
    let image: ProcessImage;
    if (known !== undefined) {
      // Another source (tracefs) recorded it already: keep its image, it was read nearer the exec.
      image = known;
    } else {
      const built = this.#readImage(st, observers.has(pid), kernel);
      if (built === undefined) {
        cleanup();
        return undefined;
      }
      image = built.image;
      denied = built.denied;
      this.#fresh.push(image);
    }
    const memo: ProcMemo = {
      key,
      pid,
      startTicks: st.startTicks,
      image,
      comm: st.comm,
      execSignature: st.execSignature,
      cpuTicks: st.cpuTicks,
      numThreads: st.numThreads,
      runNs: parseSchedRunNs(runBuf),
      kernel,
      denied,
      fds: new Map(),
      cycle: 0,
      statFd,
      schedFd: typeof schedFd === 'number' ? schedFd : -1,
      netns: kernel ? null : readNetns(this.#procRoot, pid),
      emptyArgvOnce: false,
      fdBackoff: 1,
      nextFdRead: 0,
      visitedAt: 0,
    };
    if (kernel) {
      // A kernel thread is checked through schedstat alone: its stat fd is not worth keeping.
      this.#release(memo.statFd);
      memo.statFd = -1;
    } else {
      this.#rereadFds(memo);
    }
    return memo;
  }

  /** Opens a file to keep while the fd budget lasts; -1 means "read it by path". */
  #hold(path: string): number | 'gone' | 'denied' {
    if (this.#held >= this.#heldBudget) return -1;
    const fd = openProcFile(path);
    if (fd === 'exhausted') {
      // Never starve the rest of the recorder of fds: stop holding for good.
      this.#heldBudget = this.#held;
      return -1;
    }
    if (typeof fd === 'number') {
      this.#held++;
      this.#heldFds.add(fd);
    }
    return fd;
  }

  #release(fd: number): void {
    if (fd < 0) return;
    closeProcFile(fd);
    this.#held--;
    this.#heldFds.delete(fd);
  }

  #forget(memo: ProcMemo): void {
    this.#release(memo.statFd);
    this.#release(memo.schedFd);
    memo.statFd = -1;
    memo.schedFd = -1;
    this.#memos.delete(memo.pid);
  }

  /** Releases the procfs files held open between polls. The sampler can poll again afterwards. */
  close(): void {
    for (const memo of [...this.#memos.values()]) this.#forget(memo);
  }

  /** A full image from status, cmdline, exe and cwd; undefined when the process is gone. */
  #readImage(
    st: ProcStat,
    observer: boolean,
    kernel: boolean,
    argv?: WireBytes[],
    exe?: WireBytes | null,
  ): { image: ProcessImage; denied: boolean } | undefined {
    const root = this.#procRoot;
    const pid = st.pid;
    let denied = false;
    let argvRead = true;
    const status = readStatus(root, pid);
    if (isReadFailure(status)) return undefined;
    if (argv === undefined) {
      const raw = kernel ? [] : readCmdline(root, pid);
      if (raw === 'gone') return undefined;
      argvRead = raw !== 'denied';
      argv = raw === 'denied' ? [] : raw.map(toWireBytes);
    }
    if (exe === undefined) {
      const raw = kernel ? null : readExe(root, pid);
      if (raw === 'denied') denied = true;
      exe = raw === null || raw === 'denied' ? null : toWireBytes(raw);
    }
    const cwdRaw = readCwd(root, pid);
    if (cwdRaw === 'denied') denied = true;
    const image: ProcessImage = {
      pid,
      start_ticks: st.startTicks,
      start: this.#bootTimeUs + Math.round((st.startTicks * 1e6) / this.#clockTicks),
      ppid: st.ppid,
      parent_start_ticks: null,
      exe,
      comm: toWireBytes(st.comm),
      argv,
      cwd: cwdRaw === null || cwdRaw === 'denied' ? null : toWireBytes(cwdRaw),
      ruid: status.ruid,
      euid: status.euid,
      rgid: status.rgid,
      egid: status.egid,
      source: 'sample',
      observer,
      argv_source: 'proc',
      argv_complete: argvRead,
      ...readContextFields(root, pid),
    };
    return { image, denied };
  }

  /**
   * Reads cmdline and exe; on a change, a new image (status, cwd read again). True if it execed;
   * 'retry' when the argv read empty for the first time.
   */
  #recheckImage(memo: ProcMemo, st: ProcStat): boolean | 'retry' {
    const root = this.#procRoot;
    const rawArgv = readCmdline(root, memo.pid);
    if (isReadFailure(rawArgv)) return false;
    // Inside execve the new image's argv is not in place yet and reads empty. An exec with an empty
    // argv is real too (argc 0: the pkexec exploit), so a second empty read is believed.
    if (rawArgv.length === 0 && !memo.emptyArgvOnce) {
      memo.emptyArgvOnce = true;
      return 'retry';
    }
    memo.emptyArgvOnce = rawArgv.length === 0;
    const rawExe = readExe(root, memo.pid);
    const exe = rawExe === null || rawExe === 'denied' ? null : toWireBytes(rawExe);
    const argv = rawArgv.map(toWireBytes);
    const old = memo.image;
    if (
      sameWire(old.exe, exe) &&
      argv.length === old.argv.length &&
      argv.every((a, i) => sameWire(a, old.argv[i]))
    ) {
      return false;
    }
    const built = this.#readImage(st, old.observer, false, argv, exe);
    if (built === undefined) return false;
    memo.image = built.image;
    memo.denied = built.denied;
    // `ip netns exec`, `nsenter`: a namespace is usually entered right before an exec.
    memo.netns = readNetns(root, memo.pid);
    this.#fresh.push(built.image);
    return true;
  }

  /**
   * Whether a process that used CPU may have changed its fd table. The kernel gives the number of
   * open fds as the size of /proc/PID/fd (Linux 6.2+): one stat instead of a readdir and a readlink
   * per fd. A changed count is re-read at once; an unchanged one (the common case: a daemon that
   * wakes, works and sleeps) only every `fdBackoff` of its busy cycles, doubling up to 8 while its
   * table keeps not changing, so a close and reopen on the same count is seen within 8 of them.
   */
  #fdsMayHaveChanged(memo: ProcMemo): boolean {
    if (!this.#fdCountKnown) return true;
    const count = fdCount(this.#procRoot, memo.pid);
    if (count === null || count - this.#ownHeld(memo.pid) !== memo.fds.size) return true;
    return this.#cycle >= memo.nextFdRead;
  }

  /** How many of the pid's fds are the sampler's held files (see #heldFds): only this process's. */
  #ownHeld(pid: number): number {
    return pid === process.pid && this.#procRoot === DEFAULT_PROC_ROOT ? this.#heldFds.size : 0;
  }

  #rereadFds(memo: ProcMemo): void {
    if (memo.denied && memo.fds.size === 0 && this.live.filesOf(memo.key) === undefined) return;
    const root = this.#procRoot;
    const table = readFdTable(root, memo.pid);
    if (table === 'gone') return;
    if (table !== 'denied' && this.#ownHeld(memo.pid) > 0) for (const fd of this.#heldFds) table.delete(fd);
    memo.fdBackoff = table !== 'denied' && sameFdTable(memo.fds, table) ? Math.min(memo.fdBackoff * 2, 8) : 1;
    memo.nextFdRead = this.#cycle + memo.fdBackoff;
    const next = new Map<number, FileInfo>();
    if (table === 'denied') {
      memo.denied = true;
      memo.fds = new Map();
      this.#fdUpdates.push([memo, next]);
      return;
    }
    const prev = this.live.filesOf(memo.key);
    for (const [fd, raw] of table) {
      const oldRaw = memo.fds.get(fd);
      const old = prev?.get(fd);
      if (old && oldRaw?.equals(raw)) {
        next.set(fd, old);
        continue;
      }
      next.set(fd, {
        pid: memo.pid,
        start_ticks: memo.startTicks,
        fd,
        path: toWireBytes(raw),
        kind: classifyFdTarget(raw, () => isFdDirectory(root, memo.pid, fd)),
      });
    }
    memo.fds = table;
    this.#fdUpdates.push([memo, next]);
  }

  /** parent_start_ticks of the images made this cycle, once every live pid is known. */
  #linkParents(): void {
    for (const img of this.#fresh) {
      if (img.ppid === 0) continue;
      const parent = this.#memos.get(img.ppid);
      // A parent cannot start after its child: a later start is a reused pid, not the parent.
      if (parent !== undefined && parent.startTicks <= img.start_ticks)
        img.parent_start_ticks = parent.startTicks;
    }
  }

  /**
   * Processes another source put in the live state after this cycle listed /proc are not gone:
   * keep them unless /proc confirms they are.
   */
  #keepUnsampled(seen: Map<string, ProcessImage>): void {
    for (const [key, img] of this.live.processes) {
      if (seen.has(key)) continue;
      const memo = this.#memos.get(img.pid);
      if (memo !== undefined && memo.key === key) continue;
      const st = readStat(this.#procRoot, img.pid);
      if (!isReadFailure(st) && st.startTicks === img.start_ticks) seen.set(key, img);
    }
  }
}

function fdCount(procRoot: string, pid: number): number | null {
  try {
    return statSync(`${procRoot}/${pid}/fd`).size;
  } catch {
    return null;
  }
}

function sameFdTable(a: ReadonlyMap<number, Buffer>, b: ReadonlyMap<number, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [fd, raw] of b) if (!a.get(fd)?.equals(raw)) return false;
  return true;
}

function udpEndpoints(all: ReadonlyMap<string, EndpointInfo>): Map<string, EndpointInfo> {
  const out = new Map<string, EndpointInfo>();
  for (const [key, ep] of all) if (ep.proto === 'udp') out.set(key, ep);
  return out;
}

function sameWire(a: WireBytes | null, b: WireBytes | null): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a === 'string' || typeof b === 'string') return false;
  return a.b64 === b.b64;
}
