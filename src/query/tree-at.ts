import { sql } from 'kysely';
import {
  LIFETIME_BOUNDS_US,
  LIFETIME_LONGEST,
  LIFETIME_RUNNING,
  lifetimeClassSql,
  type Store,
} from '../store/index.js';
import { PROCESS_COLUMNS, type ProcessRow, toProcessRow } from './process-row.js';

export interface TreeQuery {
  readonly hosts?: readonly string[];
  /** µs UTC */
  readonly at: number;
  /** false: leave out the recorder's own processes (their children are shown as roots). */
  readonly observer?: boolean;
  /** At most this many rows of the depth-first listing. */
  readonly limit?: number;
}

/** One process alive at the instant, in depth-first order. */
export interface TreeRow extends ProcessRow {
  /** 0 for roots (no living parent on record), parent depth + 1 below. */
  readonly depth: number;
}

/**
 * The process tree alive at `at` (start <= at < end): each host's roots by start time, every child
 * listed right below its parent. The parent is the row `parent_id` points at, or the live image of
 * that same process after an exec; failing that, the live process whose pid is the ppid.
 *
 * @example
 * for (const p of await treeAt(store, { at })) console.log(' '.repeat(p.depth * 2) + p.cmdline);
 */
export async function treeAt(store: Store, opts: TreeQuery): Promise<readonly TreeRow[]> {
  if (opts.hosts?.length === 0) return Object.freeze([]);
  const alive = await aliveAt(store, opts);

  const byIdentity = new Map<string, ProcessRow>();
  const byPid = new Map<string, ProcessRow>();
  for (const p of alive) {
    byIdentity.set(identity(p), p);
    byPid.set(`${p.host_id}\0${p.boot_id}\0${p.pid}`, p);
  }
  // parent_id may name an earlier image of the parent (ended by its exec): find that row's identity.
  const parentIds = [...new Set(alive.map((p) => p.parent_id).filter((id): id is number => id !== null))];
  const parentIdentity = new Map<number, string>();
  for (let i = 0; i < parentIds.length; i += 500) {
    const rows = await store.db
      .selectFrom('processes')
      .select(['id', 'host_id', 'boot_id', 'pid', 'start_ticks'])
      .where('id', 'in', parentIds.slice(i, i + 500))
      .execute();
    for (const r of rows) parentIdentity.set(r.id, identity(r));
  }

  const children = new Map<ProcessRow, ProcessRow[]>();
  const roots: ProcessRow[] = [];
  for (const p of alive) {
    const viaRow = p.parent_id === null ? undefined : byIdentity.get(parentIdentity.get(p.parent_id) ?? '');
    const parent = viaRow ?? byPid.get(`${p.host_id}\0${p.boot_id}\0${p.ppid}`);
    if (parent === undefined || parent === p) roots.push(p);
    else children.set(parent, [...(children.get(parent) ?? []), p]);
  }

  const out: TreeRow[] = [];
  const seen = new Set<ProcessRow>();
  const visit = (p: ProcessRow, depth: number): void => {
    // Iterative, since a long fork chain must not overflow the stack.
    const stack: [ProcessRow, number][] = [[p, depth]];
    while (stack.length > 0) {
      const [node, d] = stack.pop()!;
      if (seen.has(node)) continue;
      seen.add(node);
      out.push(Object.freeze({ ...node, depth: d }));
      const kids = [...(children.get(node) ?? [])].sort(byStart);
      for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], d + 1]);
    }
  };
  roots.sort(
    (a, b) =>
      (a.host < b.host ? -1 : a.host > b.host ? 1 : 0) || a.host_id.localeCompare(b.host_id) || byStart(a, b),
  );
  for (const r of roots) visit(r, 0);
  // Bad data could make a parent cycle with no root: show its members rather than lose them.
  for (const p of [...alive].sort(byStart)) if (!seen.has(p)) visit(p, 0);

  return Object.freeze(opts.limit === undefined ? out : out.slice(0, opts.limit));
}

/**
 * The images alive at `at` in one read, by lifetime class (store/lifetime-class.ts): for each
 * class, those that started within one class bound before `at` and ended after it; then the longest
 * lived and the still running, from the record's start. Each branch seeks (host_id, class, start).
 */
async function aliveAt(store: Store, opts: TreeQuery): Promise<ProcessRow[]> {
  const { at } = opts;
  const hosts =
    opts.hosts ?? (await store.db.selectFrom('hosts').select('host_id').execute()).map((h) => h.host_id);
  if (hosts.length === 0) return [];
  const lifetime = sql.raw(lifetimeClassSql('p."end"', 'p.start'));
  let q = store.db
    .selectFrom('processes as p')
    .innerJoin('hosts as h', 'h.host_id', 'p.host_id')
    .select([...PROCESS_COLUMNS, 'h.name as host'])
    .where((eb) =>
      eb.or(
        [...LIFETIME_BOUNDS_US.keys(), LIFETIME_LONGEST, LIFETIME_RUNNING].map((k) =>
          eb.and([
            // In every branch: an OR's branches are each matched to an index on their own.
            eb('p.host_id', 'in', hosts),
            sql<boolean>`${lifetime} = ${sql.lit(k)}`,
            ...(k < LIFETIME_LONGEST ? [eb('p.start', '>', at - LIFETIME_BOUNDS_US[k])] : []),
            eb('p.start', '<=', at),
            ...(k === LIFETIME_RUNNING ? [] : [eb('p.end', '>', at)]),
          ]),
        ),
      ),
    );
  if (opts.observer === false) q = q.where('p.observer', '=', 0);
  return (await q.execute()).map((r) => toProcessRow(r, r.host));
}

function identity(p: { host_id: string; boot_id: string; pid: number; start_ticks: number }): string {
  return `${p.host_id}\0${p.boot_id}\0${p.pid}\0${p.start_ticks}`;
}

function byStart(a: ProcessRow, b: ProcessRow): number {
  return a.start - b.start || a.open_ord - b.open_ord || a.pid - b.pid;
}
