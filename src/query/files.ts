import { type RawBuilder, sql } from 'kysely';
import type { Store } from '../store/index.js';
import { NOT_OBSERVER_HELD } from './process-row.js';
import { limitOf, toBase64, type WindowOptions } from './window.js';

export interface FileQuery extends WindowOptions {
  /** Glob over the whole path: `*` matches any characters, '/' included; `?` exactly one. */
  readonly path?: string;
  readonly pid?: number;
  /** Only the files of these process rows (the images of one process: the process page). */
  readonly processIds?: readonly number[];
  /** file | dir | dev | socket | pipe | anon | other */
  readonly kind?: string;
  /** false: leave out files held by the recorder's own processes. */
  readonly observer?: boolean;
}

/** One file descriptor held open by a process, from first to last sight. */
export interface FileRow {
  readonly id: number;
  readonly process_id: number;
  readonly host: string;
  readonly host_id: string;
  readonly pid: number;
  readonly comm: string | null;
  readonly path: string;
  readonly path_raw_b64: string | null;
  readonly fd: number;
  readonly kind: string;
  readonly first_seen: number;
  readonly last_seen: number;
  /** Still open at the end of the record. */
  readonly open: boolean;
  readonly open_ord: number;
  readonly close_ord: number | null;
}

/**
 * The file_opens columns a FileRow is made from (select them from `file_opens as f` joined to
 * `hosts as h`, left-joined to `processes as p`).
 */
export const FILE_COLUMNS = [
  'f.id',
  'f.process_id',
  'h.name as host',
  'f.host_id',
  'f.pid',
  'p.comm',
  'f.path',
  'f.path_raw',
  'f.fd',
  'f.kind',
  'f.first_seen',
  'f.last_seen',
  'f.is_open',
  'f.open_ord',
  'f.close_ord',
] as const;

/**
 * Files held open in the window (first_seen <= to, and last_seen >= from or still open), in the
 * order they were opened.
 *
 * @example
 * const rows = await findFiles(store, { path: '/etc/shadow*' });
 */
export async function findFiles(store: Store, opts: FileQuery = {}): Promise<readonly FileRow[]> {
  if (opts.hosts?.length === 0 || opts.processIds?.length === 0) return Object.freeze([]);
  let q = store.db
    .selectFrom('file_opens as f')
    .innerJoin('hosts as h', 'h.host_id', 'f.host_id')
    .leftJoin('processes as p', 'p.id', 'f.process_id')
    .select(FILE_COLUMNS);
  if (opts.hosts) q = q.where('f.host_id', 'in', opts.hosts);
  const { from, to, pid, kind, path } = opts;
  if (to !== undefined) q = q.where('f.first_seen', '<=', to);
  if (from !== undefined)
    q = q.where((eb) => eb.or([eb('f.last_seen', '>=', from), eb('f.is_open', '=', 1)]));
  if (pid !== undefined) q = q.where('f.pid', '=', pid);
  if (opts.processIds) q = q.where('f.process_id', 'in', opts.processIds);
  if (kind !== undefined) q = q.where('f.kind', '=', kind);
  if (path !== undefined) q = q.where(globMatch(sql.ref('f.path'), path));
  if (opts.observer === false) q = q.where(NOT_OBSERVER_HELD);
  const rows = await q
    .orderBy('f.first_seen')
    .orderBy('f.open_ord')
    .orderBy('f.id')
    .limit(limitOf(opts))
    .execute();
  return Object.freeze(
    rows.map((r) =>
      Object.freeze({
        id: r.id,
        process_id: r.process_id,
        host: r.host,
        host_id: r.host_id,
        pid: r.pid,
        comm: r.comm,
        path: r.path,
        path_raw_b64: toBase64(r.path_raw),
        fd: r.fd,
        kind: r.kind,
        first_seen: r.first_seen,
        last_seen: r.last_seen,
        open: Number(r.is_open) !== 0,
        open_ord: r.open_ord,
        close_ord: r.close_ord,
      }),
    ),
  );
}

/**
 * A glob as a LIKE pattern: `*` → `%`, `?` → `_`, and every `%`, `_` and `\` of the glob escaped so
 * that they match themselves (paths such as /tmp/50%_off are common enough to matter).
 */
export function globToLike(glob: string): string {
  let out = '';
  for (const c of glob) {
    if (c === '*') out += '%';
    else if (c === '?') out += '_';
    else if (c === '%' || c === '_' || c === '\\') out += `\\${c}`;
    else out += c;
  }
  return out;
}

/** Case-sensitive on both engines (the SQLite dialect turns case_sensitive_like on). */
export function globMatch(expr: RawBuilder<unknown>, glob: string): RawBuilder<boolean> {
  return sql<boolean>`(${expr} like ${globToLike(glob)} escape '\\')`;
}
