import {
  type Expression,
  expressionBuilder,
  type SelectQueryBuilder,
  type SqlBool,
  type StringReference,
  sql,
} from 'kysely';
import { PofrError } from '../errors.js';
import type {
  Capabilities,
  EndpointStatesTable,
  EndpointsTable,
  FileOpensTable,
  ProcessesTable,
  Store,
} from '../store/index.js';
import { ACTIVITY_KINDS, type ActivityEvent, activityEvents } from './activity-events.js';
import { FILE_COLUMNS, type FileRow, globMatch } from './files.js';
import { describeEndpoint, type EndpointRow, SOCKET_COLUMNS } from './net.js';
import {
  describeProcess,
  NOT_OBSERVER_HELD,
  PROCESS_COLUMNS,
  type ProcessRow,
  toProcessRow,
} from './process-row.js';
import { withRegexErrors } from './procs.js';
import { RECORDER_KINDS, type RecorderEvent, recorderEvents } from './recorder-events.js';
import { TIMELINE_KINDS, type TimelineKind } from './timeline-kinds.js';
import { limitOf, toBase64, type WindowOptions } from './window.js';

export { TIMELINE_KINDS, type TimelineKind };

/** Kinds left out unless asked for by name: a heartbeat every 30 s would drown the rest. */
const ONLY_WHEN_ASKED: ReadonlySet<TimelineKind> = new Set(['recorder_heartbeat']);

export interface TimelineQuery extends WindowOptions {
  /** false: leave out the recorder's own processes and what they hold. */
  readonly observer?: boolean;
  /** Only these kinds of event (default: all of TIMELINE_KINDS). */
  readonly kinds?: readonly string[];
  /** Only events of this pid (gaps are always shown: they concern every process). */
  readonly pid?: number;
  /** Only events of processes run by this user (a name, or a uid matching the real or effective one). */
  readonly user?: string;
  /** Only events of processes whose command line or exe path matches this regular expression. */
  readonly command?: string;
  /** Only file events whose path matches this glob (`*` matches '/' too). */
  readonly path?: string;
  /** Only endpoint events with this remote address. */
  readonly remote?: string;
  /** Only endpoint events with this local or remote port. */
  readonly port?: number;
  /** Only endpoint events whose remote address is in this country (ISO 3166 code). */
  readonly country?: string;
  /** Only events strictly after this one, in timeline order: the next page after a page's last event. */
  readonly after?: TimelineCursor;
}

/** Where an event stands in timeline order; `cursorOf(lastEvent)` gives the next page's `after`. */
export interface TimelineCursor {
  readonly time: number;
  readonly ord: number | null;
  readonly host_id: string;
  readonly kind: TimelineKind;
  /** process_id, file_id, endpoint_id, or the batch seq of a gap. */
  readonly id: number;
}

interface EventBase {
  /** µs UTC */
  readonly time: number;
  /** Exact order among events of a host at the same time (null for gaps, which sort first). */
  readonly ord: number | null;
  readonly host: string;
  readonly host_id: string;
  readonly kind: TimelineKind;
  readonly pid: number | null;
  /** One readable line. */
  readonly summary: string;
}

/** A program image starting, exec'ing or ending: its ProcessRow, the row id as process_id. */
export interface ProcessEvent
  extends EventBase,
    Omit<ProcessRow, keyof EventBase | 'id' | 'boot_id' | 'start_ticks' | 'open_ord' | 'close_ord'> {
  readonly kind: 'process_start' | 'process_exec' | 'process_exit';
  readonly process_id: number;
}

export interface FileEvent
  extends EventBase,
    Pick<FileRow, 'process_id' | 'comm' | 'fd' | 'path' | 'path_raw_b64'> {
  readonly kind: 'file_open' | 'file_close';
  readonly file_id: number;
  /** file | dir | dev | socket | pipe | anon | other */
  readonly file_kind: string;
}

export interface EndpointEvent extends EventBase, Omit<EndpointSelection, keyof EventBase | 'id'> {
  readonly kind: 'endpoint_open' | 'endpoint_state' | 'endpoint_close';
  readonly endpoint_id: number;
  /** The state entered by this event (close: the last one; open: null when not recorded). */
  readonly state: string | null;
}

export interface GapEvent extends EventBase {
  readonly kind: 'gap';
  /** seq_gap | fork | recorder */
  readonly gap_kind: string;
  readonly seq: number;
  readonly t_from: number | null;
  readonly t_to: number | null;
  readonly detail: string;
}

export type TimelineEvent =
  | ProcessEvent
  | FileEvent
  | EndpointEvent
  | GapEvent
  | RecorderEvent
  | ActivityEvent;

// At equal time and ord (different hosts, or gaps): openings before changes before endings.
const RANK: Readonly<Record<TimelineKind, number>> = Object.freeze({
  gap: 0,
  recorder_crash: 0,
  recorder_start: 0,
  process_start: 1,
  process_exec: 1,
  file_open: 2,
  endpoint_open: 3,
  endpoint_state: 4,
  dns_query: 4,
  cred_change: 4,
  file_close: 5,
  endpoint_close: 6,
  process_exit: 7,
  recorder_heartbeat: 8,
  recorder_stop: 8,
});

/**
 * Every event in the window in exact order: by time, then by the ingest order `ord`. Each source
 * table is read in that order up to `limit` rows and the lists are merged, so the result is the
 * first `limit` events overall.
 *
 * @example
 * for (const e of await timeline(store, { from: t0, to: t1, observer: false })) console.log(e.summary);
 */
export async function timeline(store: Store, opts: TimelineQuery = {}): Promise<readonly TimelineEvent[]> {
  const kinds = new Set<TimelineKind>(checkKinds(opts.kinds));
  // A filter on what only files (or only endpoints) have leaves the other kinds out; gaps stay.
  const onFiles = opts.path !== undefined;
  const onEndpoints = opts.remote !== undefined || opts.port !== undefined || opts.country !== undefined;
  for (const k of kinds) {
    const fileKind = k === 'file_open' || k === 'file_close';
    const endpointKind = k.startsWith('endpoint_');
    if (k === 'gap' || k.startsWith('recorder_')) continue;
    // A lookup or an id change has no path, remote or port.
    if ((onFiles && !fileKind) || (onEndpoints && !endpointKind)) kinds.delete(k);
  }
  if (opts.hosts?.length === 0 || kinds.size === 0) return Object.freeze([]);
  const limit = limitOf(opts);
  // One source after the other on one connection: an analyst query should not take a whole pool.
  const sources = (store: Store, o: ResolvedQuery, probe?: KeyQuery[]) => {
    const reads: (() => Promise<readonly TimelineEvent[]>)[] = [];
    if (kinds.has('process_start') || kinds.has('process_exec'))
      reads.push(() => processImages(store, o, kinds, limit, probe));
    if (kinds.has('process_exit')) reads.push(() => processExits(store, o, limit, probe));
    if (kinds.has('file_open')) reads.push(() => fileEvents(store, o, 'file_open', limit, probe));
    if (kinds.has('file_close')) reads.push(() => fileEvents(store, o, 'file_close', limit, probe));
    if (kinds.has('endpoint_open')) reads.push(() => endpointEvents(store, o, 'endpoint_open', limit, probe));
    if (kinds.has('endpoint_close'))
      reads.push(() => endpointEvents(store, o, 'endpoint_close', limit, probe));
    if (kinds.has('endpoint_state')) reads.push(() => endpointStates(store, o, limit, probe));
    return reads;
  };
  const all: TimelineEvent[] = [];
  const page = async (store: Store, processIds: readonly number[] | undefined) => {
    const resolved: ResolvedQuery = {
      ...opts,
      processIds,
      endpointIds: kinds.has('endpoint_state') ? await processEndpoints(store, processIds) : undefined,
    };
    // Each source may hold the whole page: reading `limit` full rows from every one costs several
    // times the page. So first only the order keys (an index walk), to find the instant where the
    // page ends; then full rows up to that instant.
    // The sources' key reads go as one statement, merged in event order by the engine: each walks
    // its index only as far as the page needs (at most `limit` rows each), not `limit` rows of every
    // source. A command resolved to process rows reads each source's keys by its (process_id, time,
    // ord) index from the instant on, one statement per source (each holds the rows' ids, and seven
    // lists of 5,000 would pass SQLite's 32,766 parameters), merged here.
    let bounded = resolved;
    const reads = sources(store, resolved);
    if (reads.length > 1 && resolved.processIds?.length !== 0) {
      const arms: KeyQuery[] = [];
      for (const read of sources(store, resolved, arms)) await read();
      const keys =
        resolved.processIds === undefined
          ? await mergedKeys(store, arms, limit + 1)
          : await separateKeys(arms, limit + 1);
      if (keys.length > limit) {
        const end = keys[limit - 1].time;
        bounded = { ...resolved, to: opts.to === undefined ? end : Math.min(opts.to, end) };
      }
      // The page's events of each keyed source are exactly its rows among the first `limit` keys
      // (the other sources can only push some out): read those rows by id, instead of every
      // resolved process's index again. Endpoint states are keyed by their endpoint: the states of
      // those endpoints in the window hold the page's (the final sort keeps the first `limit`).
      if (resolved.processIds !== undefined) {
        const pageIds = new Map<number, number[]>();
        for (const k of keys.slice(0, limit)) {
          const ids = pageIds.get(k.rank);
          if (ids === undefined) pageIds.set(k.rank, [k.id]);
          else ids.push(k.id);
        }
        bounded = { ...bounded, pageIds };
      }
    }
    for (const read of sources(store, bounded)) for (const e of await read()) all.push(e);
    if (kinds.has('gap')) for (const e of await gaps(store, bounded, limit)) all.push(e);
    for (const k of ACTIVITY_KINDS) {
      if (!kinds.has(k)) continue;
      const c = bounded.after;
      const after =
        c === undefined ? undefined : { ...c, rank: Math.sign(RANK[k] - RANK[c.kind]) as -1 | 0 | 1 };
      for (const e of await activityEvents(store, k, { ...bounded, after }, limit)) all.push(e);
    }
    const recorder = RECORDER_KINDS.filter((k) => kinds.has(k));
    if (recorder.length > 0)
      for (const e of await recorderEvents(store, bounded, recorder, limit)) all.push(e);
  };
  await withRegexErrors(opts.command, async () => {
    const processIds = await commandProcesses(store, opts);
    // Reads through a resolved command's rows are lookups by lists of ids: where the engine wants
    // settings for those (capabilities.ts), one transaction carries them.
    const settings = store.caps.byIdReadSettings.before;
    if (processIds === undefined || settings.length === 0) {
      await page(store, processIds);
    } else {
      await store.db.transaction().execute(async (trx) => {
        for (const q of settings) await q.execute(trx);
        await page({ ...store, db: trx }, processIds);
      });
    }
  });
  all.sort(compareEvents);
  // Sources that take no cursor of their own (recorder events, lookups, id changes) are cut here.
  const after = opts.after;
  const fresh = after === undefined ? all : all.filter((e) => compareToCursor(e, after) > 0);
  return Object.freeze(fresh.slice(0, limit));
}

/** A timeline query with its command filter resolved to the matching process images' rows. */
interface ResolvedQuery extends TimelineQuery {
  /** When set: only events of these process rows (and the command filter is not applied again). */
  readonly processIds?: readonly number[];
  /**
   * When set (with processIds): the row ids each source's events of the page are, by the source's
   * RANK, found by a pass over the order keys; a source that takes them reads those rows only.
   */
  readonly pageIds?: ReadonlyMap<number, readonly number[]>;
  /**
   * When set (with processIds): the endpoints those process rows held. Endpoint states are read
   * through these, by the states' endpoint index: from the process ids alone, PostgreSQL's planner
   * scanned every state of the host from the instant on and joined each to its endpoint to test
   * its process (0.3–0.9 s for `sudo` on a 10 M-event store).
   */
  readonly endpointIds?: readonly number[];
}

/** More endpoints than this and the states are read through their processes' ids instead. */
const ENDPOINT_RESOLVE_LIMIT = 20_000;

/** The ids of the endpoints the process rows held, or undefined when there are too many. */
async function processEndpoints(
  store: Store,
  processIds: readonly number[] | undefined,
): Promise<readonly number[] | undefined> {
  if (processIds === undefined || processIds.length === 0) return undefined;
  const rows = await store.db
    .selectFrom('endpoints as e')
    .select('e.id')
    .where('e.process_id', 'in', processIds)
    .limit(ENDPOINT_RESOLVE_LIMIT + 1)
    .execute();
  return rows.length > ENDPOINT_RESOLVE_LIMIT
    ? undefined
    : rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

/**
 * At most this many process images are resolved from a command filter: each source then reads the
 * events of those rows only. More (a common command), and each source walks its time index with the
 * filter instead: matching events are dense enough there to fill a page soon.
 */
const RESOLVE_LIMIT = 5000;

/**
 * The rows of the process images a command filter matches on the hosts (at any time: a process
 * started before the window may act in it), or undefined when there is no filter or too many.
 * Resolving first keeps a rare command from making every source walk its whole time index,
 * testing each event's process on the way (1.5 s on a 10 M-event store).
 */
async function commandProcesses(store: Store, opts: TimelineQuery): Promise<readonly number[] | undefined> {
  if (opts.command === undefined) return undefined;
  // With a host, SQLite walks the host's processes by index and tests each id against the trigram
  // index's list (a Bloom filter first): cheaper than looking up every host's candidates by id
  // (22–40 ms against 90–160 ms for `sudo` on a 1 M-event store).
  let q = store.db
    .selectFrom('processes as p')
    .select('p.id')
    .where(
      store.caps.commandMatches(
        { id: sql.ref('p.id'), cmdline: sql.ref('p.cmdline'), exe: sql.ref('p.exe') },
        opts.command,
      ),
    );
  if (opts.hosts) q = q.where('p.host_id', 'in', opts.hosts);
  if (opts.pid !== undefined) q = q.where('p.pid', '=', opts.pid);
  const rows = await q.limit(RESOLVE_LIMIT + 1).execute();
  return rows.length > RESOLVE_LIMIT ? undefined : rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

function compareToCursor(e: TimelineEvent, c: TimelineCursor): number {
  return (
    e.time - c.time ||
    (e.ord ?? -1) - (c.ord ?? -1) ||
    (e.host_id < c.host_id ? -1 : e.host_id > c.host_id ? 1 : 0) ||
    RANK[e.kind] - RANK[c.kind] ||
    idOf(e) - c.id
  );
}

/** The `after` of the page that follows this event. */
export function cursorOf(e: TimelineEvent): TimelineCursor {
  return Object.freeze({ time: e.time, ord: e.ord, host_id: e.host_id, kind: e.kind, id: idOf(e) });
}

function checkKinds(kinds: readonly string[] | undefined): readonly TimelineKind[] {
  if (kinds === undefined) return TIMELINE_KINDS.filter((k) => !ONLY_WHEN_ASKED.has(k));
  for (const k of kinds) {
    if (!(TIMELINE_KINDS as readonly string[]).includes(k)) {
      throw new PofrError('POFR_USAGE', `unknown event kind "${k}"; kinds are: ${TIMELINE_KINDS.join(', ')}`);
    }
  }
  return kinds as readonly TimelineKind[];
}

/** The SQL order of every source read is (time, ord, host_id, id), the prefix of this one. */
function compareEvents(a: TimelineEvent, b: TimelineEvent): number {
  return (
    a.time - b.time ||
    (a.ord ?? -1) - (b.ord ?? -1) ||
    (a.host_id < b.host_id ? -1 : a.host_id > b.host_id ? 1 : 0) ||
    RANK[a.kind] - RANK[b.kind] ||
    idOf(a) - idOf(b)
  );
}

function idOf(e: TimelineEvent): number {
  switch (e.kind) {
    case 'gap':
      return e.seq;
    case 'recorder_start':
    case 'recorder_stop':
    case 'recorder_crash':
    case 'recorder_heartbeat':
    case 'dns_query':
    case 'cred_change':
      return e.event_id;
    case 'file_open':
    case 'file_close':
      return e.file_id;
    case 'endpoint_open':
    case 'endpoint_state':
    case 'endpoint_close':
      return e.endpoint_id;
    default:
      return e.process_id;
  }
}

/** The tables of process activity, under the aliases every read of them gives them. */
interface ActivityTables {
  p: ProcessesTable;
  f: FileOpensTable;
  e: EndpointsTable;
  s: EndpointStatesTable;
}
type Alias = keyof ActivityTables;
const activity = expressionBuilder<ActivityTables, Alias>();

/** Where one source of activity events keeps what the shared filters and the event order read. */
interface ActivitySource {
  readonly time: StringReference<ActivityTables, Alias>;
  readonly ord: StringReference<ActivityTables, Alias>;
  readonly host: `${Alias}.host_id`;
  readonly id: `${Alias}.id`;
  readonly pid: `${Exclude<Alias, 's'>}.pid`;
  /** The row id of the process image the event is of. */
  readonly process: 'p.id' | 'f.process_id' | 'e.process_id';
  /** The endpoint row the event is of, for a source read through ResolvedQuery.endpointIds. */
  readonly endpoint?: 's.endpoint_id';
  /** The RANK of this source's events (every source yields events of one rank). */
  readonly rank: number;
  /**
   * Files and endpoints reach the process holding them through a left join as `p`; one of no
   * process on record is not the recorder's.
   */
  readonly held: boolean;
}

/**
 * What every activity read keeps: instant events in the window (from <= time <= to), of the hosts,
 * of the pid, and not the recorder's when observer is false.
 */
function activityFilters(src: ActivitySource, opts: ResolvedQuery, caps: Capabilities): Expression<SqlBool> {
  // With the command resolved to a few process rows, the engine is to start from those rows (their
  // (process_id, time, ord) indexes, migration 0018) from the instant on, not walk the host's time
  // index testing each event: an empty concatenation keeps the host out of index use, and so every
  // index that leads with it.
  const resolved = opts.processIds !== undefined;
  const time = activity.ref(src.time);
  const host = resolved ? sql`(${activity.ref(src.host)} || '')` : activity.ref(src.host);
  const out: Expression<SqlBool>[] = [];
  if (opts.from !== undefined) out.push(sql<SqlBool>`${time} >= ${opts.from}`);
  if (opts.to !== undefined) out.push(sql<SqlBool>`${time} <= ${opts.to}`);
  if (opts.hosts) out.push(activity(host, 'in', opts.hosts));
  if (opts.pid !== undefined) out.push(activity(src.pid, '=', opts.pid));
  if (opts.observer === false) out.push(src.held ? NOT_OBSERVER_HELD : activity('p.observer', '=', 0));
  const { user, command, path, remote, port, country } = opts;
  if (user !== undefined) {
    out.push(
      /^\d+$/.test(user)
        ? activity.or([activity('p.ruid', '=', Number(user)), activity('p.euid', '=', Number(user))])
        : activity('p.user', '=', user),
    );
  }
  const pageIds = opts.pageIds;
  if (pageIds !== undefined) {
    const ids = pageIds.get(src.rank) ?? [];
    out.push(ids.length === 0 ? sql<SqlBool>`1 = 0` : activity(src.id, 'in', ids));
  } else if (opts.endpointIds !== undefined && src.endpoint !== undefined) {
    out.push(
      opts.endpointIds.length === 0 ? sql<SqlBool>`1 = 0` : activity(src.endpoint, 'in', opts.endpointIds),
    );
  } else if (opts.processIds !== undefined) {
    out.push(
      opts.processIds.length === 0 ? sql<SqlBool>`1 = 0` : activity(src.process, 'in', opts.processIds),
    );
  } else if (command !== undefined) {
    out.push(
      caps.commandMatches(
        { id: sql.ref('p.id'), cmdline: sql.ref('p.cmdline'), exe: sql.ref('p.exe') },
        command,
      ),
    );
  }
  if (path !== undefined) out.push(globMatch(sql.ref('f.path'), path));
  if (remote !== undefined) out.push(activity('e.remote_ip', '=', remote));
  if (port !== undefined)
    out.push(activity.or([activity('e.local_port', '=', port), activity('e.remote_port', '=', port)]));
  if (country !== undefined) out.push(activity('e.country', '=', country.toUpperCase()));
  if (opts.after !== undefined)
    out.push(...afterCursor(time, activity.ref(src.ord), host, activity.ref(src.id), src.rank, opts.after));
  return activity.and(out);
}

/**
 * Rows after the cursor in timeline order (time, ord, host_id, rank, id). The plain `time >= T`
 * lets the engine start from the time index; the row value comparison then drops what the previous
 * page already showed (a keyframe writes hundreds of rows with the same time and ord).
 */
function afterCursor(
  time: Expression<unknown>,
  ord: Expression<unknown>,
  host: Expression<unknown>,
  id: Expression<unknown>,
  rank: number,
  c: TimelineCursor,
): Expression<SqlBool>[] {
  const cOrd = c.ord ?? -1;
  const cRank = RANK[c.kind];
  const key = sql`(${time}, coalesce(${ord}, -1), ${host})`;
  const at = sql`(${c.time}, ${cOrd}, ${c.host_id})`;
  const after =
    rank > cRank
      ? sql<SqlBool>`${key} >= ${at}`
      : rank < cRank
        ? sql<SqlBool>`${key} > ${at}`
        : sql<SqlBool>`(${time}, coalesce(${ord}, -1), ${host}, ${id}) > (${c.time}, ${cOrd}, ${c.host_id}, ${c.id})`;
  return [sql<SqlBool>`${time} >= ${c.time}`, after];
}

/** The first `limit` rows of a source in the order compareEvents refines: (time, ord, host_id, id). */
function inEventOrder<DB, TB extends keyof DB, O>(
  q: SelectQueryBuilder<DB, TB, O>,
  src: ActivitySource,
  limit: number,
): SelectQueryBuilder<DB, TB, O> {
  return q
    .orderBy(activity.ref(src.time))
    .orderBy(activity.ref(src.ord))
    .orderBy(activity.ref(src.host))
    .orderBy(activity.ref(src.id))
    .limit(limit);
}

/** Where an event sorts (compareEvents' order), without the event. */
interface EventKey {
  readonly time: number;
  readonly ord: number;
  readonly host_id: string;
  readonly rank: number;
  readonly id: number;
}

function compareKeys(a: EventKey, b: EventKey): number {
  return (
    a.time - b.time ||
    a.ord - b.ord ||
    (a.host_id < b.host_id ? -1 : a.host_id > b.host_id ? 1 : 0) ||
    a.rank - b.rank ||
    a.id - b.id
  );
}

/** A source's order keys (k_time, k_ord, k_host, k_rank, k_id), not run: one arm of mergedKeys. */
// biome-ignore lint/suspicious/noExplicitAny: the arms read different tables; only their select list is shared.
type KeyQuery = SelectQueryBuilder<any, any, KeyRow>;
interface KeyRow {
  k_time: number;
  k_ord: number | null;
  k_host: string;
  k_rank: number;
  k_id: number;
}

/**
 * Reads a source's first `limit` rows in event order; with a probe, adds the query of their order
 * keys to it instead (the same query, its select list replaced) and returns null.
 */
async function readSource<DB, TB extends keyof DB, O>(
  q: SelectQueryBuilder<DB, TB, O>,
  src: ActivitySource,
  limit: number,
  probe: KeyQuery[] | undefined,
): Promise<O[] | null> {
  if (probe === undefined) return inEventOrder(q, src, limit).execute();
  const keyed = q
    .clearSelect()
    .select([
      sql<number>`${activity.ref(src.time)}`.as('k_time'),
      sql<number | null>`${activity.ref(src.ord)}`.as('k_ord'),
      sql<string>`${activity.ref(src.host)}`.as('k_host'),
      sql<number>`${sql.lit(src.rank)}`.as('k_rank'),
      sql<number>`${activity.ref(src.id)}`.as('k_id'),
    ] as never);
  probe.push(inEventOrder(keyed, src, limit) as unknown as KeyQuery);
  return null;
}

/**
 * The first `limit` order keys of all the arms together, in timeline order: each arm (already in
 * its source's order, at most `limit` rows) a subquery of one UNION ALL under one ORDER BY.
 */
async function mergedKeys(store: Store, arms: readonly KeyQuery[], limit: number): Promise<EventKey[]> {
  const sub = (q: KeyQuery, i: number) => store.db.selectFrom(q.as(`k${i}`)).selectAll();
  let u = sub(arms[0], 0);
  for (let i = 1; i < arms.length; i++) u = u.unionAll(sub(arms[i], i));
  const rows = (await u
    .orderBy('k_time')
    .orderBy('k_ord')
    .orderBy('k_host')
    .orderBy('k_rank')
    .orderBy('k_id')
    .limit(limit)
    .execute()) as unknown as KeyRow[];
  const keys = rows.map((r) => ({
    time: Number(r.k_time),
    ord: r.k_ord === null ? -1 : Number(r.k_ord),
    host_id: r.k_host,
    rank: Number(r.k_rank),
    id: Number(r.k_id),
  }));
  // The engines order a NULL ord differently (first, last); the page's order puts it first.
  return keys.sort(compareKeys);
}

/**
 * The first `limit` order keys of the arms, each run on its own (at most `limit` rows each, in its
 * source's order) and merged here: what mergedKeys does in one statement, for arms too large to
 * share one (each holds the resolved process rows' ids).
 */
async function separateKeys(arms: readonly KeyQuery[], limit: number): Promise<EventKey[]> {
  const keys: EventKey[] = [];
  for (const arm of arms) {
    for (const r of await arm.execute()) {
      keys.push({
        time: Number(r.k_time),
        ord: r.k_ord === null ? -1 : Number(r.k_ord),
        host_id: r.k_host,
        rank: Number(r.k_rank),
        id: Number(r.k_id),
      });
    }
  }
  return keys.sort(compareKeys).slice(0, limit);
}

async function processImages(
  store: Store,
  opts: ResolvedQuery,
  kinds: ReadonlySet<TimelineKind>,
  limit: number,
  probe?: KeyQuery[],
): Promise<readonly ProcessEvent[]> {
  const src: ActivitySource = { ...PROCESS_SOURCE, time: 'p.start', ord: 'p.open_ord' };
  let q = store.db
    .selectFrom('processes as p')
    .innerJoin('hosts as h', 'h.host_id', 'p.host_id')
    .select([...PROCESS_COLUMNS, 'h.name as host'])
    .where(activityFilters(src, opts, store.caps));
  if (!kinds.has('process_exec')) q = q.where('p.exec_index', '=', 0);
  if (!kinds.has('process_start')) q = q.where('p.exec_index', '>', 0);
  const rows = await readSource(q, src, limit, probe);
  if (rows === null) return [];
  return rows.map((r) => {
    const p = toProcessRow(r, r.host);
    return processEvent(
      p,
      p.exec_index === 0 ? 'process_start' : 'process_exec',
      p.start,
      p.open_ord,
      describeProcess(p),
    );
  });
}

async function processExits(
  store: Store,
  opts: ResolvedQuery,
  limit: number,
  probe?: KeyQuery[],
): Promise<readonly ProcessEvent[]> {
  const src: ActivitySource = {
    ...PROCESS_SOURCE,
    time: 'p.end',
    ord: 'p.close_ord',
    rank: RANK.process_exit,
  };
  const q = store.db
    .selectFrom('processes as p')
    .innerJoin('hosts as h', 'h.host_id', 'p.host_id')
    .select([...PROCESS_COLUMNS, 'h.name as host'])
    .where('p.end', 'is not', null)
    // An image ended by exec is followed by the next image's process_exec: the process lives on.
    .where((eb) => eb.or([eb('p.end_reason', 'is', null), eb('p.end_reason', '<>', 'exec')]))
    .where(activityFilters(src, opts, store.caps));
  const rows = await readSource(q, src, limit, probe);
  if (rows === null) return [];
  return rows.map((r) => {
    const p = toProcessRow(r, r.host);
    const how =
      p.end_reason === 'exit' || p.end_reason === null
        ? 'exited'
        : p.end_reason === 'keyframe'
          ? 'gone (its exit was not seen; found gone at a keyframe)'
          : `ended (${p.end_reason})`;
    return processEvent(p, 'process_exit', p.end!, p.close_ord, `${p.comm} ${how}`);
  });
}

const PROCESS_SOURCE = {
  host: 'p.host_id',
  id: 'p.id',
  pid: 'p.pid',
  process: 'p.id',
  held: false,
  rank: 1,
} as const;

function processEvent(
  p: ReturnType<typeof toProcessRow>,
  kind: ProcessEvent['kind'],
  time: number,
  ord: number | null,
  summary: string,
): ProcessEvent {
  return Object.freeze({
    time,
    ord,
    host: p.host,
    host_id: p.host_id,
    kind,
    pid: p.pid,
    summary,
    process_id: p.id,
    parent_id: p.parent_id,
    ppid: p.ppid,
    exe: p.exe,
    exe_raw_b64: p.exe_raw_b64,
    comm: p.comm,
    argv: p.argv,
    argv_raw_b64: p.argv_raw_b64,
    cmdline: p.cmdline,
    cwd: p.cwd,
    cwd_raw_b64: p.cwd_raw_b64,
    ruid: p.ruid,
    euid: p.euid,
    rgid: p.rgid,
    egid: p.egid,
    user: p.user,
    source: p.source,
    observer: p.observer,
    argv_source: p.argv_source,
    argv_complete: p.argv_complete,
    cgroup: p.cgroup,
    cgroup_raw_b64: p.cgroup_raw_b64,
    container_id: p.container_id,
    ns_pid: p.ns_pid,
    ns_net: p.ns_net,
    ns_mnt: p.ns_mnt,
    ns_user: p.ns_user,
    exec_index: p.exec_index,
    start: p.start,
    end: p.end,
    end_reason: p.end_reason,
  });
}

/** A file or endpoint opens at its first sight (first_seen, open_ord) and closes at its last. */
function heldSource(alias: 'f' | 'e', opening: boolean): ActivitySource {
  const rank =
    alias === 'f'
      ? RANK[opening ? 'file_open' : 'file_close']
      : RANK[opening ? 'endpoint_open' : 'endpoint_close'];
  return {
    rank,
    time: opening ? `${alias}.first_seen` : `${alias}.last_seen`,
    ord: opening ? `${alias}.open_ord` : `${alias}.close_ord`,
    host: `${alias}.host_id`,
    id: `${alias}.id`,
    pid: `${alias}.pid`,
    process: `${alias}.process_id`,
    held: true,
  };
}

async function fileEvents(
  store: Store,
  opts: ResolvedQuery,
  kind: 'file_open' | 'file_close',
  limit: number,
  probe?: KeyQuery[],
): Promise<readonly FileEvent[]> {
  const src = heldSource('f', kind === 'file_open');
  let q = store.db
    .selectFrom('file_opens as f')
    .innerJoin('hosts as h', 'h.host_id', 'f.host_id')
    .leftJoin('processes as p', 'p.id', 'f.process_id')
    .select(FILE_COLUMNS)
    .where(activityFilters(src, opts, store.caps));
  if (kind === 'file_close') q = q.where('f.is_open', '=', 0);
  const rows = await readSource(q, src, limit, probe);
  if (rows === null) return [];
  return rows.map((r) => {
    const open = kind === 'file_open';
    const detail = r.kind === 'file' ? `fd ${r.fd}` : `fd ${r.fd}, ${r.kind}`;
    return Object.freeze({
      time: open ? r.first_seen : r.last_seen,
      ord: open ? r.open_ord : r.close_ord,
      host: r.host,
      host_id: r.host_id,
      kind,
      pid: r.pid,
      summary: `${open ? 'opened' : 'closed'} ${r.path} (${detail})`,
      file_id: r.id,
      process_id: r.process_id,
      comm: r.comm,
      fd: r.fd,
      path: r.path,
      path_raw_b64: toBase64(r.path_raw),
      file_kind: r.kind,
    });
  });
}

/** What every endpoint event tells of its endpoint. */
const ENDPOINT_COLUMNS = [...SOCKET_COLUMNS, 'e.country', 'e.fqdn'] as const;

async function endpointEvents(
  store: Store,
  opts: ResolvedQuery,
  kind: 'endpoint_open' | 'endpoint_close',
  limit: number,
  probe?: KeyQuery[],
): Promise<readonly EndpointEvent[]> {
  const src = heldSource('e', kind === 'endpoint_open');
  let q = store.db
    .selectFrom('endpoints as e')
    .innerJoin('hosts as h', 'h.host_id', 'e.host_id')
    .leftJoin('processes as p', 'p.id', 'e.process_id')
    .select([...ENDPOINT_COLUMNS, 'e.state', 'e.first_seen', 'e.last_seen', 'e.open_ord', 'e.close_ord'])
    // Which state an endpoint opened in is known only from a state row at its opening (the last
    // state is all the endpoint row keeps); without any state row it never changed.
    .select((eb) =>
      eb
        .selectFrom('endpoint_states as s')
        .select('s.state')
        .whereRef('s.endpoint_id', '=', 'e.id')
        .whereRef('s.t', '=', 'e.first_seen')
        .orderBy('s.ord')
        .limit(1)
        .as('opening_state'),
    )
    .select((eb) =>
      eb
        .selectFrom('endpoint_states as s')
        .select((c) => c.fn.countAll<number>().as('n'))
        .whereRef('s.endpoint_id', '=', 'e.id')
        .as('state_changes'),
    )
    .where(activityFilters(src, opts, store.caps));
  if (kind === 'endpoint_close') q = q.where('e.is_open', '=', 0);
  const rows = await readSource(q, src, limit, probe);
  if (rows === null) return [];
  return rows.map((r) => {
    const open = kind === 'endpoint_open';
    const state = !open
      ? r.state
      : (r.opening_state ?? (Number(r.state_changes ?? 0) === 0 ? r.state : null));
    const summary = describeEndpoint({ ...r, state: open ? (state ?? '') : 'closed' });
    return endpointEvent(
      r,
      kind,
      open ? r.first_seen : r.last_seen,
      open ? r.open_ord : r.close_ord,
      state,
      summary,
    );
  });
}

async function endpointStates(
  store: Store,
  opts: ResolvedQuery,
  limit: number,
  probe?: KeyQuery[],
): Promise<readonly EndpointEvent[]> {
  const src: ActivitySource = {
    time: 's.t',
    ord: 's.ord',
    host: 's.host_id',
    // compareEvents orders equal (time, ord, host) states by endpoint: a keyframe changes many at once.
    id: 'e.id',
    pid: 'e.pid',
    process: 'e.process_id',
    held: true,
    rank: RANK.endpoint_state,
    endpoint: 's.endpoint_id',
  };
  const q = store.db
    .selectFrom('endpoint_states as s')
    .innerJoin('endpoints as e', 'e.id', 's.endpoint_id')
    .innerJoin('hosts as h', 'h.host_id', 's.host_id')
    .leftJoin('processes as p', 'p.id', 'e.process_id')
    .select([...ENDPOINT_COLUMNS, 's.t', 's.ord', 's.state', 's.id as state_id'])
    // Ingest also records the state an endpoint opened in; endpoint_open already tells that one.
    .whereRef('s.ord', '<>', 'e.open_ord')
    .where(activityFilters(src, opts, store.caps));
  const rows = await readSource(q, src, limit, probe);
  if (rows === null) return [];
  return rows.map((r) => endpointEvent(r, 'endpoint_state', r.t, r.ord, r.state, describeEndpoint(r)));
}

type EndpointSelection = Pick<
  EndpointRow,
  | 'id'
  | 'process_id'
  | 'host'
  | 'host_id'
  | 'pid'
  | 'comm'
  | 'proto'
  | 'family'
  | 'local_ip'
  | 'local_port'
  | 'remote_ip'
  | 'remote_port'
  | 'country'
  | 'fqdn'
>;

function endpointEvent(
  r: EndpointSelection,
  kind: EndpointEvent['kind'],
  time: number,
  ord: number | null,
  state: string | null,
  summary: string,
): EndpointEvent {
  return Object.freeze({
    time,
    ord,
    host: r.host,
    host_id: r.host_id,
    kind,
    pid: r.pid,
    summary,
    endpoint_id: r.id,
    process_id: r.process_id,
    comm: r.comm,
    proto: r.proto,
    family: r.family,
    local_ip: r.local_ip,
    local_port: r.local_port,
    remote_ip: r.remote_ip,
    remote_port: r.remote_port,
    state,
    country: r.country,
    fqdn: r.fqdn,
  });
}

async function gaps(store: Store, opts: TimelineQuery, limit: number): Promise<readonly GapEvent[]> {
  // A gap covers [t_from, t_to]; it belongs to any window it overlaps. A sequence gap found by the
  // server knows only where the loss ended (t_to: the next batch's start); without any time, when
  // the server noticed it stands in.
  const start = sql<number>`coalesce(g.t_from, g.t_to, g.at)`;
  const end = sql<number>`coalesce(g.t_to, g.t_from, g.at)`;
  let q = store.db
    .selectFrom('gaps as g')
    .innerJoin('hosts as h', 'h.host_id', 'g.host_id')
    .select([
      'g.id',
      'g.host_id',
      'h.name as host',
      'g.kind',
      'g.seq',
      'g.t_from',
      'g.t_to',
      'g.detail',
      'g.at',
    ])
    .select(start.as('time'));
  if (opts.to !== undefined) q = q.where(sql<SqlBool>`${start} <= ${opts.to}`);
  if (opts.from !== undefined) q = q.where(sql<SqlBool>`${end} >= ${opts.from}`);
  if (opts.hosts) q = q.where('g.host_id', 'in', opts.hosts);
  if (opts.after !== undefined) {
    q = q.where((eb) =>
      eb.and(afterCursor(start, sql`null`, eb.ref('g.host_id'), eb.ref('g.seq'), RANK.gap, opts.after!)),
    );
  }
  const rows = await q
    .orderBy(start)
    .orderBy('g.host_id')
    .orderBy('g.seq')
    .orderBy('g.id')
    .limit(limit)
    .execute();
  return rows.map((r) =>
    Object.freeze({
      time: Number(r.time),
      ord: null,
      host: r.host,
      host_id: r.host_id,
      kind: 'gap',
      pid: null,
      summary: `gap (${r.kind}, batch ${r.seq}): ${r.detail}`,
      gap_kind: r.kind,
      seq: r.seq,
      t_from: r.t_from,
      t_to: r.t_to,
      detail: r.detail,
    }),
  );
}
