import { type Kysely, sql, type Transaction } from 'kysely';
import type { Database, Store } from '../store/index.js';
import { ORD_PER_BATCH } from './batch-applier.js';

/** Batches pruned per transaction: bounded, so a server ingesting meanwhile waits at most one chunk. */
const BATCHES_PER_CHUNK = 200;

export interface PruneOptions {
  /** Batches whose newest record is older than this (µs since the epoch) go. */
  readonly olderThan: number;
  /** Only this host (default: every host). */
  readonly hostId?: string;
  /** Count what would go, change nothing. */
  readonly dryRun?: boolean;
  /** When the prune happened, µs (default now). */
  readonly at?: number;
}

/** What one host's prune removed (or, dry, would remove). */
export interface PruneReport {
  host_id: string;
  /** The batches pruned: from_seq … to_seq (null when none). */
  from_seq: number | null;
  to_seq: number | null;
  batches: number;
  /** Rows deleted with them (derived rows, evidence, gaps, recorder events); 0 on a dry run. */
  rows: number;
}

/**
 * Retention: drops each host's oldest batches — the prefix of its chain whose batches ended before
 * `olderThan` — with their evidence and every row only they derived: intervals that closed before
 * the first kept batch (and are not pointed at by a kept row), their endpoint states, their gaps and
 * recorder events. Rows still open at the cut stay (they are the state the kept batches change).
 * Each chunk is one transaction that also records the cut in `prunes`, so the store is verifiable
 * after every commit: `pofr verify` starts the chain at the cut and re-derives the kept batches from
 * the rows open there.
 *
 * @example
 * await pruneStore(store, { olderThan: (Date.now() - 90 * 86_400_000) * 1000 });
 */
export async function pruneStore(store: Store, opts: PruneOptions): Promise<PruneReport[]> {
  let q = store.db.selectFrom('hosts').select('host_id').orderBy('host_id');
  if (opts.hostId !== undefined) q = q.where('host_id', '=', opts.hostId);
  const reports: PruneReport[] = [];
  for (const { host_id } of await q.execute()) reports.push(await pruneHost(store, host_id, opts));
  return reports;
}

async function pruneHost(store: Store, hostId: string, opts: PruneOptions): Promise<PruneReport> {
  const db = store.db;
  // The first batch kept: the oldest one that ended at or after the cutoff (or after the newest).
  const keep = await db
    .selectFrom('batches')
    .select((eb) => eb.fn.min('seq').as('seq'))
    .where('host_id', '=', hostId)
    .where('t_to', '>=', opts.olderThan)
    .executeTakeFirst();
  const newest = await db
    .selectFrom('batches')
    .select([(eb) => eb.fn.min('seq').as('lo'), (eb) => eb.fn.max('seq').as('hi')])
    .where('host_id', '=', hostId)
    .executeTakeFirst();
  const report: PruneReport = { host_id: hostId, from_seq: null, to_seq: null, batches: 0, rows: 0 };
  if (newest?.lo === null || newest?.lo === undefined) return report;
  const lo = Number(newest.lo);
  // The newest batch always stays: it holds the chain head the next batch links to.
  const cut = Math.min(
    keep?.seq === null || keep?.seq === undefined ? Number.MAX_SAFE_INTEGER : Number(keep.seq),
    Number(newest.hi),
  );
  if (cut <= lo) return report;
  const batches = await db
    .selectFrom('batches')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('host_id', '=', hostId)
    .where('seq', '<', cut)
    .executeTakeFirstOrThrow();
  report.from_seq = lo;
  report.to_seq = cut - 1;
  report.batches = Number(batches.n);
  if (opts.dryRun) return report;
  const at = opts.at ?? Date.now() * 1000;
  for (let next = lo + BATCHES_PER_CHUNK; ; next += BATCHES_PER_CHUNK) {
    const upTo = Math.min(next, cut);
    report.rows += await db.transaction().execute((trx) => pruneChunk(store, trx, hostId, upTo, opts, at));
    if (upTo >= cut) break;
  }
  return report;
}

/** Prunes every batch below `before` and what only they derived, in the caller's transaction. */
async function pruneChunk(
  store: Store,
  trx: Transaction<Database>,
  hostId: string,
  before: number,
  opts: PruneOptions,
  at: number,
): Promise<number> {
  // Ingest of this host waits (another node's too): its batches would otherwise see a half-pruned past.
  if (store.caps.concurrentWriters) {
    await trx.selectFrom('hosts').select('host_id').where('host_id', '=', hostId).forUpdate().execute();
  }
  const last = await trx
    .selectFrom('batches')
    .select(['seq', 'hash', 'boot_id', 't_to'])
    .where('host_id', '=', hostId)
    .where('seq', '<', before)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!last) return 0;
  const b = before * ORD_PER_BATCH;
  const count = (r: { numDeletedRows: bigint }[]) => r.reduce((n, x) => n + Number(x.numDeletedRows), 0);
  let rows = 0;
  rows += count(
    await trx.deleteFrom('file_opens').where('host_id', '=', hostId).where('close_ord', '<', b).execute(),
  );
  const goneEndpoints = (eb: Kysely<Database>) =>
    eb.selectFrom('endpoints').select('id').where('host_id', '=', hostId).where('close_ord', '<', b);
  rows += count(
    await trx
      .deleteFrom('endpoint_states')
      .where('host_id', '=', hostId)
      .where('endpoint_id', 'in', goneEndpoints(trx))
      .execute(),
  );
  rows += count(
    await trx.deleteFrom('endpoints').where('host_id', '=', hostId).where('close_ord', '<', b).execute(),
  );
  // A process closed before the cut stays while a kept row points at it (a child, a file, a socket).
  rows += count(
    await trx
      .deleteFrom('processes as p')
      .where('p.host_id', '=', hostId)
      .where('p.close_ord', '<', b)
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('processes as c')
              .select('c.id')
              .whereRef('c.parent_id', '=', 'p.id')
              .where(sql<boolean>`(c.close_ord IS NULL OR c.close_ord >= ${b})`),
          ),
        ),
      )
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('file_opens as f')
              .select('f.id')
              .whereRef('f.process_id', '=', 'p.id')
              .where(sql<boolean>`(f.close_ord IS NULL OR f.close_ord >= ${b})`),
          ),
        ),
      )
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('endpoints as e')
              .select('e.id')
              .whereRef('e.process_id', '=', 'p.id')
              .where(sql<boolean>`(e.close_ord IS NULL OR e.close_ord >= ${b})`),
          ),
        ),
      )
      .execute(),
  );
  rows += count(
    await trx.deleteFrom('gaps').where('host_id', '=', hostId).where('seq', '<', before).execute(),
  );
  rows += count(
    await trx.deleteFrom('recorder_events').where('host_id', '=', hostId).where('seq', '<', before).execute(),
  );
  rows += count(
    await trx.deleteFrom('refused_batches').where('host_id', '=', hostId).where('seq', '<', before).execute(),
  );
  rows += count(
    await trx.deleteFrom('batch_evidence').where('host_id', '=', hostId).where('seq', '<', before).execute(),
  );
  const gone = count(
    await trx.deleteFrom('batches').where('host_id', '=', hostId).where('seq', '<', before).execute(),
  );
  rows += gone;
  await trx
    .insertInto('prunes')
    .values({
      host_id: hostId,
      before_seq: before,
      last_hash: last.hash,
      boot_id: last.boot_id,
      t_to: Number(last.t_to),
      older_than: opts.olderThan,
      at,
      batches: gone,
      rows,
    })
    .execute();
  return rows;
}

/** The host's latest cut: batches below `before_seq` were pruned. */
export async function latestPrune(db: Kysely<Database>, hostId: string) {
  const row = await db
    .selectFrom('prunes')
    .select(['before_seq', 'last_hash', 'boot_id', 't_to', 'older_than', 'at'])
    .where('host_id', '=', hostId)
    .orderBy('before_seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!row) return null;
  return {
    before_seq: Number(row.before_seq),
    last_hash: row.last_hash,
    boot_id: row.boot_id,
    t_to: Number(row.t_to),
    older_than: Number(row.older_than),
    at: Number(row.at),
  };
}
