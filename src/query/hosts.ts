import type { ExpressionBuilder } from 'kysely';
import { PofrError } from '../errors.js';
import type { Database, Store } from '../store/index.js';
import { parseDetail } from './recorder-events.js';

/** One monitored host as `pofr hosts` shows it. */
export interface HostRow {
  readonly host_id: string;
  readonly name: string;
  /** pending | approved | revoked */
  readonly status: string;
  readonly os: string | null;
  readonly kernel: string | null;
  readonly timezone: string | null;
  readonly first_seen: number | null;
  readonly last_seen: number | null;
  readonly last_batch_at: number | null;
  readonly last_seq: number | null;
}

/** Every enrolled host, by name then id. */
export async function listHosts(store: Store): Promise<readonly HostRow[]> {
  const rows = await store.db
    .selectFrom('hosts')
    .select([
      'host_id',
      'name',
      'status',
      'os',
      'kernel',
      'timezone',
      'first_seen',
      'last_seen',
      'last_batch_at',
      'last_seq',
    ])
    .orderBy('name')
    .orderBy('host_id')
    .execute();
  return Object.freeze(rows.map((r) => Object.freeze({ ...r })));
}

/**
 * The host ids a `--host` argument names: the host with that exact id, or every host with that
 * exact name (names are not unique). Without an argument, every host.
 */
export async function resolveHosts(store: Store, nameOrId?: string): Promise<string[]> {
  let q = store.db.selectFrom('hosts').select('host_id').orderBy('host_id');
  if (nameOrId !== undefined)
    q = q.where((eb) => eb.or([eb('host_id', '=', nameOrId), eb('name', '=', nameOrId)]));
  const rows = await q.execute();
  if (nameOrId !== undefined && rows.length === 0) {
    throw new PofrError(
      'POFR_HOST_UNKNOWN',
      `no host named or with id "${nameOrId}"; list hosts with: pofr hosts`,
    );
  }
  const byId = rows.find((r) => r.host_id === nameOrId);
  return byId ? [byId.host_id] : rows.map((r) => r.host_id);
}

/** What a recorder promises when it has not said (recorders before heartbeats): the defaults. */
const DEFAULT_PROMISE = { heartbeat_ms: 30_000, batch_ms: 5_000 } as const;
/** Late once this many heartbeats are overdue, silent at SILENT_AFTER (plus one batch delay each). */
export const LATE_AFTER_HEARTBEATS = 2;
export const SILENT_AFTER_HEARTBEATS = 10;

/** How a host's recorder is doing, seen from the server (the fleet's status). */
export interface HostState {
  readonly host_id: string;
  /**
   * `recording`: batches arrive as its heartbeat promises; `late`: none for LATE_AFTER_HEARTBEATS
   * heartbeat periods plus one batch delay; `silent`: none for SILENT_AFTER_HEARTBEATS periods;
   * `waiting`: approved, nothing received yet; `pending`, `revoked`: the host's enrollment status.
   */
  readonly state: 'recording' | 'late' | 'silent' | 'waiting' | 'pending' | 'revoked';
  /** When the host entered the state, µs (server clock for late and silent). */
  readonly since: number | null;
  /** When the server last received a batch of it, µs, server clock. */
  readonly last_heard: number | null;
  /** The heartbeat period and batch delay the recorder last promised (defaults when it never said). */
  readonly heartbeat_ms: number;
  readonly batch_ms: number;
  /** The recorder's latest start: when, its pid, version and configuration hash. */
  readonly started: {
    readonly t: number;
    readonly pid: number;
    readonly version: string | null;
    readonly config_hash: string | null;
  } | null;
  /** Its clean stop after that start, if it stopped cleanly. */
  readonly stopped: { readonly t: number; readonly reason: string; readonly signal: string | null } | null;
  /** The latest crash it came back from (the restart's time). */
  readonly last_crash: number | null;
  /** One line for people: why the state is what it is. */
  readonly detail: string;
}

/** The hosts row fields and latest health records hostStates judges by. */
export interface HostHealthInput {
  readonly status: string;
  readonly enrolled_at: number;
  readonly approved_at: number | null;
  readonly revoked_at: number | null;
  readonly first_seen: number | null;
  readonly last_batch_at: number | null;
  readonly promise: { readonly heartbeat_ms: number; readonly batch_ms: number } | null;
  readonly started_at: number | null;
}

/**
 * Judges one host at `now` (µs). Late and silent are measured on the server's clock from the last
 * batch received, so a host whose clock is wrong is judged fairly: every batch proves the recorder
 * alive, and a heartbeat makes one at least every `heartbeat_ms`.
 */
export function judgeHost(
  h: HostHealthInput,
  now: number,
): { state: HostState['state']; since: number | null } {
  if (h.status === 'revoked') return { state: 'revoked', since: h.revoked_at };
  if (h.status !== 'approved') return { state: 'pending', since: h.enrolled_at };
  if (h.last_batch_at === null) return { state: 'waiting', since: h.approved_at ?? h.enrolled_at };
  const { heartbeat_ms, batch_ms } = h.promise ?? DEFAULT_PROMISE;
  const silentAt = h.last_batch_at + (SILENT_AFTER_HEARTBEATS * heartbeat_ms + batch_ms) * 1000;
  const lateAt = h.last_batch_at + (LATE_AFTER_HEARTBEATS * heartbeat_ms + batch_ms) * 1000;
  if (now >= silentAt) return { state: 'silent', since: silentAt };
  if (now >= lateAt) return { state: 'late', since: lateAt };
  return { state: 'recording', since: h.started_at ?? h.first_seen };
}

/**
 * Every host's recorder state at `now` (default: now), for `pofr hosts`, `pofr server clients` and
 * the web's fleet page. Two queries whatever the fleet's size: the hosts with the ids of their latest
 * health record of each kind (an index seek each), then those records.
 *
 * @example
 * const states = await hostStates(store);
 * for (const [id, s] of states) if (s.state !== 'recording') console.log(id, s.state, s.detail);
 */
export async function hostStates(
  store: Store,
  opts: { readonly now?: number; readonly hosts?: readonly string[] } = {},
): Promise<ReadonlyMap<string, HostState>> {
  const now = opts.now ?? Date.now() * 1000;
  const latest = (kind: string) => (eb: ExpressionBuilder<Database, 'hosts'>) =>
    eb
      .selectFrom('recorder_events as e')
      .select('e.id')
      .whereRef('e.host_id', '=', 'hosts.host_id')
      .where('e.kind', '=', kind)
      .orderBy('e.ord', 'desc')
      .limit(1);
  let q = store.db
    .selectFrom('hosts')
    .select(['host_id', 'status', 'enrolled_at', 'approved_at', 'revoked_at', 'first_seen', 'last_batch_at'])
    .select((eb) => [
      latest('start')(eb).as('start_id'),
      latest('stop')(eb).as('stop_id'),
      latest('crash')(eb).as('crash_id'),
      latest('heartbeat')(eb).as('heartbeat_id'),
    ]);
  if (opts.hosts) {
    if (opts.hosts.length === 0) return new Map();
    q = q.where('host_id', 'in', opts.hosts);
  }
  const hosts = await q.execute();
  const ids = hosts
    .flatMap((h) => [h.start_id, h.stop_id, h.crash_id, h.heartbeat_id])
    .filter((id) => id !== null);
  const events = new Map<
    number,
    {
      t: number;
      ord: number;
      pid: number;
      config_hash: string | null;
      heartbeat_ms: number | null;
      batch_ms: number | null;
      detail: Record<string, unknown>;
    }
  >();
  for (const part of chunked(ids.map(Number), 10_000)) {
    for (const e of await store.db
      .selectFrom('recorder_events')
      .select(['id', 't', 'ord', 'pid', 'config_hash', 'heartbeat_ms', 'batch_ms', 'detail'])
      .where('id', 'in', part)
      .execute()) {
      events.set(Number(e.id), {
        t: Number(e.t),
        ord: Number(e.ord),
        pid: Number(e.pid),
        config_hash: e.config_hash,
        heartbeat_ms: e.heartbeat_ms === null ? null : Number(e.heartbeat_ms),
        batch_ms: e.batch_ms === null ? null : Number(e.batch_ms),
        detail: parseDetail(e.detail),
      });
    }
  }
  const out = new Map<string, HostState>();
  for (const h of hosts) {
    const get = (id: number | null) => (id === null ? undefined : events.get(Number(id)));
    const start = get(h.start_id);
    const stop = get(h.stop_id);
    const crash = get(h.crash_id);
    const beat = get(h.heartbeat_id);
    // The promise in force is the latest one made, by a start or a heartbeat.
    const promiser = [start, beat]
      .filter((e) => e !== undefined && e.heartbeat_ms !== null)
      .sort((a, b) => b!.ord - a!.ord)[0];
    const promise = promiser
      ? { heartbeat_ms: promiser.heartbeat_ms!, batch_ms: promiser.batch_ms ?? DEFAULT_PROMISE.batch_ms }
      : null;
    const input: HostHealthInput = {
      status: h.status,
      enrolled_at: Number(h.enrolled_at),
      approved_at: h.approved_at === null ? null : Number(h.approved_at),
      revoked_at: h.revoked_at === null ? null : Number(h.revoked_at),
      first_seen: h.first_seen === null ? null : Number(h.first_seen),
      last_batch_at: h.last_batch_at === null ? null : Number(h.last_batch_at),
      promise,
      started_at: start?.t ?? null,
    };
    const { state, since } = judgeHost(input, now);
    const stopped =
      stop !== undefined && (start === undefined || stop.ord > start.ord)
        ? {
            t: stop.t,
            reason: String(stop.detail.reason ?? 'signal'),
            signal: typeof stop.detail.signal === 'string' ? stop.detail.signal : null,
          }
        : null;
    const s: Omit<HostState, 'detail'> = {
      host_id: h.host_id,
      state,
      since,
      last_heard: input.last_batch_at,
      heartbeat_ms: promise?.heartbeat_ms ?? DEFAULT_PROMISE.heartbeat_ms,
      batch_ms: promise?.batch_ms ?? DEFAULT_PROMISE.batch_ms,
      started: start
        ? {
            t: start.t,
            pid: start.pid,
            version: typeof start.detail.version === 'string' ? start.detail.version : null,
            config_hash: start.config_hash,
          }
        : null,
      stopped,
      last_crash: crash?.t ?? null,
    };
    out.set(h.host_id, Object.freeze({ ...s, detail: describeState(s, promise !== null) }));
  }
  return out;
}

function describeState(s: Omit<HostState, 'detail'>, promised: boolean): string {
  const period = `${s.heartbeat_ms / 1000} s`;
  const why =
    s.stopped === null
      ? ''
      : s.stopped.reason === 'deregister'
        ? '; its recorder stopped cleanly: deregistered'
        : `; its recorder stopped cleanly (${s.stopped.signal ?? s.stopped.reason})`;
  switch (s.state) {
    case 'recording':
      return `heartbeat every ${period}${promised ? '' : ' (assumed: this recorder does not say)'}`;
    case 'late':
      return `no batch for over ${LATE_AFTER_HEARTBEATS} heartbeats (every ${period})${why}`;
    case 'silent':
      return `no batch for over ${SILENT_AFTER_HEARTBEATS} heartbeats (every ${period})${why}`;
    case 'waiting':
      return 'approved, nothing received yet';
    case 'pending':
      return 'enrolled, waiting for approval (pofr server approve)';
    case 'revoked':
      return 'revoked: its batches are refused';
  }
}

function chunked<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}
