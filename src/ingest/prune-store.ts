import { type Kysely, type RawBuilder, sql, type Transaction } from 'kysely';
import {
  type Database,
  forgetPartitions,
  listPartitions,
  type PartitionedTable,
  type PartitionInfo,
  type Store,
} from '../store/index.js';
import { ORD_PER_BATCH } from './batch-applier.js';
import { stateAt, stateDigest } from './state-at-cut.js';

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
  /** Told of each weekly partition a PostgreSQL prune dropped, with the rows it kept (moved out first). */
  readonly onPartitionDropped?: (partition: string, rows: number, kept: number) => void;
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
  // PostgreSQL, every host at once: the weeks wholly older than the cutoff are dropped at the end
  // (dropWeeks) instead of deleting their rows one by one, so the host chunks leave their rows alone.
  // One host's prune cannot drop a week: the other hosts' rows in it stay.
  const weeks =
    store.caps.timePartitions && opts.hostId === undefined && !opts.dryRun
      ? (await listPartitions(store.db)).filter((p) => p.to !== null && p.to <= opts.olderThan)
      : [];
  const skip = new Map<PartitionedTable, number[]>();
  for (const p of weeks) skip.set(p.table, [...(skip.get(p.table) ?? []), p.oid]);
  const reports: PruneReport[] = [];
  for (const { host_id } of await q.execute()) reports.push(await pruneHost(store, host_id, opts, skip));
  if (weeks.length > 0) {
    const dropped = await store.db.transaction().execute((trx) => dropWeeks(trx, weeks, opts));
    forgetPartitions(store.db);
    for (const r of reports) r.rows += dropped.get(r.host_id) ?? 0;
  }
  return reports;
}

async function pruneHost(
  store: Store,
  hostId: string,
  opts: PruneOptions,
  skip: ReadonlyMap<PartitionedTable, number[]>,
): Promise<PruneReport> {
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
    report.rows += await db
      .transaction()
      .execute((trx) => pruneChunk(store, trx, hostId, upTo, opts, at, skip));
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
  skip: ReadonlyMap<PartitionedTable, number[]>,
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
  // Rows in the weeks dropWeeks will drop are left to it (SQL true when there are none).
  const outside = (table: PartitionedTable, ref: string = table): RawBuilder<boolean> => {
    const oids = skip.get(table);
    return oids === undefined
      ? sql<boolean>`true`
      : sql<boolean>`${sql.ref(`${ref}.tableoid`)} <> ALL(${oids.map(String)}::oid[])`;
  };
  let rows = 0;
  rows += count(
    await trx
      .deleteFrom('file_opens')
      .where('host_id', '=', hostId)
      .where('close_ord', '<', b)
      .where(outside('file_opens'))
      .execute(),
  );
  const goneEndpoints = (eb: Kysely<Database>) =>
    eb.selectFrom('endpoints').select('id').where('host_id', '=', hostId).where('close_ord', '<', b);
  rows += count(
    await trx
      .deleteFrom('endpoint_states')
      .where('host_id', '=', hostId)
      .where('endpoint_id', 'in', goneEndpoints(trx))
      .where(outside('endpoint_states'))
      .execute(),
  );
  rows += count(
    await trx
      .deleteFrom('endpoints')
      .where('host_id', '=', hostId)
      .where('close_ord', '<', b)
      .where(outside('endpoints'))
      .execute(),
  );
  // A process closed before the cut stays while a kept row points at it (a child, a file, a socket).
  rows += count(
    await trx
      .deleteFrom('processes as p')
      .where('p.host_id', '=', hostId)
      .where('p.close_ord', '<', b)
      .where(outside('processes', 'p'))
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
  for (const table of ['recorder_events', 'dns_queries', 'cred_changes'] as const) {
    rows += count(
      await trx
        .deleteFrom(table)
        .where('host_id', '=', hostId)
        .where('seq', '<', before)
        .where(outside(table))
        .execute(),
    );
  }
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
      state_sha256: stateDigest(await stateAt(trx, hostId, before, Number(last.t_to))),
    })
    .execute();
  return rows;
}

/**
 * A row of `x` that stays at the hosts' latest cuts (`c`, the row of the temporary table
 * pofr_prune_cuts joined on the host): the complement of what pruneChunk deletes, table by table.
 * A host with no cut keeps everything.
 */
function stays(table: PartitionedTable): RawBuilder<boolean> {
  const kept = (alias: string) =>
    sql`(${sql.ref(`${alias}.close_ord`)} IS NULL OR ${sql.ref(`${alias}.close_ord`)} >= c.b)`;
  switch (table) {
    case 'file_opens':
    case 'endpoints':
      return sql<boolean>`(c.b IS NULL OR ${kept('x')})`;
    case 'endpoint_states':
      return sql<boolean>`(c.b IS NULL OR NOT EXISTS (SELECT 1 FROM endpoints e WHERE e.id = x.endpoint_id AND e.close_ord < c.b))`;
    case 'processes':
      return sql<boolean>`(c.b IS NULL OR ${kept('x')}
        OR EXISTS (SELECT 1 FROM processes k WHERE k.parent_id = x.id AND ${kept('k')})
        OR EXISTS (SELECT 1 FROM file_opens k WHERE k.process_id = x.id AND ${kept('k')})
        OR EXISTS (SELECT 1 FROM endpoints k WHERE k.process_id = x.id AND ${kept('k')}))`;
    case 'recorder_events':
    case 'dns_queries':
    case 'cred_changes':
      return sql<boolean>`(c.b IS NULL OR x.seq >= c.before_seq)`;
  }
}

/** Endpoint states go before their endpoints (what stays is told by the endpoint). */
const DROP_ORDER: readonly PartitionedTable[] = [
  'endpoint_states',
  'recorder_events',
  'dns_queries',
  'cred_changes',
  'file_opens',
  'endpoints',
  'processes',
];

/**
 * Drops the weeks wholly older than the cutoff, once every host's chunks have recorded its cut: in
 * one transaction, with every host's ingest held (and the tables locked by DETACH), the rows a week
 * keeps at those cuts (a process still running, a file still open, a row a kept one points at) are
 * copied out, the week is detached and dropped, and the kept rows go back in (to the default
 * partition, as no week holds them now). A week that keeps most of its rows has the others deleted
 * instead. Afterwards the store is exactly what deleting row by row leaves, so each host's latest
 * cut gets its digest of the rows standing at it anew (verify checks them against it).
 * Returns the rows dropped, by host.
 */
async function dropWeeks(
  trx: Transaction<Database>,
  weeks: readonly PartitionInfo[],
  opts: PruneOptions,
): Promise<Map<string, number>> {
  await trx.selectFrom('hosts').select('host_id').orderBy('host_id').forUpdate().execute();
  await sql`CREATE TEMPORARY TABLE pofr_prune_cuts (host_id text PRIMARY KEY, before_seq bigint NOT NULL, b bigint NOT NULL) ON COMMIT DROP`.execute(
    trx,
  );
  await sql`INSERT INTO pofr_prune_cuts
    SELECT DISTINCT ON (host_id) host_id, before_seq, before_seq * ${ORD_PER_BATCH}::int8 FROM prunes
    ORDER BY host_id, before_seq DESC`.execute(trx);
  await sql`ANALYZE pofr_prune_cuts`.execute(trx);
  const dropped = new Map<string, number>();
  const add = (host: string, n: number) => dropped.set(host, (dropped.get(host) ?? 0) + n);
  for (const table of DROP_ORDER) {
    for (const week of weeks.filter((w) => w.table === table)) {
      const part = sql.id(week.name);
      // What the week keeps, found once; then either the week goes and they come back, or the rest goes.
      await sql`CREATE TEMPORARY TABLE pofr_prune_kept ON COMMIT DROP AS
        SELECT x.* FROM ${part} x LEFT JOIN pofr_prune_cuts c ON c.host_id = x.host_id WHERE ${stays(table)}`.execute(
        trx,
      );
      const { rows: counts } = await sql<{ host_id: string; n: number; kept: number }>`
        SELECT a.host_id, a.n, coalesce(k.n, 0) AS kept
        FROM (SELECT host_id, count(*)::int8 AS n FROM ${part} GROUP BY host_id) a
        LEFT JOIN (SELECT host_id, count(*)::int8 AS n FROM pofr_prune_kept GROUP BY host_id) k ON k.host_id = a.host_id`.execute(
        trx,
      );
      const n = counts.reduce((a, r) => a + Number(r.n), 0);
      const kept = counts.reduce((a, r) => a + Number(r.kept), 0);
      if (n > 0 && kept * 2 > n) {
        await sql`DELETE FROM ${part} x WHERE NOT EXISTS (SELECT 1 FROM pofr_prune_kept k WHERE k.id = x.id)`.execute(
          trx,
        );
      } else {
        await sql`ALTER TABLE ${sql.id(table)} DETACH PARTITION ${part}`.execute(trx);
        await sql`DROP TABLE ${part}`.execute(trx);
        await sql`INSERT INTO ${sql.id(table)} SELECT * FROM pofr_prune_kept`.execute(trx);
        opts.onPartitionDropped?.(week.name, n - kept, kept);
      }
      await sql`DROP TABLE pofr_prune_kept`.execute(trx);
      for (const r of counts) add(r.host_id, Number(r.n) - Number(r.kept));
    }
  }
  for (const [hostId, n] of dropped) {
    if (n === 0) continue;
    const cut = await latestPrune(trx, hostId);
    if (!cut) continue;
    const digest = stateDigest(await stateAt(trx, hostId, cut.before_seq, cut.t_to));
    await trx
      .updateTable('prunes')
      .set((eb) => ({ state_sha256: digest, rows: eb('rows', '+', n) }))
      .where('host_id', '=', hostId)
      .where('before_seq', '=', cut.before_seq)
      .execute();
  }
  return dropped;
}

/** The host's latest cut: batches below `before_seq` were pruned. */
export async function latestPrune(db: Kysely<Database>, hostId: string) {
  const row = await db
    .selectFrom('prunes')
    .select(['before_seq', 'last_hash', 'boot_id', 't_to', 'older_than', 'at', 'state_sha256'])
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
    state_sha256: row.state_sha256,
  };
}
