import { readlinkSync } from 'node:fs';
import { type ProcessImage, toWireBytes } from '../../protocol/index.js';
import { isReadFailure, readProcFile } from './procfs-reader.js';

/**
 * Where a process runs: its cgroup, the container that cgroup names, and its namespaces. Read from
 * /proc/PID/cgroup and the /proc/PID/ns/* links at a process's first sight and at each exec (a fork
 * inherits them; a container runtime moves its process into the container's cgroup and namespaces
 * before it execs the container's program).
 */
export interface ProcessContext {
  /** The cgroup path (the unified hierarchy's, or the one naming a container); null when unreadable. */
  readonly cgroup: Buffer | null;
  /** The 64-hex container id a docker, containerd/Kubernetes, CRI-O or podman cgroup names. */
  readonly containerId: string | null;
  /** Inode numbers of /proc/PID/ns/{pid,net,mnt,user}; null when unreadable. */
  readonly nsPid: number | null;
  readonly nsNet: number | null;
  readonly nsMnt: number | null;
  readonly nsUser: number | null;
}

const ID = /^[0-9a-f]{64}$/;
/** Runtime prefixes of a container's own scope; `libpod-conmon-` is podman's monitor, not the container. */
const SCOPE = /^(?:docker|cri-containerd|crio|libpod|containerd)-([0-9a-f]{64})\.scope$/;

/**
 * The container id a cgroup path names, or null. The deepest component that is one wins: docker's
 * `/system.slice/docker-ID.scope` and `/docker/ID`, Kubernetes' `/kubepods/…/podUID/ID` and
 * `kubepods-….slice/cri-containerd-ID.scope`, CRI-O's `crio-ID.scope`, podman's
 * `libpod-ID.scope[/container]`.
 *
 * @example
 * containerIdOf('/system.slice/docker-' + 'a'.repeat(64) + '.scope') // 'aaa…a'
 */
export function containerIdOf(cgroup: string): string | null {
  const parts = cgroup.split('/');
  for (let i = parts.length - 1; i >= 0; i--) {
    const p = parts[i];
    if (ID.test(p)) return p;
    const m = SCOPE.exec(p);
    if (m) return m[1];
  }
  return null;
}

/**
 * The cgroup path to record from /proc/PID/cgroup's lines (`id:controllers:path`): the one naming
 * a container if any (on a hybrid v1/v2 host the runtime may use a v1 hierarchy), else the
 * unified hierarchy's (`0::`), else systemd's named one, else the first.
 */
export function pickCgroup(text: string): string | null {
  let unified: string | null = null;
  let systemd: string | null = null;
  let first: string | null = null;
  for (const line of text.split('\n')) {
    const a = line.indexOf(':');
    const b = a < 0 ? -1 : line.indexOf(':', a + 1);
    if (b < 0) continue;
    const path = line.slice(b + 1);
    if (containerIdOf(path) !== null) return path;
    const id = line.slice(0, a);
    const ctl = line.slice(a + 1, b);
    if (id === '0' && ctl === '') unified ??= path;
    else if (ctl === 'name=systemd') systemd ??= path;
    first ??= path;
  }
  return unified ?? systemd ?? first;
}

function nsInode(procRoot: string, pid: number, ns: string): number | null {
  try {
    const link = readlinkSync(`${procRoot}/${pid}/ns/${ns}`);
    const open = link.indexOf('[');
    const n = open < 0 ? Number.NaN : Number(link.slice(open + 1, -1));
    return Number.isSafeInteger(n) ? n : null;
  } catch {
    return null;
  }
}

/** Reads a process's context; every part that cannot be read (gone, not root) is null. */
export function readProcessContext(procRoot: string, pid: number): ProcessContext {
  const raw = readProcFile(`${procRoot}/${pid}/cgroup`);
  // Copy out of the shared scratch buffer before any other read reuses it.
  const text = isReadFailure(raw) ? null : raw.toString('latin1');
  const picked = text === null ? null : pickCgroup(text);
  return {
    cgroup: picked === null ? null : Buffer.from(picked, 'latin1'),
    containerId: picked === null ? null : containerIdOf(picked),
    nsPid: nsInode(procRoot, pid, 'pid'),
    nsNet: nsInode(procRoot, pid, 'net'),
    nsMnt: nsInode(procRoot, pid, 'mnt'),
    nsUser: nsInode(procRoot, pid, 'user'),
  };
}

/** The context fields of a process image. */
export type ContextFields = Pick<
  ProcessImage,
  'cgroup' | 'container_id' | 'ns_pid' | 'ns_net' | 'ns_mnt' | 'ns_user'
>;

/** A process's context as the fields of its image. */
export function readContextFields(procRoot: string, pid: number): ContextFields {
  const c = readProcessContext(procRoot, pid);
  return {
    cgroup: c.cgroup === null ? null : toWireBytes(c.cgroup),
    container_id: c.containerId,
    ns_pid: c.nsPid,
    ns_net: c.nsNet,
    ns_mnt: c.nsMnt,
    ns_user: c.nsUser,
  };
}
