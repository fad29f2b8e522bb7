import type { EndpointInfo, PofrRecord, ProcRef } from '../protocol/index.js';
import type { LiveState } from './live-state.js';
import type { EventClock } from './process-events.js';
import { tcpStateName } from './sources/net-table-reader.js';
import type { TcpEvent } from './sources/tracefs/kernel-events.js';

export interface TcpEventsOptions {
  readonly live: LiveState;
  readonly clock: EventClock;
  /** The process a thread id belongs to, if the recorder knows it. */
  readonly ownerOfTid: (tid: number) => ProcRef | null;
  /** The network namespace of a process (the socket's, for the calls a process makes). */
  readonly netnsOf: (pid: number) => number | null;
  /** How long a connect may stay in SYN_SENT, in trace ns, before it is recorded without its port. */
  readonly connectWaitNs?: number;
}

const SYN_SENT = 2;
const SYN_RECV = 3;
const CLOSE = 7;
const MAX_SOCKETS = 1_000_000;
const LISTEN = 10;

interface Connecting {
  readonly ev: TcpEvent;
  readonly owner: ProcRef | null;
  readonly netns: number | null;
}

export interface TcpEventCounts {
  opened: number;
  closed: number;
  changes: number;
  /** Connections joined to their listener's process (the accepting side). */
  accepted: number;
  /** Sockets that existed before the recorder, found again by address. */
  adopted: number;
  /** Sockets forgotten to stay within bounds (their CLOSE was lost with a buffer overrun). */
  shed: number;
}

/**
 * Turns `sock:inet_sock_set_state` into endpoint records, each joined to its process however short
 * the connection:
 *
 * - CLOSE → SYN_SENT (connect) and CLOSE → LISTEN (listen) run in the calling task: it is the
 *   owner. A connect's local port is not chosen yet when SYN_SENT fires, so the endpoint opens,
 *   at the connect's time, when the next state change tells the port.
 * - LISTEN → SYN_RECV is a connection arriving at a listener (in softirq, no useful task): it
 *   belongs to the listener's process, which accepts it.
 * - Every later change is an endpoint_state at the kernel's time; → CLOSE closes the endpoint.
 *   (TIME_WAIT is a kernel-owned remnant after CLOSE, with no process: it is not recorded.)
 * - A socket seen first in a later state existed before the recorder: it is joined to the endpoint
 *   the socket tables gave at start, by address, or recorded from here on without an owner.
 */
export class TcpEvents {
  readonly counts: TcpEventCounts = { opened: 0, closed: 0, changes: 0, accepted: 0, adopted: 0, shed: 0 };
  readonly #o: TcpEventsOptions;
  readonly #keyOfSk = new Map<string, string>();
  readonly #connecting = new Map<string, Connecting>();
  readonly #connectWaitNs: number;
  /** Lazily built views of the live endpoints (invalidated per batch of events). */
  #listeners: Map<string, string[]> | null = null;
  #byTuple: Map<string, string> | null = null;

  constructor(opts: TcpEventsOptions) {
    this.#o = opts;
    this.#connectWaitNs = opts.connectWaitNs ?? 1e9;
  }

  /** Call before each batch of events: other sources may have changed the endpoints since. */
  beginBatch(): void {
    this.#listeners = null;
    this.#byTuple = null;
  }

  get tracked(): number {
    return this.#keyOfSk.size + this.#connecting.size;
  }

  handle(ev: TcpEvent, out: PofrRecord[]): void {
    const t = this.#o.clock.wallMicros(ev.ts);
    const connecting = this.#connecting.get(ev.sk);
    if (connecting !== undefined) {
      this.#connecting.delete(ev.sk);
      this.#open(connecting, ev.localIp, ev.localPort, out);
      this.#change(ev, t, out);
      return;
    }
    if (this.#keyOfSk.has(ev.sk)) {
      this.#change(ev, t, out);
      return;
    }
    if (ev.oldState === CLOSE && ev.newState === SYN_SENT && !ev.interrupt) {
      const owner = this.#o.ownerOfTid(ev.tid);
      this.#bound();
      this.#connecting.set(ev.sk, { ev, owner, netns: owner ? this.#o.netnsOf(owner.pid) : null });
      return;
    }
    if (ev.oldState === CLOSE && ev.newState === LISTEN && !ev.interrupt) {
      const owner = this.#o.ownerOfTid(ev.tid);
      this.#openAt(ev, t, owner, owner ? this.#o.netnsOf(owner.pid) : null, 'LISTEN', out);
      return;
    }
    if (ev.oldState === LISTEN && ev.newState === SYN_RECV) {
      const listener = this.#listenerFor(ev);
      if (listener !== undefined) this.counts.accepted++;
      const owner =
        listener?.pid != null && listener.start_ticks != null
          ? { pid: listener.pid, start_ticks: listener.start_ticks }
          : null;
      this.#openAt(ev, t, owner, listener?.netns ?? null, 'SYN_RECV', out);
      return;
    }
    // A socket older than the recorder: the one the socket tables listed, found by its addresses.
    const known = this.#tuples().get(
      tupleOf(ev.family, ev.localIp, ev.localPort, ev.remoteIp, ev.remotePort),
    );
    if (known !== undefined && this.#o.live.endpoints.has(known)) {
      this.#keyOfSk.set(ev.sk, known);
      this.counts.adopted++;
      this.#change(ev, t, out);
      return;
    }
    if (ev.newState === CLOSE) return;
    this.#openAt(ev, t, null, null, tcpStateName(ev.newState), out);
  }

  /** Records connects that stayed in SYN_SENT too long to wait for their port any more. */
  expire(nowTs: number, out: PofrRecord[]): void {
    for (const [sk, c] of this.#connecting) {
      if (nowTs - c.ev.ts < this.#connectWaitNs) continue;
      this.#connecting.delete(sk);
      this.#open(c, c.ev.localIp, c.ev.localPort, out);
    }
  }

  #open(c: Connecting, localIp: string, localPort: number, out: PofrRecord[]): void {
    const ev = { ...c.ev, localIp, localPort };
    this.#openAt(ev, this.#o.clock.wallMicros(c.ev.ts), c.owner, c.netns, 'SYN_SENT', out);
  }

  #openAt(
    ev: TcpEvent,
    t: number,
    owner: ProcRef | null,
    netns: number | null,
    state: string,
    out: PofrRecord[],
  ): void {
    const live = this.#o.live;
    const base = `tcp${ev.family}:sk${ev.sk}`;
    let key = base;
    for (let n = 2; live.endpoints.has(key); n++) key = `${base}#${n}`;
    const endpoint: EndpointInfo = {
      key,
      pid: owner?.pid ?? null,
      start_ticks: owner?.start_ticks ?? null,
      proto: 'tcp',
      family: ev.family,
      local_ip: ev.localIp,
      local_port: ev.localPort,
      remote_ip: ev.remoteIp,
      remote_port: ev.remotePort,
      state,
      inode: 0,
      netns,
    };
    this.#bound();
    this.#keyOfSk.set(ev.sk, key);
    this.counts.opened++;
    if (state === 'LISTEN') {
      const index = this.#listenerIndex();
      const k = listenKey(ev.family, ev.localPort);
      const list = index.get(k);
      if (list) list.push(key);
      else index.set(k, [key]);
    }
    this.#push(out, { type: 'endpoint_open', t, endpoint });
  }

  #change(ev: TcpEvent, t: number, out: PofrRecord[]): void {
    const key = this.#keyOfSk.get(ev.sk);
    if (key === undefined || !this.#o.live.endpoints.has(key)) {
      this.#keyOfSk.delete(ev.sk);
      return;
    }
    if (ev.newState === CLOSE) {
      this.#keyOfSk.delete(ev.sk);
      this.counts.closed++;
      this.#push(out, { type: 'endpoint_close', t, key });
      return;
    }
    this.counts.changes++;
    this.#push(out, { type: 'endpoint_state', t, key, state: tcpStateName(ev.newState) });
  }

  /** The listener a connection arrived at: same port and family, same address or a wildcard one. */
  #listenerFor(ev: TcpEvent): EndpointInfo | undefined {
    const live = this.#o.live;
    let wildcard: EndpointInfo | undefined;
    for (const key of this.#listenerIndex().get(listenKey(ev.family, ev.localPort)) ?? []) {
      const ep = live.endpoints.get(key);
      if (ep === undefined || ep.state !== 'LISTEN') continue;
      if (ep.local_ip === ev.localIp) return ep;
      if (ep.local_ip === '0.0.0.0' || ep.local_ip === '::') wildcard ??= ep;
    }
    return wildcard;
  }

  #listenerIndex(): Map<string, string[]> {
    if (this.#listeners !== null) return this.#listeners;
    const index = new Map<string, string[]>();
    for (const [key, ep] of this.#o.live.endpoints) {
      if (ep.proto !== 'tcp' || ep.state !== 'LISTEN') continue;
      const k = listenKey(ep.family, ep.local_port);
      const list = index.get(k);
      if (list) list.push(key);
      else index.set(k, [key]);
    }
    // Listeners opened later in the batch join it as they open (see #openAt).
    this.#listeners = index;
    return index;
  }

  #tuples(): Map<string, string> {
    if (this.#byTuple !== null) return this.#byTuple;
    const index = new Map<string, string>();
    const mapped = new Set(this.#keyOfSk.values());
    for (const [key, ep] of this.#o.live.endpoints) {
      if (ep.proto !== 'tcp' || mapped.has(key)) continue;
      index.set(tupleOf(ep.family, ep.local_ip, ep.local_port, ep.remote_ip, ep.remote_port), key);
    }
    this.#byTuple = index;
    return index;
  }

  /**
   * Sockets whose CLOSE never came (lost in an overrun: a gap says so) would otherwise be kept
   * for ever: past MAX_SOCKETS the oldest are forgotten, those no longer open first.
   */
  #bound(): void {
    if (this.#keyOfSk.size + this.#connecting.size < MAX_SOCKETS) return;
    const live = this.#o.live.endpoints;
    for (const [sk, key] of this.#keyOfSk) {
      if (live.has(key)) continue;
      this.#keyOfSk.delete(sk);
      this.counts.shed++;
    }
    while (this.#keyOfSk.size + this.#connecting.size >= MAX_SOCKETS) {
      const oldest = this.#connecting.keys().next().value ?? this.#keyOfSk.keys().next().value;
      if (oldest === undefined) break;
      this.#connecting.delete(oldest);
      this.#keyOfSk.delete(oldest);
      this.counts.shed++;
    }
  }

  #push(out: PofrRecord[], r: PofrRecord): void {
    this.#o.live.apply([r]);
    out.push(r);
  }
}

function listenKey(family: number, port: number): string {
  return `${family}|${port}`;
}

function tupleOf(family: number, lip: string, lport: number, rip: string, rport: number): string {
  return `${family}|${lip}|${lport}|${rip}|${rport}`;
}
