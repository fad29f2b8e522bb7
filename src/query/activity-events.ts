import { sql } from 'kysely';
import type { Store } from '../store/index.js';
import { toBase64, type WindowOptions } from './window.js';

/** Instants of a process's activity, as timeline kinds: a name lookup, a change of its ids. */
export const ACTIVITY_KINDS = Object.freeze(['dns_query', 'cred_change'] as const);
export type ActivityKind = (typeof ACTIVITY_KINDS)[number];

interface ActivityBase {
  readonly time: number;
  readonly ord: number;
  readonly host: string;
  readonly host_id: string;
  readonly pid: number;
  readonly summary: string;
  readonly event_id: number;
  /** The process image it happened in; null when the store does not know the process. */
  readonly process_id: number | null;
  readonly comm: string | null;
}

/** A process looked up a name (glibc `getaddrinfo`, `gethostbyname`, …). */
export interface DnsQueryEvent extends ActivityBase {
  readonly kind: 'dns_query';
  readonly func: string;
  readonly name: string;
  readonly name_raw_b64: string | null;
}

/** A process changed its ids without an exec. */
export interface CredChangeEvent extends ActivityBase {
  readonly kind: 'cred_change';
  readonly call: string;
  readonly old_ruid: number;
  readonly old_euid: number;
  readonly old_rgid: number;
  readonly old_egid: number;
  readonly new_ruid: number;
  readonly new_euid: number;
  readonly new_rgid: number;
  readonly new_egid: number;
}

export type ActivityEvent = DnsQueryEvent | CredChangeEvent;

export interface ActivityQuery extends WindowOptions {
  readonly pid?: number;
  /** false: leave out the recorder's own processes. */
  readonly observer?: boolean;
  /** A user name, or a numeric uid matching the real or effective uid of the process image. */
  readonly user?: string;
  /** Regular expression over the process image's command line or exe path. */
  readonly command?: string;
  /** Only events of these process image rows (a timeline resolves its command filter to them first). */
  readonly processIds?: readonly number[];
  /**
   * Only events after a timeline page's last one; `rank` says whether these events sort before
   * (-1), with (0) or after (1) that one's kind at equal time, ord and host.
   */
  readonly after?: {
    readonly time: number;
    readonly ord: number | null;
    readonly host_id: string;
    readonly id: number;
    readonly rank: -1 | 0 | 1;
  };
}

/**
 * The first `limit` lookups or id changes of the window in (t, ord, host, id) order, with the
 * process image they happened in.
 */
export async function activityEvents(
  store: Store,
  kind: ActivityKind,
  opts: ActivityQuery,
  limit: number,
): Promise<readonly ActivityEvent[]> {
  const table = kind === 'dns_query' ? 'dns_queries' : 'cred_changes';
  // One query shape for both tables: their common columns are named alike.
  let q = store.db
    .selectFrom(`${table} as a` as 'dns_queries as a')
    .innerJoin('hosts as h', 'h.host_id', 'a.host_id')
    .leftJoin('processes as p', 'p.id', 'a.process_id')
    .selectAll('a')
    .select(['h.name as host', 'p.comm']);
  if (opts.from !== undefined) q = q.where('a.t', '>=', opts.from);
  if (opts.to !== undefined) q = q.where('a.t', '<=', opts.to);
  const c = opts.after;
  if (c !== undefined) {
    // Timeline order is (time, ord, host, rank, id): the same row-value test as the other sources.
    const key = sql`(${sql.ref('a.t')}, ${sql.ref('a.ord')}, ${sql.ref('a.host_id')})`;
    const at = sql`(${c.time}, ${c.ord ?? -1}, ${c.host_id})`;
    q = q
      .where('a.t', '>=', c.time)
      .where(
        c.rank > 0
          ? sql<boolean>`${key} >= ${at}`
          : c.rank < 0
            ? sql<boolean>`${key} > ${at}`
            : sql<boolean>`(${sql.ref('a.t')}, ${sql.ref('a.ord')}, ${sql.ref('a.host_id')}, ${sql.ref('a.id')}) > (${c.time}, ${c.ord ?? -1}, ${c.host_id}, ${c.id})`,
      );
  }
  if (opts.hosts) q = q.where('a.host_id', 'in', opts.hosts);
  if (opts.pid !== undefined) q = q.where('a.pid', '=', opts.pid);
  if (opts.observer === false)
    q = q.where((eb) => eb.or([eb('p.observer', 'is', null), eb('p.observer', '=', 0)]));
  const { user, command } = opts;
  if (user !== undefined) {
    q = /^\d+$/.test(user)
      ? q.where((eb) => eb.or([eb('p.ruid', '=', Number(user)), eb('p.euid', '=', Number(user))]))
      : q.where('p.user', '=', user);
  }
  const ids = opts.processIds;
  if (ids !== undefined) {
    q = ids.length === 0 ? q.where(sql<boolean>`1 = 0`) : q.where('a.process_id', 'in', ids);
  } else if (command !== undefined) {
    q = q.where(
      store.caps.commandMatches(
        { id: sql.ref('p.id'), cmdline: sql.ref('p.cmdline'), exe: sql.ref('p.exe') },
        command,
      ),
    );
  }
  const rows = (await q
    .orderBy('a.t')
    .orderBy('a.ord')
    .orderBy('a.host_id')
    .orderBy('a.id')
    .limit(limit)
    .execute()) as unknown as Record<string, unknown>[];
  return rows.map((r) => toEvent(kind, r));
}

function toEvent(kind: ActivityKind, r: Record<string, unknown>): ActivityEvent {
  const n = (k: string) => Number(r[k]);
  const base = {
    time: n('t'),
    ord: n('ord'),
    host: String(r.host),
    host_id: String(r.host_id),
    pid: n('pid'),
    event_id: n('id'),
    process_id: r.process_id === null ? null : n('process_id'),
    comm: r.comm === null ? null : String(r.comm),
  };
  const who = `${base.comm ?? '?'} (pid ${base.pid})`;
  if (kind === 'dns_query') {
    const name = String(r.name);
    return Object.freeze({
      ...base,
      kind,
      summary: `${who} looked up ${JSON.stringify(name)} (${String(r.func)})`,
      func: String(r.func),
      name,
      name_raw_b64: toBase64(r.name_raw as Uint8Array | null),
    });
  }
  const ids = ['ruid', 'euid', 'rgid', 'egid'] as const;
  const changed = ids.filter((id) => n(`old_${id}`) !== n(`new_${id}`));
  return Object.freeze({
    ...base,
    kind,
    summary: `${who} changed its ids without exec (${String(r.call)}): ${
      changed.length === 0
        ? 'no change'
        : changed.map((id) => `${id} ${n(`old_${id}`)} → ${n(`new_${id}`)}`).join(', ')
    }`,
    call: String(r.call),
    old_ruid: n('old_ruid'),
    old_euid: n('old_euid'),
    old_rgid: n('old_rgid'),
    old_egid: n('old_egid'),
    new_ruid: n('new_ruid'),
    new_euid: n('new_euid'),
    new_rgid: n('new_rgid'),
    new_egid: n('new_egid'),
  });
}
