import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../store/index.js';
import { ORD_PER_BATCH } from './batch-applier.js';

type Row = Record<string, unknown>;
type StateTable =
  | 'processes'
  | 'file_opens'
  | 'endpoints'
  | 'endpoint_states'
  | 'users'
  | 'groups'
  | 'interfaces'
  | 'routes'
  | 'devices';
/** A host's rows as they stood at a cut, by table, in id (or validity) order. */
export type StateAtCut = ReadonlyArray<readonly [StateTable, Row[]]>;

const INVENTORY = ['users', 'groups', 'interfaces', 'routes', 'devices'] as const;

/**
 * A host's state at the cut before batch `beforeSeq`: the rows opened before it, as they stood then
 * — what a later batch changed (an end, a close, a state) is undone — and the inventory valid then.
 * By default every row opened before the cut (after a prune, those closed before it are the ones a
 * kept row points at); `openOnly`: only what was open at the cut (an export of a window).
 */
export async function stateAt(
  src: Kysely<Database>,
  hostId: string,
  beforeSeq: number,
  cutT: number,
  openOnly = false,
): Promise<StateAtCut> {
  const b = beforeSeq * ORD_PER_BATCH;
  const later = (closeOrd: unknown) => closeOrd !== null && Number(closeOrd) >= b;
  const wanted = (closeOrd: unknown) => !openOnly || closeOrd === null || later(closeOrd);
  const procs = await src
    .selectFrom('processes')
    .selectAll()
    .where('host_id', '=', hostId)
    .where('open_ord', '<', b)
    .orderBy('id')
    .execute();
  const files = await src
    .selectFrom('file_opens')
    .selectAll()
    .where('host_id', '=', hostId)
    .where('open_ord', '<', b)
    .orderBy('id')
    .execute();
  const eps = (
    await src
      .selectFrom('endpoints')
      .selectAll()
      .where('host_id', '=', hostId)
      .where('open_ord', '<', b)
      .orderBy('id')
      .execute()
  ).filter((e) => wanted(e.close_ord));
  const copied = new Set(eps.map((e) => Number(e.id)));
  const states = (
    await src
      .selectFrom('endpoint_states')
      .selectAll()
      .where('host_id', '=', hostId)
      .where('ord', '<', b)
      .orderBy('ord')
      .orderBy('id')
      .execute()
  ).filter((st) => copied.has(Number(st.endpoint_id)));
  const stateAtCut = new Map<number, string>();
  for (const st of states) stateAtCut.set(Number(st.endpoint_id), st.state);
  const out: [StateTable, Row[]][] = [
    [
      'processes',
      procs
        .filter((p) => wanted(p.close_ord))
        .map((p) => (later(p.close_ord) ? { ...p, end: null, end_reason: null, close_ord: null } : p)),
    ],
    [
      'file_opens',
      files
        .filter((f) => wanted(f.close_ord))
        .map((f) => (later(f.close_ord) ? { ...f, is_open: 1, close_ord: null } : f)),
    ],
    [
      'endpoints',
      eps.map((e) =>
        later(e.close_ord)
          ? { ...e, is_open: 1, close_ord: null, state: stateAtCut.get(Number(e.id)) ?? e.state }
          : e,
      ),
    ],
    ['endpoint_states', states],
  ];
  for (const table of INVENTORY) {
    const rows = (await src
      .selectFrom(table)
      .selectAll()
      .where('host_id', '=', hostId)
      .where('valid_from', '<=', cutT)
      .orderBy('valid_from')
      .execute()) as Row[];
    const validLater = (r: Row) => r.valid_to !== null && Number(r.valid_to) > cutT;
    out.push([
      table,
      rows
        .filter((r) => !openOnly || r.valid_to === null || validLater(r))
        .map((r) => (validLater(r) ? { ...r, valid_to: null } : r)),
    ]);
  }
  return out;
}

/** Copies a state into another store (a scratch store, an export), ids and all. */
export async function writeState(dst: Kysely<Database>, state: StateAtCut): Promise<void> {
  for (const [table, rows] of state) {
    for (let i = 0; i < rows.length; i += 200) {
      await dst
        .insertInto(table)
        // biome-ignore lint/suspicious/noExplicitAny: rows copied column for column from the same table.
        .values(rows.slice(i, i + 200) as any)
        .execute();
    }
  }
}

export async function seedStateAt(
  src: Kysely<Database>,
  dst: Kysely<Database>,
  hostId: string,
  beforeSeq: number,
  cutT: number,
  openOnly = false,
): Promise<void> {
  await writeState(dst, await stateAt(src, hostId, beforeSeq, cutT, openOnly));
}

/**
 * Columns that change after the cut without undoing: the last sighting (any later batch moves it)
 * and enrichment (reverse DNS fills `fqdn` later; none of it is evidence).
 */
const VOLATILE = new Set(['last_seen', 'country', 'city', 'asn', 'as_org', 'geo_db', 'fqdn', 'fqdn_at']);

/**
 * A digest of the state at a cut, recorded by the prune that made it: the rows it stands on can no
 * longer be re-derived (their evidence is gone), so verify checks them against it instead.
 */
export function stateDigest(state: StateAtCut): string {
  const h = createHash('sha256');
  for (const [table, rows] of state) {
    h.update(`${table}\n`);
    // In a canonical order: engines return rows equal on the ORDER BY in any order.
    const lines: string[] = [];
    for (const row of rows) {
      const keys = Object.keys(row)
        .filter((k) => !VOLATILE.has(k))
        .sort();
      const parts = keys.map((k) => {
        const v = row[k];
        if (v === null || v === undefined) return `${k}=`;
        if (v instanceof Uint8Array) return `${k}=x${Buffer.from(v).toString('hex')}`;
        return `${k}=${typeof v}:${String(v)}`;
      });
      lines.push(parts.join('\u0000'));
    }
    lines.sort();
    for (const l of lines) h.update(`${l}\n`);
  }
  return h.digest('hex');
}
