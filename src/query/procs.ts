import { sql } from 'kysely';
import { PofrError } from '../errors.js';
import type { Store } from '../store/index.js';
import { PROCESS_COLUMNS, type ProcessRow, toProcessRow } from './process-row.js';
import { limitOf, type WindowOptions } from './window.js';

export interface ProcessQuery extends WindowOptions {
  /** Regular expression searched in the joined command line or the exe path. */
  readonly command?: string;
  /** A user name, or a numeric uid matching the real or effective uid. */
  readonly user?: string;
  readonly pid?: number;
  /** false: leave out the recorder's own processes; otherwise they are included. */
  readonly observer?: boolean;
  /** A container id: its full 64 hex digits or a prefix of them (as `docker ps` shows 12). */
  readonly container?: string;
}

/**
 * Program images that ran in the window (start <= to, and end >= from or still running), in the
 * order they started.
 *
 * @example
 * const rows = await findProcesses(store, { command: 'curl|wget', from: t0, to: t1 });
 */
export async function findProcesses(store: Store, opts: ProcessQuery = {}): Promise<readonly ProcessRow[]> {
  if (opts.hosts?.length === 0) return Object.freeze([]);
  let q = store.db
    .selectFrom('processes as p')
    .innerJoin('hosts as h', 'h.host_id', 'p.host_id')
    .select([...PROCESS_COLUMNS, 'h.name as host']);
  if (opts.hosts) q = q.where('p.host_id', 'in', opts.hosts);
  const { from, to, pid, user, command } = opts;
  if (to !== undefined) q = q.where('p.start', '<=', to);
  if (from !== undefined) q = q.where((eb) => eb.or([eb('p.end', 'is', null), eb('p.end', '>=', from)]));
  if (pid !== undefined) q = q.where('p.pid', '=', pid);
  if (opts.observer === false) q = q.where('p.observer', '=', 0);
  if (opts.container !== undefined) {
    const id = opts.container.toLowerCase();
    if (!/^[0-9a-f]{1,64}$/.test(id)) {
      throw new PofrError(
        'POFR_USAGE',
        `--container ${JSON.stringify(opts.container)} is not a container id: give its hex id or a prefix of it (as docker ps shows)`,
      );
    }
    // Hex digits only: the prefix cannot hold a LIKE wildcard.
    q = id.length === 64 ? q.where('p.container_id', '=', id) : q.where('p.container_id', 'like', `${id}%`);
  }
  if (user !== undefined) {
    q = /^\d+$/.test(user)
      ? q.where((eb) => eb.or([eb('p.ruid', '=', Number(user)), eb('p.euid', '=', Number(user))]))
      : q.where('p.user', '=', user);
  }
  if (command !== undefined) {
    q = q.where(
      store.caps.commandMatches(
        { id: sql.ref('p.id'), cmdline: sql.ref('p.cmdline'), exe: sql.ref('p.exe') },
        command,
      ),
    );
  }
  q = q.orderBy('p.start').orderBy('p.open_ord').orderBy('p.id').limit(limitOf(opts));
  const rows = await withRegexErrors(command, () => q.execute());
  return Object.freeze(rows.map((r) => toProcessRow(r, r.host)));
}

/** Turns the engine's complaint about a malformed pattern into an error the analyst can act on. */
export async function withRegexErrors<T>(pattern: string | undefined, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    const err = e as { code?: string; message?: string };
    // SyntaxError: thrown by the SQLite regexp() function; 2201B: PostgreSQL invalid_regular_expression.
    if (pattern !== undefined && (e instanceof SyntaxError || err.code === '2201B')) {
      throw new PofrError(
        'POFR_USAGE',
        `"${pattern}" is not a valid regular expression (${err.message}); escape special characters with \\`,
      );
    }
    throw e;
  }
}
