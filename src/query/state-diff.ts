import type { Store } from '../store/index.js';
import { formatAddress } from './net.js';
import { NOT_OBSERVER_HELD } from './process-row.js';

/** One side of a diff: a host at an instant. */
export interface DiffSide {
  readonly host_id: string;
  /** µs UTC */
  readonly at: number;
}

/** What differs between two sides, by kind of thing; each entry is a readable key. */
export interface StateDiff {
  readonly a: DiffSide;
  readonly b: DiffSide;
  readonly processes: DiffSet;
  readonly listeners: DiffSet;
  readonly outbound: DiffSet;
  readonly files: DiffSet;
}

export interface DiffSet {
  /** In b, not in a. */
  readonly added: readonly string[];
  /** In a, not in b. */
  readonly removed: readonly string[];
  /** How many are in both. */
  readonly same: number;
}

/** Keys of the things alive at one instant on one host. */
interface HostState {
  processes: Set<string>;
  listeners: Set<string>;
  outbound: Set<string>;
  files: Set<string>;
}

const MAX_LISTED = 500;

/**
 * What was running, listening, connected out and open on host A at instant A and not on host B at
 * instant B, and the reverse: two instants of one host ("what changed since yesterday"), or two
 * hosts at one instant ("what does web-03 run that web-01 does not"). Processes compare by exe and
 * command line, listeners by protocol, address, port and program, outbound connections by remote
 * address, port and program, files by path: pids and ports chosen by the kernel would make
 * everything differ. The recorder's own activity is left out.
 */
export async function stateDiff(store: Store, a: DiffSide, b: DiffSide): Promise<StateDiff> {
  const sa = await stateAt(store, a);
  const sb = await stateAt(store, b);
  const cmp = (x: Set<string>, y: Set<string>): DiffSet => {
    const added = [...y].filter((k) => !x.has(k)).sort();
    const removed = [...x].filter((k) => !y.has(k)).sort();
    let same = 0;
    for (const k of x) if (y.has(k)) same++;
    return Object.freeze({ added: added.slice(0, MAX_LISTED), removed: removed.slice(0, MAX_LISTED), same });
  };
  return Object.freeze({
    a,
    b,
    processes: cmp(sa.processes, sb.processes),
    listeners: cmp(sa.listeners, sb.listeners),
    outbound: cmp(sa.outbound, sb.outbound),
    files: cmp(sa.files, sb.files),
  });
}

async function stateAt(store: Store, side: DiffSide): Promise<HostState> {
  const { host_id, at } = side;
  const procs = await store.db
    .selectFrom('processes as p')
    .select(['p.exe', 'p.cmdline', 'p.comm'])
    .where('p.host_id', '=', host_id)
    .where('p.start', '<=', at)
    .where((eb) => eb.or([eb('p.end', 'is', null), eb('p.end', '>', at)]))
    .where('p.observer', '=', 0)
    .execute();
  const eps = await store.db
    .selectFrom('endpoints as e')
    .leftJoin('processes as p', 'p.id', 'e.process_id')
    .select(['e.proto', 'e.local_ip', 'e.local_port', 'e.remote_ip', 'e.remote_port', 'e.state', 'p.comm'])
    .where('e.host_id', '=', host_id)
    .where('e.first_seen', '<=', at)
    .where((eb) => eb.or([eb('e.is_open', '=', 1), eb('e.last_seen', '>=', at)]))
    .where(NOT_OBSERVER_HELD)
    .execute();
  const files = await store.db
    .selectFrom('file_opens as f')
    .leftJoin('processes as p', 'p.id', 'f.process_id')
    .select(['f.path'])
    .where('f.host_id', '=', host_id)
    .where('f.first_seen', '<=', at)
    .where((eb) => eb.or([eb('f.is_open', '=', 1), eb('f.last_seen', '>=', at)]))
    .where('f.kind', '=', 'file')
    .where(NOT_OBSERVER_HELD)
    .execute();
  const state: HostState = {
    processes: new Set(procs.map((p) => `${p.exe ?? `[${p.comm}]`} — ${p.cmdline}`)),
    listeners: new Set(),
    outbound: new Set(),
    files: new Set(files.map((f) => f.path)),
  };
  for (const e of eps) {
    const who = e.comm ?? 'unknown process';
    if (e.state === 'LISTEN' || (e.proto === 'udp' && e.remote_port === 0)) {
      state.listeners.add(`${e.proto} ${formatAddress(e.local_ip, e.local_port)} (${who})`);
    } else if (e.remote_port !== 0 && e.local_port >= 32768) {
      // An ephemeral local port: this host connected out.
      state.outbound.add(`${e.proto} → ${formatAddress(e.remote_ip, e.remote_port)} (${who})`);
    }
  }
  return state;
}
