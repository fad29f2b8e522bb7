import {
  type EndpointInfo,
  EXEC_CHANGE_FIELDS,
  type FileInfo,
  type PofrRecord,
  type ProcessImage,
  type ProcRef,
  type RecordOf,
} from '../protocol/index.js';

/** The key of a process on its host and boot: a reused pid has another start_ticks. */
export function processKey(pid: number, startTicks: number): string {
  return `${pid}:${startTicks}`;
}

/** What the diff functions read: the recorder's current belief about the host. */
export interface LiveStateView {
  readonly processes: ReadonlyMap<string, ProcessImage>;
  readonly endpoints: ReadonlyMap<string, EndpointInfo>;
  filesOf(key: string): ReadonlyMap<number, FileInfo> | undefined;
  /** The process holding the socket with this inode, when one is known. */
  socketOwner(inode: number): ProcRef | null;
}

/**
 * The one owner of the recorder's live state: processes, their open files, network endpoints.
 * It changes only by applying records (what the server will also apply), so every source, the
 * procfs sampler and a tracefs source alike, feeds the same table the same way; the one exception
 * is `reviseEndpoint`, for facts the protocol has no record for (an endpoint's inode or owner
 * learned after it opened), which matter to later diffs and keyframes only.
 *
 * @example
 * const live = new LiveState();
 * live.apply(diffProcesses(live, seen, now));
 * const kf = live.keyframe(now);
 */
export class LiveState implements LiveStateView {
  readonly #processes = new Map<string, ProcessImage>();
  /** pid → key of the live process holding it (a pid names one live process at a time). */
  readonly #byPid = new Map<number, string>();
  readonly #files = new Map<string, Map<number, FileInfo>>();
  readonly #endpoints = new Map<string, EndpointInfo>();
  /** socket inode → holders, in the order their fds were first seen (usually parent first). */
  readonly #socketHolders = new Map<number, ProcRef[]>();
  /**
   * Images the record stream states whole (a process_start, process_exec, process_fork or
   * process_exec_delta made them), so the server holds them as they are: a fork of such a parent can be sent as a
   * process_fork. A cred_change makes a new image the server never stores as a row.
   */
  readonly #stated = new WeakSet<ProcessImage>();
  #fileCount = 0;

  get processes(): ReadonlyMap<string, ProcessImage> {
    return this.#processes;
  }

  get endpoints(): ReadonlyMap<string, EndpointInfo> {
    return this.#endpoints;
  }

  get fileCount(): number {
    return this.#fileCount;
  }

  /** True when `img` is an image the records stated whole (see #stated): its forks may be process_fork records. */
  isStated(img: ProcessImage): boolean {
    return this.#stated.has(img);
  }

  /** The live process with this pid, if any. */
  processOfPid(pid: number): ProcessImage | undefined {
    const key = this.#byPid.get(pid);
    return key === undefined ? undefined : this.#processes.get(key);
  }

  filesOf(key: string): ReadonlyMap<number, FileInfo> | undefined {
    return this.#files.get(key);
  }

  socketOwner(inode: number): ProcRef | null {
    const holders = this.#socketHolders.get(inode);
    return holders && holders.length > 0 ? holders[0] : null;
  }

  apply(records: Iterable<PofrRecord>): void {
    for (const r of records) this.#applyOne(r);
  }

  /** Records a fact no record carries: a known endpoint's inode, state or owner, same key. */
  reviseEndpoint(info: EndpointInfo): void {
    if (this.#endpoints.has(info.key)) this.#endpoints.set(info.key, info);
  }

  /** The full current state as a keyframe record. */
  keyframe(t: number): RecordOf<'keyframe'> {
    const files: FileInfo[] = [];
    for (const table of this.#files.values()) for (const f of table.values()) files.push(f);
    return {
      type: 'keyframe',
      t,
      processes: [...this.#processes.values()],
      files,
      endpoints: [...this.#endpoints.values()],
    };
  }

  #applyOne(r: PofrRecord): void {
    switch (r.type) {
      case 'process_start':
      case 'process_exec': {
        const key = processKey(r.proc.pid, r.proc.start_ticks);
        this.#processes.set(key, r.proc);
        this.#byPid.set(r.proc.pid, key);
        this.#stated.add(r.proc);
        break;
      }
      case 'process_fork': {
        const parent = this.#processes.get(processKey(r.ppid, r.parent_start_ticks));
        // Only made for a parent this state holds; one it lacks leaves nothing to copy (the server
        // says the same of a parent it lacks).
        if (parent === undefined) break;
        const img = forkedImage(parent, r);
        const key = processKey(r.pid, r.start_ticks);
        this.#processes.set(key, img);
        this.#byPid.set(r.pid, key);
        this.#stated.add(img);
        break;
      }
      case 'process_exec_delta': {
        const key = processKey(r.pid, r.start_ticks);
        const before = this.#processes.get(key);
        // Made only for a process this state holds (the server says the same of one it lacks).
        if (before === undefined) break;
        const img = execDeltaImage(before, r);
        this.#processes.set(key, img);
        this.#byPid.set(r.pid, key);
        this.#stated.add(img);
        break;
      }
      case 'process_exit':
        this.#dropProcess(processKey(r.pid, r.start_ticks));
        break;
      case 'file_open':
        this.#openFile(r.file);
        break;
      case 'file_close': {
        const table = this.#files.get(processKey(r.pid, r.start_ticks));
        const old = table?.get(r.fd);
        if (table && old) this.#closeFile(table, old);
        break;
      }
      case 'endpoint_open':
        this.#endpoints.set(r.endpoint.key, r.endpoint);
        break;
      case 'endpoint_state': {
        const ep = this.#endpoints.get(r.key);
        if (ep) this.#endpoints.set(r.key, { ...ep, state: r.state });
        break;
      }
      case 'endpoint_close':
        this.#endpoints.delete(r.key);
        break;
      case 'keyframe':
        this.#replaceAll(r);
        break;
      case 'cred_change': {
        // The image keeps its program; its ids are those after the change (keyframes carry them).
        const key = processKey(r.pid, r.start_ticks);
        const img = this.#processes.get(key);
        if (img) this.#processes.set(key, { ...img, ...r.new });
        break;
      }
      case 'inventory':
      case 'gap':
        break;
    }
  }

  #dropProcess(key: string): void {
    const img = this.#processes.get(key);
    if (img !== undefined && this.#byPid.get(img.pid) === key) this.#byPid.delete(img.pid);
    this.#processes.delete(key);
    const table = this.#files.get(key);
    if (!table) return;
    for (const f of [...table.values()]) this.#closeFile(table, f);
    this.#files.delete(key);
  }

  #openFile(file: FileInfo): void {
    const key = processKey(file.pid, file.start_ticks);
    let table = this.#files.get(key);
    if (!table) {
      table = new Map();
      this.#files.set(key, table);
    }
    const old = table.get(file.fd);
    if (old) this.#closeFile(table, old);
    table.set(file.fd, file);
    this.#fileCount++;
    const inode = fileSocketInode(file);
    if (inode !== 0) {
      const holders = this.#socketHolders.get(inode);
      const ref = { pid: file.pid, start_ticks: file.start_ticks };
      if (holders) {
        if (!holders.some((h) => h.pid === ref.pid && h.start_ticks === ref.start_ticks)) holders.push(ref);
      } else {
        this.#socketHolders.set(inode, [ref]);
      }
    }
  }

  #closeFile(table: Map<number, FileInfo>, file: FileInfo): void {
    table.delete(file.fd);
    this.#fileCount--;
    const inode = fileSocketInode(file);
    if (inode === 0) return;
    const holders = this.#socketHolders.get(inode);
    if (!holders) return;
    // The process may hold the same socket on another fd (dup): it stays a holder then.
    for (const f of table.values()) if (fileSocketInode(f) === inode) return;
    const left = holders.filter((h) => !(h.pid === file.pid && h.start_ticks === file.start_ticks));
    if (left.length === 0) this.#socketHolders.delete(inode);
    else this.#socketHolders.set(inode, left);
  }

  #replaceAll(kf: RecordOf<'keyframe'>): void {
    this.#processes.clear();
    this.#byPid.clear();
    this.#files.clear();
    this.#endpoints.clear();
    this.#socketHolders.clear();
    this.#fileCount = 0;
    for (const p of kf.processes) {
      const key = processKey(p.pid, p.start_ticks);
      this.#processes.set(key, p);
      this.#byPid.set(p.pid, key);
    }
    for (const f of kf.files) this.#openFile(f);
    for (const e of kf.endpoints) this.#endpoints.set(e.key, e);
  }
}

function fileSocketInode(file: FileInfo): number {
  if (file.kind !== 'socket' || typeof file.path !== 'string') return 0;
  const p = file.path;
  if (!p.startsWith('socket:[')) return 0;
  const n = Number(p.slice(8, -1));
  return Number.isInteger(n) ? n : 0;
}

/** The image a process_fork record stands for: its parent's, under its own identity and start. */
export function forkedImage(parent: ProcessImage, r: RecordOf<'process_fork'>): ProcessImage {
  return {
    ...parent,
    pid: r.pid,
    start_ticks: r.start_ticks,
    start: r.t,
    ppid: r.ppid,
    parent_start_ticks: r.parent_start_ticks,
    source: 'trace',
    observer: r.observer,
  };
}

/**
 * The image a process_exec_delta record stands for: the image before the exec with the program's
 * fields and whatever else the record names replaced.
 */
export function execDeltaImage(before: ProcessImage, r: RecordOf<'process_exec_delta'>): ProcessImage {
  const img: ProcessImage = {
    ...before,
    exe: r.exe,
    comm: r.comm,
    argv: r.argv,
    argv_source: r.argv_source,
    argv_complete: r.argv_complete,
    source: 'trace',
  };
  const changed = img as unknown as Record<string, unknown>;
  const from = r as unknown as Record<string, unknown>;
  for (const f of EXEC_CHANGE_FIELDS) if (from[f] !== undefined) changed[f] = from[f];
  return img;
}
