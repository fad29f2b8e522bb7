import { expressionBuilder, type Selectable } from 'kysely';
import type { ProcessesTable } from '../store/index.js';
import { parseArgv, toBase64 } from './window.js';

/** One program image of a process, as `pofr procs` shows it. Times are µs UTC. */
export interface ProcessRow {
  /** Row id; children point at it through parent_id. */
  readonly id: number;
  readonly parent_id: number | null;
  /** Host name. */
  readonly host: string;
  readonly host_id: string;
  readonly boot_id: string;
  readonly pid: number;
  readonly ppid: number;
  readonly start_ticks: number;
  readonly start: number;
  /** null while the image still runs (or ran until the record ends). */
  readonly end: number | null;
  /** exit | exec | keyframe */
  readonly end_reason: string | null;
  /** 0 for the image seen at start, 1.. for each later exec. */
  readonly exec_index: number;
  readonly exe: string | null;
  readonly exe_raw_b64: string | null;
  readonly comm: string;
  readonly argv: readonly string[];
  /** Exact arguments, each followed by a NUL, when they are not UTF-8. */
  readonly argv_raw_b64: string | null;
  readonly cmdline: string;
  readonly cwd: string | null;
  readonly cwd_raw_b64: string | null;
  readonly ruid: number;
  readonly euid: number;
  readonly rgid: number;
  readonly egid: number;
  readonly user: string | null;
  /** trace | sample */
  readonly source: string;
  /** True for the recorder's own processes. */
  readonly observer: boolean;
  /** probe (read at the program's first instruction), proc (/proc/PID/cmdline), event (gone: path only); null before exec tracing. */
  readonly argv_source: string | null;
  readonly argv_complete: boolean | null;
  /** The process's cgroup path; null when unknown (recorded before, or unreadable). */
  readonly cgroup: string | null;
  readonly cgroup_raw_b64: string | null;
  /** The docker/containerd/CRI-O/podman container id its cgroup names. */
  readonly container_id: string | null;
  /** Inodes of its pid, net, mnt and user namespaces (/proc/PID/ns/*). */
  readonly ns_pid: number | null;
  readonly ns_net: number | null;
  readonly ns_mnt: number | null;
  readonly ns_user: number | null;
  readonly open_ord: number;
  readonly close_ord: number | null;
}

/** The processes columns a ProcessRow is made from (select them from `processes as p`). */
export const PROCESS_COLUMNS = [
  'p.id',
  'p.parent_id',
  'p.host_id',
  'p.boot_id',
  'p.pid',
  'p.ppid',
  'p.start_ticks',
  'p.start',
  'p.end',
  'p.end_reason',
  'p.exec_index',
  'p.exe',
  'p.exe_raw',
  'p.comm',
  'p.argv',
  'p.argv_raw',
  'p.cmdline',
  'p.cwd',
  'p.cwd_raw',
  'p.ruid',
  'p.euid',
  'p.rgid',
  'p.egid',
  'p.user',
  'p.source',
  'p.observer',
  'p.argv_source',
  'p.argv_complete',
  'p.cgroup',
  'p.cgroup_raw',
  'p.container_id',
  'p.ns_pid',
  'p.ns_net',
  'p.ns_mnt',
  'p.ns_user',
  'p.open_ord',
  'p.close_ord',
] as const;

const held = expressionBuilder<{ p: Pick<ProcessesTable, 'observer'> }, 'p'>();

/**
 * Rows a process holds (files, endpoints), left-joined to it as `p`, that are not the recorder's
 * own: a row of no process on record counts as not the recorder's.
 */
export const NOT_OBSERVER_HELD = held.or([held('p.observer', 'is', null), held('p.observer', '=', 0)]);

type ProcessSelection = Omit<Selectable<ProcessesTable>, 'comm_raw'>;

export function toProcessRow(r: ProcessSelection, host: string): ProcessRow {
  return Object.freeze({
    id: r.id,
    parent_id: r.parent_id,
    host,
    host_id: r.host_id,
    boot_id: r.boot_id,
    pid: r.pid,
    ppid: r.ppid,
    start_ticks: r.start_ticks,
    start: r.start,
    end: r.end,
    end_reason: r.end_reason,
    exec_index: r.exec_index,
    exe: r.exe,
    exe_raw_b64: toBase64(r.exe_raw),
    comm: r.comm,
    argv: Object.freeze(parseArgv(r.argv)),
    argv_raw_b64: toBase64(r.argv_raw),
    cmdline: r.cmdline,
    cwd: r.cwd,
    cwd_raw_b64: toBase64(r.cwd_raw),
    ruid: r.ruid,
    euid: r.euid,
    rgid: r.rgid,
    egid: r.egid,
    user: r.user,
    source: r.source,
    observer: Number(r.observer) !== 0,
    argv_source: r.argv_source,
    argv_complete: r.argv_complete === null ? null : Number(r.argv_complete) !== 0,
    cgroup: r.cgroup,
    cgroup_raw_b64: toBase64(r.cgroup_raw),
    container_id: r.container_id,
    ns_pid: r.ns_pid === null ? null : Number(r.ns_pid),
    ns_net: r.ns_net === null ? null : Number(r.ns_net),
    ns_mnt: r.ns_mnt === null ? null : Number(r.ns_mnt),
    ns_user: r.ns_user === null ? null : Number(r.ns_user),
    open_ord: r.open_ord,
    close_ord: r.close_ord,
  });
}

const SHELL_SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes one argument the way a shell would need it, so the summary can be read back unambiguously. */
export function shellQuote(arg: string): string {
  if (SHELL_SAFE.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** "bash -c 'curl …' (uid 0 root)"; kernel threads without argv show as [comm]. */
export function describeProcess(p: Pick<ProcessRow, 'argv' | 'comm' | 'ruid' | 'euid' | 'user'>): string {
  const command = p.argv.length > 0 ? p.argv.map(shellQuote).join(' ') : `[${p.comm}]`;
  const who = `uid ${p.ruid}${p.user ? ` ${p.user}` : ''}${p.euid !== p.ruid ? `, euid ${p.euid}` : ''}`;
  return `${command} (${who})`;
}
