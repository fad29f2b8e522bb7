import { type PofrRecord, type ProcRef, toWireBytes } from '../protocol/index.js';
import type { EventClock } from './process-events.js';
import type { PathProbeEvent } from './sources/tracefs/kernel-events.js';

/**
 * glibc's resolver entry points, probed for the name asked: `gethostbyname` and `gethostbyname2`
 * call their `_r` versions (one address each), so these three cover the five functions.
 */
export const LOOKUP_FUNCS: ReadonlySet<string> = new Set([
  'getaddrinfo',
  'gethostbyname_r',
  'gethostbyname2_r',
]);

export interface LookupEventsOptions {
  readonly clock: EventClock;
  readonly ownerOfTid: (tid: number) => ProcRef | null;
}

/** Turns a resolver probe's hit into a `dns_query` record of the calling process. */
export class LookupEvents {
  readonly counts = { lookups: 0, unowned: 0 };
  readonly #o: LookupEventsOptions;

  constructor(opts: LookupEventsOptions) {
    this.#o = opts;
  }

  lookup(ev: PathProbeEvent, out: PofrRecord[]): void {
    // getaddrinfo(NULL, "80", …) asks for no name (a local address): nothing was looked up.
    if (ev.path.length === 0) return;
    const owner = this.#o.ownerOfTid(ev.tid);
    if (owner === null) {
      this.counts.unowned++;
      return;
    }
    this.counts.lookups++;
    out.push({
      type: 'dns_query',
      t: this.#o.clock.wallMicros(ev.ts),
      pid: owner.pid,
      start_ticks: owner.start_ticks,
      func: ev.func,
      name: toWireBytes(ev.path),
    });
  }
}
