import type { Store } from '../store/index.js';
import { type FileRow, findFiles } from './files.js';
import { type EndpointRow, findEndpoints } from './net.js';
import { PROCESS_COLUMNS, type ProcessRow, toProcessRow } from './process-row.js';

/** The order value of a row says which batch wrote it: seq × 1,000,000 + record index. */
export const ORD_PER_BATCH = 1_000_000;

/** Which batch proves a fact, and what that batch is. */
export interface BatchRef {
  readonly seq: number;
  readonly hash: string;
  /** genesis | ok | gap | fork */
  readonly chain: string;
  readonly t_from: number;
  readonly t_to: number;
  readonly received_at: number;
  readonly record_count: number;
}

/** Everything the process page shows of one program image and the process it belongs to. */
export interface ProcessDetail {
  /** The image asked for. */
  readonly process: ProcessRow;
  /** Every image of the same process (same pid and start), in exec order: sshd → bash → less. */
  readonly images: readonly ProcessRow[];
  /** Ancestors, nearest first (the parent row each image names, up to the oldest on record). */
  readonly parents: readonly ProcessRow[];
  /** Processes started by any image of this one. */
  readonly children: readonly ProcessRow[];
  readonly files: readonly FileRow[];
  readonly endpoints: readonly EndpointRow[];
  /** The batches that wrote these facts, by seq (see `*_ord` ÷ 1,000,000). */
  readonly batches: readonly BatchRef[];
}

const MAX_PARENTS = 64;
const MAX_ROWS = 2000;

/**
 * One process by the row id of any of its images, with the facts around it.
 *
 * @example
 * const d = await processDetail(store, 4242);
 * d?.images.map((i) => i.comm); // ['sshd', 'bash', 'less']
 */
export async function processDetail(store: Store, id: number): Promise<ProcessDetail | null> {
  const select = () =>
    store.db
      .selectFrom('processes as p')
      .innerJoin('hosts as h', 'h.host_id', 'p.host_id')
      .select([...PROCESS_COLUMNS, 'h.name as host']);
  const row = await select().where('p.id', '=', id).executeTakeFirst();
  if (!row) return null;
  const process = toProcessRow(row, row.host);
  const images = (
    await select()
      .where('p.host_id', '=', process.host_id)
      .where('p.boot_id', '=', process.boot_id)
      .where('p.pid', '=', process.pid)
      .where('p.start_ticks', '=', process.start_ticks)
      .orderBy('p.exec_index')
      .execute()
  ).map((r) => toProcessRow(r, r.host));
  const ids = images.map((i) => i.id);

  const parents: ProcessRow[] = [];
  let parentId = images[0]?.parent_id ?? null;
  const seen = new Set(ids);
  while (parentId !== null && parents.length < MAX_PARENTS && !seen.has(parentId)) {
    seen.add(parentId);
    const p = await select().where('p.id', '=', parentId).executeTakeFirst();
    if (!p) break;
    parents.push(toProcessRow(p, p.host));
    parentId = p.parent_id;
  }

  const children = (
    await select()
      .where('p.parent_id', 'in', ids)
      .where('p.exec_index', '=', 0)
      .orderBy('p.start')
      .orderBy('p.id')
      .limit(MAX_ROWS)
      .execute()
  ).map((r) => toProcessRow(r, r.host));

  // Descriptors and sockets survive exec: they belong to the process, whichever image holds them.
  const files = await findFiles(store, { processIds: ids, limit: MAX_ROWS });
  const endpoints = await findEndpoints(store, { processIds: ids, limit: MAX_ROWS });

  const seqs = new Set<number>();
  const addOrd = (ord: number | null) => {
    if (ord !== null) seqs.add(Math.floor(ord / ORD_PER_BATCH));
  };
  for (const i of images) {
    addOrd(i.open_ord);
    addOrd(i.close_ord);
  }
  for (const f of files) {
    addOrd(f.open_ord);
    addOrd(f.close_ord);
  }
  for (const e of endpoints) {
    addOrd(e.open_ord);
    addOrd(e.close_ord);
  }
  const batches =
    seqs.size === 0
      ? []
      : await store.db
          .selectFrom('batches')
          .select(['seq', 'hash', 'chain', 't_from', 't_to', 'received_at', 'record_count'])
          .where('host_id', '=', process.host_id)
          .where('seq', 'in', [...seqs])
          .orderBy('seq')
          .execute();

  return Object.freeze({
    process,
    images: Object.freeze(images),
    parents: Object.freeze(parents),
    children: Object.freeze(children),
    files: Object.freeze(files),
    endpoints: Object.freeze(endpoints),
    batches: Object.freeze(batches.map((b) => Object.freeze({ ...b }))),
  });
}

/**
 * For images that are not their process's first (exec_index > 0), the names of every image of
 * that process in exec order — sshd → bash → less — so a tree can label one pid's successive
 * programs instead of showing only the last.
 */
export async function execSequences(
  store: Store,
  rows: readonly Pick<ProcessRow, 'id' | 'host_id' | 'boot_id' | 'pid' | 'start_ticks' | 'exec_index'>[],
): Promise<ReadonlyMap<number, readonly string[]>> {
  const later = rows.filter((r) => r.exec_index > 0);
  const out = new Map<number, string[]>();
  for (let i = 0; i < later.length; i += 200) {
    const part = later.slice(i, i + 200);
    const images = await store.db
      .selectFrom('processes')
      .select(['host_id', 'boot_id', 'pid', 'start_ticks', 'exec_index', 'comm'])
      .where((eb) =>
        eb.or(
          part.map((r) =>
            eb.and([
              eb('host_id', '=', r.host_id),
              eb('boot_id', '=', r.boot_id),
              eb('pid', '=', r.pid),
              eb('start_ticks', '=', r.start_ticks),
            ]),
          ),
        ),
      )
      .orderBy('exec_index')
      .execute();
    for (const r of part) {
      out.set(
        r.id,
        images
          .filter(
            (x) =>
              x.host_id === r.host_id &&
              x.boot_id === r.boot_id &&
              Number(x.pid) === r.pid &&
              Number(x.start_ticks) === r.start_ticks &&
              x.exec_index <= r.exec_index,
          )
          .map((x) => x.comm),
      );
    }
  }
  return out;
}
