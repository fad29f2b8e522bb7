import { formatIpv6 } from '../net-table-reader.js';
import {
  dynamicFieldLength,
  type EventField,
  type EventFormat,
  readCharArrayField,
  readDynamicField,
  readIntField,
  requireField,
} from './event-format.js';

/**
 * The kernel events the recorder reads, decoded from their binary records into plain values.
 * Times are trace-clock nanoseconds (`boot`); pids are the kernel's task ids (a thread's own id, the
 * thread-group id of a process leader).
 */
export type KernelEvent =
  | TaskEvent
  | ExecEvent
  | ExitEvent
  | ArgvEvent
  | TcpEvent
  | MarkerEvent
  | PathProbeEvent
  | SyscallExitEvent
  | SyscallArgsEvent
  | SockaddrProbeEvent
  | CloseEvent
  | ContextChangeEvent;

/**
 * A task whose cgroup or namespaces may differ from its process image's since: a successful
 * `unshare` or `setns` (the calling thread), or `cgroup:cgroup_attach_task` (the task moved).
 */
export interface ContextChangeEvent {
  readonly kind: 'context';
  readonly ts: number;
  readonly tid: number;
}

/** A glibc `connect` or `sendto` probe: the descriptor and the destination it names. */
export interface SockaddrProbeEvent {
  readonly kind: 'sockaddr';
  readonly ts: number;
  readonly tid: number;
  readonly func: string;
  readonly fd: number;
  /** 4 or 6; null for another family, or no address (sendto on a connected socket). */
  readonly family: 4 | 6 | null;
  readonly ip: string;
  readonly port: number;
}

/** `syscalls:sys_enter_<call>` of a call whose arguments are plain integers (setuid, setresgid, …). */
export interface SyscallArgsEvent {
  readonly kind: 'sysenter';
  readonly ts: number;
  readonly tid: number;
  readonly call: string;
  /** The arguments in the order asked for, each as an unsigned 32-bit value. */
  readonly args: readonly number[];
}

/**
 * A glibc probe whose argument is a path or a name (`open`, `openat`, `creat`; `getaddrinfo`, …),
 * read at the function's first instruction: `func` names the probe's function.
 */
export interface PathProbeEvent {
  readonly kind: 'path';
  readonly ts: number;
  readonly tid: number;
  readonly func: string;
  readonly path: Buffer;
  /** openat's directory descriptor (AT_FDCWD -100 for the cwd); null for the others. */
  readonly dirfd: number | null;
}

/** `syscalls:sys_exit_<call>`: what a system call returned (a new fd, 0, or -errno). */
export interface SyscallExitEvent {
  readonly kind: 'sysexit';
  readonly ts: number;
  readonly tid: number;
  readonly call: string;
  readonly ret: number;
}

/** `syscalls:sys_enter_close`. */
export interface CloseEvent {
  readonly kind: 'close';
  readonly ts: number;
  readonly tid: number;
  readonly fd: number;
}

/** A new task: `task:task_newtask` (clone flags tell a thread), or `sched:sched_process_fork`. */
export interface TaskEvent {
  readonly kind: 'task';
  readonly ts: number;
  readonly tid: number;
  /** The thread that cloned it. */
  readonly parentTid: number;
  readonly comm: Buffer;
  /** CLONE_THREAD: a thread of its creator's process; null when the event does not say (fork). */
  readonly thread: boolean | null;
  /**
   * CLONE_NEW{NS,CGROUP,USER,PID,NET} or CLONE_INTO_CGROUP: the child starts in namespaces or a
   * cgroup of its own (null: not said).
   */
  readonly newNamespaces: boolean | null;
}

/** `sched:sched_process_exec`: `pid` is the thread-group id after the exec. */
export interface ExecEvent {
  readonly kind: 'exec';
  readonly ts: number;
  readonly pid: number;
  /** The thread that called execve; differs from pid when a non-leader thread exec'd. */
  readonly oldPid: number;
  readonly filename: Buffer;
}

/** `sched:sched_process_exit`, per thread; `groupDead` when it was the last thread of its process. */
export interface ExitEvent {
  readonly kind: 'exit';
  readonly ts: number;
  readonly tid: number;
  readonly comm: Buffer;
  /** null on kernels whose event lacks the field. */
  readonly groupDead: boolean | null;
}

/** The argv probe at a new program's first instruction (see argv-probe.ts). */
export interface ArgvEvent {
  readonly kind: 'argv';
  readonly ts: number;
  readonly tid: number;
  readonly argc: number;
  readonly argv: Buffer[];
  /** Every one of the argc strings fetched whole. */
  readonly complete: boolean;
}

/** `sock:inet_sock_set_state` for TCP. */
export interface TcpEvent {
  readonly kind: 'tcp';
  readonly ts: number;
  /** The task running when the state changed: the socket's owner only for the calls a process makes. */
  readonly tid: number;
  /** Raised in interrupt context (softirq): `tid` is whatever the CPU happened to run. */
  readonly interrupt: boolean;
  /** The kernel's socket address: the socket's identity while it lives. */
  readonly sk: string;
  readonly oldState: number;
  readonly newState: number;
  readonly family: 4 | 6;
  readonly localIp: string;
  readonly localPort: number;
  readonly remoteIp: string;
  readonly remotePort: number;
}

/** A line written to the instance's trace_marker (`ftrace:print`). */
export interface MarkerEvent {
  readonly kind: 'marker';
  readonly ts: number;
  /** The writer's thread id as the kernel (the initial PID namespace) numbers it. */
  readonly tid: number;
  readonly text: string;
}

// trace_entry.flags: hard irq, soft irq, NMI (include/linux/trace_events.h).
const INTERRUPT_FLAGS = 0x08 | 0x10 | 0x40;
const CLONE_THREAD = 0x0001_0000;
/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET (>>> 0: unsigned). */
const CLONE_NEW_NAMESPACES = (0x0002_0000 | 0x0200_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000) >>> 0;
/** CLONE_INTO_CGROUP (1 << 33), as a bit of the flags' high 32 bits. */
const CLONE_INTO_CGROUP_HIGH = 0x2;
const AF_INET = 2;
const AF_INET6 = 10;

type Decode = (ts: number, b: Buffer, o: number, end: number) => KernelEvent | null;

export interface KernelFormats {
  readonly newtask?: EventFormat;
  readonly fork?: EventFormat;
  readonly exec: EventFormat;
  readonly exit: EventFormat;
  readonly tcp?: EventFormat;
  readonly marker?: EventFormat;
}

/**
 * Turns raw records into KernelEvents, for the formats read from the running kernel; argv probes
 * are added as the recorder defines them (one per interpreter).
 */
export class EventDecoder {
  readonly #byId = new Map<number, Decode>();
  readonly #common: EventField;
  readonly #flags: EventField;

  constructor(formats: KernelFormats) {
    this.#common = requireField(formats.exec, 'common_pid');
    this.#flags = requireField(formats.exec, 'common_flags');
    if (formats.newtask) this.#byId.set(formats.newtask.id, newtaskDecoder(formats.newtask, this.#common));
    if (formats.fork) this.#byId.set(formats.fork.id, forkDecoder(formats.fork));
    this.#byId.set(formats.exec.id, execDecoder(formats.exec));
    this.#byId.set(formats.exit.id, exitDecoder(formats.exit));
    if (formats.tcp) this.#byId.set(formats.tcp.id, tcpDecoder(formats.tcp, this.#common, this.#flags));
    if (formats.marker) this.#byId.set(formats.marker.id, markerDecoder(formats.marker, this.#common));
  }

  addArgvProbe(probe: ArgvProbeFormat): void {
    const common = this.#common;
    this.#byId.set(probe.format.id, (ts, b, o, end) => decodeArgv(probe, ts, b, o, end, common));
  }

  /** A glibc probe whose field `path` is a string (and `dirfd`, when the format has it). */
  addPathProbe(format: EventFormat, func: string): void {
    const common = this.#common;
    const path = requireField(format, 'path');
    const dirfd = format.fields.get('dirfd');
    this.#byId.set(format.id, (ts, b, o, end) => ({
      kind: 'path',
      ts,
      tid: readIntField(b, o, common),
      func,
      path: Buffer.from(readDynamicField(b, o, path, end) ?? Buffer.alloc(0)),
      dirfd: dirfd === undefined ? null : readIntField(b, o, dirfd),
    }));
  }

  /** A `syscalls:sys_exit_*` event: its return value. */
  addSyscallExit(format: EventFormat, call: string): void {
    const common = this.#common;
    const ret = requireField(format, 'ret');
    this.#byId.set(format.id, (ts, b, o) => ({
      kind: 'sysexit',
      ts,
      tid: readIntField(b, o, common),
      call,
      ret: readIntField(b, o, ret),
    }));
  }

  /** A sockaddr probe (fields `fd`, `fam`, `port`, `a4`, `a6a`, `a6b`: see udp-events.ts). */
  addSockaddrProbe(format: EventFormat, func: string): void {
    const common = this.#common;
    const [fd, fam, port, a4, a6a, a6b] = ['fd', 'fam', 'port', 'a4', 'a6a', 'a6b'].map((n) =>
      requireField(format, n),
    );
    this.#byId.set(format.id, (ts, b, o) => {
      const family = readIntField(b, o, fam);
      const v4 = family === AF_INET;
      const v6 = family === AF_INET6;
      let ip = '';
      if (v4) ip = ipv4(b, o + a4.offset);
      else if (v6) {
        // The two u64 fetches hold sin6_addr's 16 bytes in memory order, as the kernel copied them.
        const raw = Buffer.concat([
          b.subarray(o + a6a.offset, o + a6a.offset + 8),
          b.subarray(o + a6b.offset, o + a6b.offset + 8),
        ]);
        ip = formatIpv6(raw);
      }
      return {
        kind: 'sockaddr',
        ts,
        tid: readIntField(b, o, common),
        func,
        fd: readIntField(b, o, fd),
        family: v4 ? 4 : v6 ? 6 : null,
        ip,
        // sin_port is in network byte order.
        port: b.readUInt16BE(o + port.offset),
      };
    });
  }

  /** A `syscalls:sys_enter_*` event: the named integer arguments. */
  addSyscallArgs(format: EventFormat, call: string, names: readonly string[]): void {
    const common = this.#common;
    const fields = names.map((n) => requireField(format, n));
    this.#byId.set(format.id, (ts, b, o) => ({
      kind: 'sysenter',
      ts,
      tid: readIntField(b, o, common),
      call,
      // The fields are 8 bytes wide; ids are 32-bit, and (uid_t)-1 means "leave as is".
      args: fields.map((f) => readIntField(b, o, f) % 0x1_0000_0000),
    }));
  }

  /**
   * An event after which a task's context is to be read again: `field` names the task (`pid` for
   * cgroup_attach_task, `common_pid` for the calling thread of unshare/setns).
   */
  addContextChange(format: EventFormat, field: string): void {
    const task = requireField(format, field);
    this.#byId.set(format.id, (ts, b, o) => ({ kind: 'context', ts, tid: readIntField(b, o, task) }));
  }

  /** `syscalls:sys_enter_close`. */
  addCloseEnter(format: EventFormat): void {
    const common = this.#common;
    const fd = requireField(format, 'fd');
    this.#byId.set(format.id, (ts, b, o) => ({
      kind: 'close',
      ts,
      tid: readIntField(b, o, common),
      // The field is 8 bytes wide; an fd is an int.
      fd: readIntField(b, o, fd) % 0x1_0000_0000,
    }));
  }

  /** The event, or null for one it does not know (or a socket that is not TCP). */
  decode(ts: number, page: Buffer, offset: number, length: number): KernelEvent | null {
    const decode = this.#byId.get(page.readUInt16LE(offset));
    return decode === undefined ? null : decode(ts, page, offset, offset + length);
  }
}

/** The clone flags (64 bits wide for clone3) that start a child outside its parent's context. */
function newContext(flags: number): boolean {
  const low = flags % 0x1_0000_0000;
  const high = Math.floor(flags / 0x1_0000_0000);
  return (low & CLONE_NEW_NAMESPACES) !== 0 || (high & CLONE_INTO_CGROUP_HIGH) !== 0;
}

function newtaskDecoder(f: EventFormat, common: EventField): Decode {
  const pid = requireField(f, 'pid');
  const comm = requireField(f, 'comm');
  const flags = requireField(f, 'clone_flags');
  return (ts, b, o, end) => ({
    kind: 'task',
    ts,
    tid: readIntField(b, o, pid),
    parentTid: readIntField(b, o, common),
    comm: Buffer.from(stringField(b, o, comm, end)),
    // Only the low 32 bits hold the CLONE_* flags that matter here.
    thread: ((readIntField(b, o, flags) % 0x1_0000_0000) & CLONE_THREAD) !== 0,
    newNamespaces: newContext(readIntField(b, o, flags)),
  });
}

function forkDecoder(f: EventFormat): Decode {
  const parent = requireField(f, 'parent_pid');
  const child = requireField(f, 'child_pid');
  const comm = requireField(f, 'child_comm');
  return (ts, b, o, end) => ({
    kind: 'task',
    ts,
    tid: readIntField(b, o, child),
    parentTid: readIntField(b, o, parent),
    comm: Buffer.from(stringField(b, o, comm, end)),
    thread: null,
    newNamespaces: null,
  });
}

function execDecoder(f: EventFormat): Decode {
  const pid = requireField(f, 'pid');
  const oldPid = requireField(f, 'old_pid');
  const filename = requireField(f, 'filename');
  return (ts, b, o, end) => ({
    kind: 'exec',
    ts,
    pid: readIntField(b, o, pid),
    oldPid: readIntField(b, o, oldPid),
    filename: Buffer.from(readDynamicField(b, o, filename, end) ?? Buffer.alloc(0)),
  });
}

function exitDecoder(f: EventFormat): Decode {
  const pid = requireField(f, 'pid');
  const comm = requireField(f, 'comm');
  const groupDead = f.fields.get('group_dead');
  return (ts, b, o, end) => ({
    kind: 'exit',
    ts,
    tid: readIntField(b, o, pid),
    comm: Buffer.from(stringField(b, o, comm, end)),
    groupDead: groupDead === undefined ? null : readIntField(b, o, groupDead) !== 0,
  });
}

function tcpDecoder(f: EventFormat, common: EventField, flagsField: EventField): Decode {
  const sk = requireField(f, 'skaddr');
  const oldState = requireField(f, 'oldstate');
  const newState = requireField(f, 'newstate');
  const sport = requireField(f, 'sport');
  const dport = requireField(f, 'dport');
  const family = requireField(f, 'family');
  const protocol = requireField(f, 'protocol');
  const saddr = requireField(f, 'saddr');
  const daddr = requireField(f, 'daddr');
  const saddr6 = requireField(f, 'saddr_v6');
  const daddr6 = requireField(f, 'daddr_v6');
  return (ts, b, o) => {
    // IPPROTO_TCP only: the event also reports SCTP and MPTCP sockets.
    if (readIntField(b, o, protocol) !== 6) return null;
    const fam = readIntField(b, o, family);
    if (fam !== AF_INET && fam !== AF_INET6) return null;
    const v4 = fam === AF_INET;
    return {
      kind: 'tcp',
      ts,
      tid: readIntField(b, o, common),
      interrupt: (b.readUInt8(o + flagsField.offset) & INTERRUPT_FLAGS) !== 0,
      sk: b.readBigUInt64LE(o + sk.offset).toString(16),
      oldState: readIntField(b, o, oldState),
      newState: readIntField(b, o, newState),
      family: v4 ? 4 : 6,
      localIp: v4 ? ipv4(b, o + saddr.offset) : ipv6(b, o + saddr6.offset),
      localPort: readIntField(b, o, sport),
      remoteIp: v4 ? ipv4(b, o + daddr.offset) : ipv6(b, o + daddr6.offset),
      remotePort: readIntField(b, o, dport),
    };
  };
}

function markerDecoder(f: EventFormat, common: EventField): Decode {
  const buf = requireField(f, 'buf');
  return (ts, b, o, end) => ({
    kind: 'marker',
    ts,
    tid: readIntField(b, o, common),
    text: stringField(b, o, buf, end).toString('latin1').trimEnd(),
  });
}

/** A char array field, or a dynamic one: the kernel changed some (comm) from one to the other. */
function stringField(b: Buffer, o: number, f: EventField, end: number): Buffer {
  if (f.dataLoc || f.relLoc) return readDynamicField(b, o, f, end) ?? Buffer.alloc(0);
  if (f.size === 0) {
    // A trailing char[] (ftrace:print's buf): up to the first NUL or the record's end.
    const start = o + f.offset;
    const nul = b.indexOf(0, start);
    return b.subarray(start, nul < 0 || nul > end ? end : nul);
  }
  return readCharArrayField(b, o, f);
}

function ipv4(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** Formatted as the socket-table reader does, so that both sources name an address alike. */
function ipv6(b: Buffer, at: number): string {
  return formatIpv6(b.subarray(at, at + 16));
}

/** The fields of one argv probe's event, as argv-probe.ts defines them. */
export interface ArgvProbeFormat {
  readonly format: EventFormat;
  /** How many argv strings it fetches. */
  readonly slots: number;
  readonly argc: EventField;
  /** argv[i] for i < slots, as strings. */
  readonly strings: readonly EventField[];
  /** The pointers argv[0..slots] (one past the strings: argv[slots] bounds the last one). */
  readonly pointers: readonly EventField[];
}

function decodeArgv(
  probe: ArgvProbeFormat,
  ts: number,
  b: Buffer,
  o: number,
  end: number,
  common: EventField,
): ArgvEvent {
  const argc = readIntField(b, o, probe.argc);
  const n = Math.min(argc, probe.slots);
  const argv: Buffer[] = [];
  let complete = argc <= probe.slots;
  for (let i = 0; i < n; i++) {
    const stored = dynamicFieldLength(b, o, probe.strings[i]);
    const value = readDynamicField(b, o, probe.strings[i], end);
    argv.push(value === null ? Buffer.alloc(0) : Buffer.from(value));
    if (stored === 0) {
      // Nothing fetched: a fault, or the per-hit buffer (a page) was used up by earlier strings.
      complete = false;
      continue;
    }
    // Strings on the initial stack are contiguous, so the next pointer tells this one's length:
    // a string the kernel cut to fit its buffer is caught even when it is the last one stored.
    // The last argument is bounded by envp[0], which sits in slot argc + 1 of the pointer array.
    const nextSlot = i + 1 < argc ? i + 1 : i + 2;
    if (nextSlot < probe.pointers.length) {
      const here = readIntField(b, o, probe.pointers[i]);
      const next = readIntField(b, o, probe.pointers[nextSlot]);
      if (next > here) {
        if (next - here - 1 !== stored - 1) complete = false;
        continue;
      }
    }
    // No bound (no environment, or past the pointers fetched): only a string the kernel could not
    // have cut (far below its page of space) is believed whole.
    if (stored >= 2048) complete = false;
  }
  return { kind: 'argv', ts, tid: readIntField(b, o, common), argc, argv, complete };
}
