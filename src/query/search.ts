import { isIP } from 'node:net';
import { sql } from 'kysely';
import { PofrError } from '../errors.js';
import type { Store } from '../store/index.js';
import { globMatch } from './files.js';
import { describeEndpoint } from './net.js';
import { describeProcess, PROCESS_COLUMNS, toProcessRow } from './process-row.js';

export const SEARCH_KINDS = Object.freeze(['command', 'path', 'ip', 'name', 'user'] as const);
export type SearchKind = (typeof SEARCH_KINDS)[number];

export interface SearchQuery {
  readonly kind: SearchKind;
  readonly term: string;
  readonly hosts?: readonly string[];
  readonly limit?: number;
}

/**
 * One place the term was found: a process, a file it held or an endpoint it owned, with the
 * process and instant to open the tree at (the reverse pivot: "who opened /etc/shadow").
 */
export interface SearchHit {
  readonly what: 'process' | 'file' | 'endpoint';
  readonly host: string;
  readonly host_id: string;
  readonly process_id: number | null;
  readonly pid: number | null;
  readonly comm: string | null;
  readonly user: string | null;
  /** µs UTC: when it happened (start, first sight). */
  readonly time: number;
  readonly summary: string;
  /** The file or endpoint row, for files and endpoints. */
  readonly row_id: number;
}

/**
 * Finds a command (substring of the command line or exe), a path (exact, or a glob with `*`), an IP
 * address (remote or local), a name (reverse DNS of a remote address) or a user across hosts,
 * newest first.
 *
 * @example
 * await search(store, { kind: 'path', term: '/etc/shadow' }); // who opened it, where, when
 */
export async function search(store: Store, q: SearchQuery): Promise<readonly SearchHit[]> {
  const term = q.term.trim();
  if (term === '') throw new PofrError('POFR_USAGE', 'search needs a term');
  const limit = q.limit ?? 200;
  if (q.hosts?.length === 0) return Object.freeze([]);
  switch (q.kind) {
    case 'command':
    case 'user':
      return processHits(store, q.kind, term, q.hosts, limit);
    case 'path':
      return fileHits(store, term, q.hosts, limit);
    case 'ip':
    case 'name':
      return endpointHits(store, q.kind, term, q.hosts, limit);
    default:
      throw new PofrError(
        'POFR_USAGE',
        `unknown search kind "${String(q.kind)}"; use ${SEARCH_KINDS.join(', ')}`,
      );
  }
}

async function processHits(
  store: Store,
  kind: 'command' | 'user',
  term: string,
  hosts: readonly string[] | undefined,
  limit: number,
): Promise<SearchHit[]> {
  let q = store.db
    .selectFrom('processes as p')
    .innerJoin('hosts as h', 'h.host_id', 'p.host_id')
    .select([...PROCESS_COLUMNS, 'h.name as host']);
  if (hosts) q = q.where('p.host_id', 'in', hosts);
  if (kind === 'user') {
    q = /^\d+$/.test(term)
      ? q.where((eb) => eb.or([eb('p.ruid', '=', Number(term)), eb('p.euid', '=', Number(term))]))
      : q.where('p.user', '=', term);
    q = q.orderBy('p.start', 'desc');
  } else {
    // A command line holds no NUL (its arguments are C strings): such a term matches nothing, and
    // neither engine could take it (SQLite's LIKE ends the pattern there; PostgreSQL refuses it).
    if (term.includes('\0')) return [];
    // A substring, found through the trigram index (migration 0016); the last recorded first, so
    // a common term returns its newest `limit` hits and the engine stops there.
    q = q
      .where(
        store.caps.commandContains(
          { id: sql.ref('p.id'), cmdline: sql.ref('p.cmdline'), exe: sql.ref('p.exe') },
          term,
        ),
      )
      .orderBy('p.id', 'desc');
  }
  const rows = await q.limit(limit).execute();
  return rows
    .map((r) => {
      const p = toProcessRow(r, r.host);
      return Object.freeze({
        what: 'process' as const,
        host: p.host,
        host_id: p.host_id,
        process_id: p.id,
        pid: p.pid,
        comm: p.comm,
        user: p.user,
        time: p.start,
        summary: describeProcess(p),
        row_id: p.id,
      });
    })
    .sort((a, b) => b.time - a.time);
}

async function fileHits(
  store: Store,
  term: string,
  hosts: readonly string[] | undefined,
  limit: number,
): Promise<SearchHit[]> {
  let q = store.db
    .selectFrom('file_opens as f')
    .innerJoin('hosts as h', 'h.host_id', 'f.host_id')
    .leftJoin('processes as p', 'p.id', 'f.process_id')
    .select([
      'f.id',
      'f.host_id',
      'h.name as host',
      'f.process_id',
      'f.pid',
      'p.comm',
      'p.user',
      'f.path',
      'f.fd',
      'f.first_seen',
    ]);
  if (hosts) q = q.where('f.host_id', 'in', hosts);
  q =
    term.includes('*') || term.includes('?')
      ? q.where(globMatch(sql.ref('f.path'), term))
      : q.where(store.caps.pathEquals(sql.ref('f.path'), term));
  const rows = await q.orderBy('f.first_seen', 'desc').limit(limit).execute();
  return rows.map((r) => heldHit('file', r, `${r.comm ?? `pid ${r.pid}`} opened ${r.path} (fd ${r.fd})`));
}

async function endpointHits(
  store: Store,
  kind: 'ip' | 'name',
  term: string,
  hosts: readonly string[] | undefined,
  limit: number,
): Promise<SearchHit[]> {
  if (kind === 'ip' && isIP(term) === 0) {
    throw new PofrError('POFR_USAGE', `"${term}" is not an IPv4 or IPv6 address`);
  }
  let q = store.db
    .selectFrom('endpoints as e')
    .innerJoin('hosts as h', 'h.host_id', 'e.host_id')
    .leftJoin('processes as p', 'p.id', 'e.process_id')
    .select([
      'e.id',
      'e.host_id',
      'h.name as host',
      'e.process_id',
      'e.pid',
      'p.comm',
      'p.user',
      'e.proto',
      'e.local_ip',
      'e.local_port',
      'e.remote_ip',
      'e.remote_port',
      'e.state',
      'e.fqdn',
      'e.country',
      'e.first_seen',
    ]);
  if (hosts) q = q.where('e.host_id', 'in', hosts);
  q = kind === 'ip' ? q.where('e.remote_ip', '=', term) : q.where('e.fqdn', '=', term.toLowerCase());
  const rows = await q.orderBy('e.first_seen', 'desc').limit(limit).execute();
  return rows.map((r) => heldHit('endpoint', r, `${r.comm ?? 'unknown process'}: ${describeEndpoint(r)}`));
}

/** A file or endpoint hit: the row, and the process holding it. */
function heldHit(
  what: 'file' | 'endpoint',
  r: {
    id: number;
    host: string;
    host_id: string;
    process_id: number | null;
    pid: number | null;
    comm: string | null;
    user: string | null;
    first_seen: number;
  },
  summary: string,
): SearchHit {
  return Object.freeze({
    what,
    host: r.host,
    host_id: r.host_id,
    process_id: r.process_id,
    pid: r.pid,
    comm: r.comm,
    user: r.user,
    time: r.first_seen,
    summary,
    row_id: r.id,
  });
}
