import { readlinkSync } from 'node:fs';
import type { PofrRecord, ProcRef } from '../protocol/index.js';
import type { LiveState } from './live-state.js';
import type { EventClock } from './process-events.js';
import { socketInode } from './sources/procfs-reader.js';
import type {
  CloseEvent,
  SockaddrProbeEvent,
  SyscallArgsEvent,
  SyscallExitEvent,
} from './sources/tracefs/kernel-events.js';

export interface UdpEventsOptions {
  readonly live: LiveState;
  readonly clock: EventClock;
  readonly procRoot: string;
  readonly ownerOfTid: (tid: number) => ProcRef | null;
  readonly netnsOf: (pid: number) => number | null;
  /** Most UDP descriptors followed at once. */
  readonly maxSockets?: number;
}

/**
 * The glibc probes' fetches: the descriptor, then the sockaddr's family, port and address, at
 * `addr` — a register holding its address (`%si`), or a fetch of it (`+0(%si)`: sendmsg's
 * msghdr starts with msg_name).
 */
export function sockaddrProbeArgs(addr: string): string[] {
  return [
    'fd=%di:s32',
    `fam=+0(${addr}):u16`,
    `port=+2(${addr}):u16`,
    `a4=+4(${addr}):u32`,
    `a6a=+8(${addr}):u64`,
    `a6b=+16(${addr}):u64`,
  ];
}

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;

/**
 * UDP endpoints with their process, however short it lives: `socket(AF_INET[6], SOCK_DGRAM)` is
 * seen by its syscall events (the type at entry, the new descriptor at exit, joined per thread);
 * a glibc `connect`, `sendto` or `sendmsg` on such a descriptor names the destination (uprobes: the address
 * is in user memory); `close` ends it. One endpoint per descriptor and destination. The local
 * address and port are not known then (0); the socket's inode is, while the process still holds
 * it when the recorder reads the event, so that the socket-table sampler follows the same endpoint.
 */
export class UdpEvents {
  readonly counts = { opened: 0, closed: 0 };
  readonly #o: UdpEventsOptions;
  readonly #pending = new Map<number, number>();
  /** pid:start_ticks:fd → family, and the endpoint keys opened on it. */
  readonly #sockets = new Map<string, { family: 4 | 6; keys: Set<string> }>();
  readonly #max: number;

  constructor(opts: UdpEventsOptions) {
    this.#o = opts;
    this.#max = opts.maxSockets ?? 65_536;
  }

  socketEntered(ev: SyscallArgsEvent): void {
    const [family, type] = ev.args;
    // SOCK_NONBLOCK and SOCK_CLOEXEC share the type argument.
    if ((family !== AF_INET && family !== AF_INET6) || (type & 0xf) !== SOCK_DGRAM) {
      this.#pending.delete(ev.tid);
      return;
    }
    if (this.#pending.size >= this.#max) this.#pending.clear();
    this.#pending.set(ev.tid, family === AF_INET ? 4 : 6);
  }

  socketExited(ev: SyscallExitEvent): void {
    const family = this.#pending.get(ev.tid);
    this.#pending.delete(ev.tid);
    if (family === undefined || ev.ret < 0) return;
    const owner = this.#o.ownerOfTid(ev.tid);
    if (owner === null) return;
    if (this.#sockets.size >= this.#max) this.#sockets.clear();
    this.#sockets.set(`${owner.pid}:${owner.start_ticks}:${ev.ret}`, {
      family: family as 4 | 6,
      keys: new Set(),
    });
  }

  sent(ev: SockaddrProbeEvent, out: PofrRecord[]): void {
    if (ev.family === null) return;
    const owner = this.#o.ownerOfTid(ev.tid);
    if (owner === null) return;
    const sock = this.#sockets.get(`${owner.pid}:${owner.start_ticks}:${ev.fd}`);
    if (sock === undefined) return;
    const key = `udp-ev:${owner.pid}:${owner.start_ticks}:${ev.fd}:[${ev.ip}]:${ev.port}`;
    if (sock.keys.has(key) && this.#o.live.endpoints.has(key)) return;
    sock.keys.add(key);
    this.counts.opened++;
    const r: PofrRecord = {
      type: 'endpoint_open',
      t: this.#o.clock.wallMicros(ev.ts),
      endpoint: {
        key,
        pid: owner.pid,
        start_ticks: owner.start_ticks,
        proto: 'udp',
        family: sock.family,
        local_ip: sock.family === 4 ? '0.0.0.0' : '::',
        local_port: 0,
        remote_ip: ev.ip,
        remote_port: ev.port,
        state: ev.func === 'connect' ? 'ESTABLISHED' : 'UNCONN',
        inode: this.#inode(owner.pid, ev.fd),
        netns: this.#o.netnsOf(owner.pid),
      },
    };
    this.#o.live.apply([r]);
    out.push(r);
  }

  closed(ev: CloseEvent, out: PofrRecord[]): void {
    const owner = this.#o.ownerOfTid(ev.tid);
    if (owner === null) return;
    const id = `${owner.pid}:${owner.start_ticks}:${ev.fd}`;
    const sock = this.#sockets.get(id);
    if (sock === undefined) return;
    this.#sockets.delete(id);
    const t = this.#o.clock.wallMicros(ev.ts);
    for (const key of sock.keys) {
      if (!this.#o.live.endpoints.has(key)) continue;
      this.counts.closed++;
      const r: PofrRecord = { type: 'endpoint_close', t, key };
      this.#o.live.apply([r]);
      out.push(r);
    }
  }

  #inode(pid: number, fd: number): number {
    try {
      return socketInode(readlinkSync(`${this.#o.procRoot}/${pid}/fd/${fd}`));
    } catch {
      return 0;
    }
  }
}
