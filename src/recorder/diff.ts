import type {
  EndpointInfo,
  FileInfo,
  PofrRecord,
  ProcessImage,
  ProcRef,
  WireBytes,
} from '../protocol/index.js';
import type { LiveStateView } from './live-state.js';

/**
 * Pure diffs: the live state and a new observation in, records out. They know nothing of where
 * the observation came from (procfs today, tracefs later); the caller applies the records to its
 * LiveState.
 */

function sameBytes(a: WireBytes | null, b: WireBytes | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  if (typeof a === 'string' || typeof b === 'string') return false;
  return a.b64 === b.b64;
}

/** Same program image: exe and argv equal (the exec test; cwd and ids may change without exec). */
export function sameImage(a: ProcessImage, b: ProcessImage): boolean {
  if (a === b) return true;
  if (!sameBytes(a.exe, b.exe) || a.argv.length !== b.argv.length) return false;
  for (let i = 0; i < a.argv.length; i++) if (!sameBytes(a.argv[i], b.argv[i])) return false;
  return true;
}

/**
 * Processes: `seen` is every process present at time `t`, keyed by processKey. New keys start,
 * known keys with another exe or argv exec, and live keys missing from `seen` exit at `t` (their
 * open files closed first). Starts come oldest first so that parents precede their children.
 */
export function diffProcesses(
  live: LiveStateView,
  seen: ReadonlyMap<string, ProcessImage>,
  t: number,
): PofrRecord[] {
  const starts: ProcessImage[] = [];
  const out: PofrRecord[] = [];
  for (const [key, img] of seen) {
    const prev = live.processes.get(key);
    if (prev === undefined) starts.push(img);
    else if (prev !== img && !sameImage(prev, img)) out.push({ type: 'process_exec', t, proc: img });
  }
  starts.sort((a, b) => a.start_ticks - b.start_ticks || a.pid - b.pid);
  const records: PofrRecord[] = starts.map((proc) => ({ type: 'process_start', t, proc }));
  for (const r of out) records.push(r);
  for (const [key, img] of live.processes) {
    if (seen.has(key)) continue;
    const files = live.filesOf(key);
    if (files) {
      for (const fd of files.keys()) {
        records.push({ type: 'file_close', t, pid: img.pid, start_ticks: img.start_ticks, fd });
      }
    }
    records.push({ type: 'process_exit', t, pid: img.pid, start_ticks: img.start_ticks });
  }
  return records;
}

function sameFile(a: FileInfo, b: FileInfo): boolean {
  return a === b || (a.kind === b.kind && sameBytes(a.path, b.path));
}

/**
 * One process's fd table: fds gone close, new fds open, and an fd whose target changed (closed
 * and reopened between two looks) is a close then an open. Appends to `out`.
 */
export function diffFiles(
  ref: ProcRef,
  prev: ReadonlyMap<number, FileInfo> | undefined,
  next: ReadonlyMap<number, FileInfo>,
  t: number,
  out: PofrRecord[] = [],
): PofrRecord[] {
  if (prev) {
    for (const [fd, old] of prev) {
      const now = next.get(fd);
      if (now === undefined || !sameFile(old, now)) {
        out.push({ type: 'file_close', t, pid: ref.pid, start_ticks: ref.start_ticks, fd });
      }
    }
  }
  for (const [fd, file] of next) {
    const old = prev?.get(fd);
    if (old === undefined || !sameFile(old, file)) out.push({ type: 'file_open', t, file });
  }
  return out;
}

/** A socket as a table lists it (see NetRow in sources/net-table-reader.ts). */
export interface ObservedEndpoint {
  readonly proto: 'tcp' | 'udp';
  readonly family: 4 | 6;
  readonly localIp: string;
  readonly localPort: number;
  readonly remoteIp: string;
  readonly remotePort: number;
  readonly state: string;
  readonly inode: number;
  /** The network namespace whose table listed it; the same 4-tuple may exist in two of them. */
  readonly netns: number | null;
}

export interface EndpointDiff {
  records: PofrRecord[];
  /** Same endpoint, facts no record carries (inode, owner): for LiveState.reviseEndpoint. */
  revised: EndpointInfo[];
}

function inodeId(proto: string, family: number, inode: number): string {
  return `${proto}${family}:${inode}`;
}

function tupleId(
  proto: string,
  family: number,
  lip: string,
  lport: number,
  rip: string,
  rport: number,
  netns: number | null | undefined,
): string {
  // Inodes are unique system-wide; 4-tuples only within a network namespace (containers reuse them).
  const ns = netns === null || netns === undefined ? '' : `@${netns}`;
  return `${proto}${family}:[${lip}]:${lport}-[${rip}]:${rport}${ns}`;
}

/** A connected TCP socket: its 4-tuple names it across the inode coming and going. */
function isConnectedTcp(proto: string, remotePort: number): boolean {
  return proto === 'tcp' && remotePort !== 0;
}

/** States in which a socket can still sit in a listener's accept queue, with no file yet. */
const ACCEPTABLE = new Set(['SYN_RECV', 'NEW_SYN_RECV', 'ESTABLISHED', 'CLOSE_WAIT']);

/**
 * Whether a row with a live endpoint's 4-tuple is that endpoint. A socket closed by its process
 * loses its inode (FIN_WAIT, TIME_WAIT) and never gets one back; only a socket not yet accepted
 * gains one. Anything else (two different inodes, a TIME_WAIT followed by a fresh connection on
 * the same ports) is a new connection.
 */
function sameConnection(ep: EndpointInfo, row: ObservedEndpoint): boolean {
  if (ep.inode === row.inode || row.inode === 0) return true;
  return ep.inode === 0 && ep.pid === null && ACCEPTABLE.has(ep.state);
}

/**
 * Endpoints against the full socket list at `t`. An endpoint is followed by socket inode and, for
 * connected TCP, by 4-tuple as well: a connection keeps its key when the inode appears (accepted
 * from the backlog) or drops to 0 (closed, FIN_WAIT/TIME_WAIT), so its short tail stays joined to
 * the process that owned it. New keys are proto+family+inode, or proto+family+4-tuple when the
 * inode is 0, suffixed in the rare case the key is still taken.
 */
export function diffEndpoints(
  live: ReadonlyMap<string, EndpointInfo>,
  rows: readonly ObservedEndpoint[],
  ownerOf: (inode: number) => ProcRef | null,
  t: number,
  /** For a new endpoint whose owner is unknown: true leaves it out of this diff (see the sampler). */
  defer?: (row: ObservedEndpoint) => boolean,
): EndpointDiff {
  const byInode = new Map<string, string>();
  const byTuple = new Map<string, string>();
  for (const [key, ep] of live) {
    if (ep.inode !== 0) byInode.set(inodeId(ep.proto, ep.family, ep.inode), key);
    if (isConnectedTcp(ep.proto, ep.remote_port)) {
      byTuple.set(
        tupleId(ep.proto, ep.family, ep.local_ip, ep.local_port, ep.remote_ip, ep.remote_port, ep.netns),
        key,
      );
    }
  }
  const matched = new Set<string>();
  const opens: PofrRecord[] = [];
  const changes: PofrRecord[] = [];
  const revised: EndpointInfo[] = [];
  for (const row of rows) {
    let key = row.inode !== 0 ? byInode.get(inodeId(row.proto, row.family, row.inode)) : undefined;
    if (key === undefined && isConnectedTcp(row.proto, row.remotePort)) {
      const k = byTuple.get(
        tupleId(row.proto, row.family, row.localIp, row.localPort, row.remoteIp, row.remotePort, row.netns),
      );
      const ep = k === undefined ? undefined : live.get(k);
      if (ep && sameConnection(ep, row)) key = k;
    }
    if (key !== undefined && matched.has(key)) key = undefined;
    if (key !== undefined) {
      matched.add(key);
      const ep = live.get(key)!;
      if (ep.state !== row.state) changes.push({ type: 'endpoint_state', t, key, state: row.state });
      const owner = ep.pid === null && row.inode !== 0 ? ownerOf(row.inode) : null;
      if (ep.inode !== row.inode || owner !== null) {
        revised.push({
          ...ep,
          state: row.state,
          inode: row.inode,
          pid: owner ? owner.pid : ep.pid,
          start_ticks: owner ? owner.start_ticks : ep.start_ticks,
        });
      }
      continue;
    }
    const owner = row.inode !== 0 ? ownerOf(row.inode) : null;
    if (owner === null && defer?.(row)) continue;
    const base =
      row.inode !== 0
        ? inodeId(row.proto, row.family, row.inode)
        : tupleId(row.proto, row.family, row.localIp, row.localPort, row.remoteIp, row.remotePort, row.netns);
    let newKey = base;
    for (let n = 2; live.has(newKey) || matched.has(newKey); n++) newKey = `${base}#${n}`;
    matched.add(newKey);
    opens.push({
      type: 'endpoint_open',
      t,
      endpoint: {
        key: newKey,
        pid: owner ? owner.pid : null,
        start_ticks: owner ? owner.start_ticks : null,
        proto: row.proto,
        family: row.family,
        local_ip: row.localIp,
        local_port: row.localPort,
        remote_ip: row.remoteIp,
        remote_port: row.remotePort,
        state: row.state,
        inode: row.inode,
        netns: row.netns,
      },
    });
  }
  const records: PofrRecord[] = [];
  for (const key of live.keys()) if (!matched.has(key)) records.push({ type: 'endpoint_close', t, key });
  for (const r of changes) records.push(r);
  for (const r of opens) records.push(r);
  return { records, revised };
}
