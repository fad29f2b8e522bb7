import type { KeyObject } from 'node:crypto';
import { type Kysely, sql, type Transaction } from 'kysely';
import type { GeoLookup } from '../enrich/index.js';
import { type ErrorCode, isPofrError } from '../errors.js';
import {
  applicableSealSeed,
  type BatchFrame,
  decodeRecords,
  GENESIS_HASH,
  loadPublicKey,
  readBatchFrame,
  verifyBatchFrame,
  verifyBatchSeal,
} from '../protocol/index.js';
import { type Database, ensurePartitions, fixedQuery, reserveIds, type Store } from '../store/index.js';
import { BatchApplier, idsNeeded } from './batch-applier.js';
import { isBatchContentError } from './content-error.js';

/** How a batch links to the batch stored before it. */
export type ChainLink = 'genesis' | 'ok' | 'gap' | 'fork';

/**
 * What became of one batch. `accepted` and `duplicate` may be ACKed (the batch is durably stored);
 * `refused` is final for these bytes: they are kept in refused_batches, and resending cannot help.
 */
export type IngestResult =
  | {
      status: 'accepted';
      host_id: string;
      seq: number;
      chain: ChainLink;
      records: number;
      warnings: string[];
    }
  | { status: 'duplicate'; host_id: string; seq: number }
  | { status: 'refused'; host_id: string | null; seq: number | null; code: ErrorCode; reason: string };

export interface IngestContext {
  /** The host id the transport authenticated: a key may only write its own host's data. */
  readonly principal: string;
  /** When the batch arrived, µs since the epoch; defaults to now. */
  readonly receivedAt?: number;
  /** Fills endpoints' country from their remote address; without it, country stays null. */
  readonly geo?: GeoLookup;
  /**
   * Runs inside the batch's transaction once its rows are applied (live detection writes its
   * alerts here, so they commit with the batch or not at all). A throw rolls the batch back.
   * `rows`: the process and file rows the batch inserted, as written (BatchApplier.createdRows).
   */
  readonly onApplied?: (trx: Kysely<Database>, batch: AppliedBatch) => Promise<void>;
}

/** What IngestContext.onApplied is told of the batch it runs for. */
export interface AppliedBatch {
  readonly hostId: string;
  readonly seq: number;
  readonly rows: ReturnType<BatchApplier['createdRows']>;
}

class Refusal extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly reason: string,
    readonly seq: number | null,
  ) {
    super(reason);
  }
}

/**
 * Where one batch's statements run. Alone, a batch reads through the store and writes in a
 * transaction of its own; in a commit group (commit-group.ts) it runs inside the group's
 * transaction, its writes under a savepoint, so a refused batch leaves the others' rows alone.
 */
export interface IngestScope {
  readonly db: Kysely<Database>;
  /** Runs fn's writes all or nothing: a throw leaves none of them (and rethrows). */
  atomically<T>(fn: (trx: Transaction<Database>) => Promise<T>): Promise<T>;
}

function ownTransaction(store: Store): IngestScope {
  return { db: store.db, atomically: (fn) => store.writeTransaction(fn) };
}

/**
 * Verifies, dedupes and stores one signed batch in one transaction. Refusals are data, recorded in
 * refused_batches; it throws only when the store itself fails, and then nothing may be ACKed.
 *
 * @example
 * const r = await ingestBatch(store, bytes, { principal: authenticatedHostId });
 * if (r.status !== 'refused') ack(r.seq);
 */
export async function ingestBatch(store: Store, bytes: Buffer, ctx: IngestContext): Promise<IngestResult> {
  return ingestInScope(store, ownTransaction(store), bytes, ctx);
}

/**
 * ingestBatch with the batch's statements run in `scope`. What it returns is durable only once
 * the scope's transaction has committed: a commit group ACKs nothing before that.
 */
export async function ingestInScope(
  store: Store,
  scope: IngestScope,
  bytes: Buffer,
  ctx: IngestContext,
): Promise<IngestResult> {
  const receivedAt = ctx.receivedAt ?? Date.now() * 1000;
  try {
    return await verifyAndApply(store, scope, bytes, ctx.principal, receivedAt, ctx.geo, ctx.onApplied);
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    // After the rollback, in its own statement: the refusal is evidence too.
    await scope.db
      .insertInto('refused_batches')
      .values({
        host_id: ctx.principal,
        seq: e.seq,
        received_at: receivedAt,
        code: e.code,
        reason: e.reason,
        bytes: bytes.length,
        raw: bytes,
      })
      .execute();
    return { status: 'refused', host_id: ctx.principal, seq: e.seq, code: e.code, reason: e.reason };
  }
}

async function verifyAndApply(
  store: Store,
  scope: IngestScope,
  bytes: Buffer,
  principal: string,
  receivedAt: number,
  geo: GeoLookup | undefined,
  onApplied: IngestContext['onApplied'],
) {
  const frame = refuseOnPofrError(() => readBatchFrame(bytes), null);
  const { header } = frame;
  if (header.host_id !== principal) {
    throw new Refusal(
      'POFR_BATCH_HOST',
      `batch names host ${header.host_id} but was sent with the key of host ${principal}; a host may only send its own batches`,
      header.seq,
    );
  }
  // With it, whether this seq is stored already (one round trip, not two: on PostgreSQL each costs).
  const host = (await hostForBatch.run(scope.db, store.caps, principal, header.seq)).rows[0];
  if (!host) {
    throw new Refusal(
      'POFR_HOST_UNKNOWN',
      `host ${principal} is not enrolled; enroll it with pofr client enroll`,
      header.seq,
    );
  }
  if (host.status !== 'approved') {
    const code: ErrorCode = host.status === 'revoked' ? 'POFR_HOST_REVOKED' : 'POFR_HOST_PENDING';
    const what =
      host.status === 'revoked'
        ? 'is revoked'
        : `is ${host.status}, not approved; approve it with pofr host approve`;
    throw new Refusal(code, `host ${principal} ${what}`, header.seq);
  }
  let key: KeyObject;
  try {
    key = loadPublicKey(host.signing_key);
  } catch (e) {
    throw new Refusal(
      'POFR_BATCH_SIGNATURE',
      `host ${principal}'s registered signing key cannot be loaded (${(e as Error).message}); re-enroll the host`,
      header.seq,
    );
  }
  refuseOnPofrError(() => verifyBatchFrame(frame, key), header.seq);
  refuseOnPofrError(
    () => verifyBatchSeal(frame, applicableSealSeed(host.seal_seed, host.seal_from, header.seq)),
    header.seq,
  );

  if (host.stored_hash !== null && host.stored_hash !== undefined)
    return duplicateOrReplay(host.stored_hash, frame);
  const records = refuseOnPofrError(() => decodeRecords(frame), header.seq);

  // The batch's weeks exist before its transaction, so it never waits on DDL (or holds locks through it).
  if (store.caps.timePartitions) await ensurePartitions(store.db, header.t_from, header.t_to);
  try {
    return await scope.atomically(async (trx) => {
      // One host's batches apply one after the other, whichever connection or server node they
      // reach: batch N+1 must see N committed, or its chain looks broken and its intervals are
      // applied on a state that lacks N's. Other hosts are not held up. The lock is taken by the
      // statement that reserves the batch's row ids: one round trip for both.
      const ids = store.caps.concurrentWriters
        ? await reserveIds(trx, store.caps, idsNeeded(records), principal)
        : undefined;
      // After the lock, in a statement of its own (READ COMMITTED: a later statement sees what the
      // batch we waited for committed; the locking one's subqueries would not): the predecessor's
      // hash, or below a prune's cut (or an export's first batch) the hash the cut recorded.
      const link = (await batchLink.run(trx, store.caps, principal, header.seq - 1, header.seq)).rows[0];
      const prev = header.seq > 1 && link?.prev_hash ? { hash: link.prev_hash } : undefined;
      const cut =
        header.seq > 1 && prev === undefined && link?.cut_hash ? { last_hash: link.cut_hash } : undefined;
      const chain = chainLink(header.seq, header.prev_hash, prev?.hash ?? cut?.last_hash);
      const row: BatchRowValues = [
        ...[principal, header.seq, frame.hash, header.prev_hash, header.payload_sha256, header.boot_id],
        ...[header.t_from, header.t_to, header.record_count, bytes.length, receivedAt, chain],
      ] as BatchRowValues;
      // The chain head moves with the batch's own rows (nothing the applier does reads it).
      if (store.caps.dataModifyingCtes) {
        await storeBatchInOne.run(trx, store.caps, ...row, bytes);
      } else {
        await insertBatch.run(trx, store.caps, ...row);
        await insertEvidence.run(trx, store.caps, principal, header.seq, bytes);
        await advanceHost.run(trx, store.caps, ...headMove(row));
      }
      if (chain === 'gap' || chain === 'fork') {
        await trx
          .insertInto('gaps')
          .values({
            host_id: principal,
            kind: chain === 'gap' ? 'seq_gap' : 'fork',
            seq: header.seq,
            t_from: null,
            t_to: header.t_from,
            detail: chainBreakDetail(chain, header.seq, header.prev_hash, prev?.hash),
            at: receivedAt,
          })
          .execute();
      }
      const applier = new BatchApplier(
        trx,
        {
          hostId: principal,
          bootId: header.boot_id,
          seq: header.seq,
          tFrom: header.t_from,
          receivedAt,
          bootChanged: host.boot_id !== null && host.boot_id !== header.boot_id,
          geo,
        },
        store.caps,
      );
      await applier.apply(records, ids);
      if (onApplied)
        await onApplied(trx, { hostId: principal, seq: header.seq, rows: applier.createdRows() });
      return {
        status: 'accepted' as const,
        host_id: principal,
        seq: header.seq,
        chain,
        records: records.length,
        warnings: applier.warnings(),
      };
    });
  } catch (e) {
    // Another server node may have stored the same (host, seq) between our check and our insert.
    const raced = await storedBatch(scope.db, principal, header.seq);
    if (raced) return duplicateOrReplay(raced.hash, frame);
    if (isBatchContentError(e)) {
      throw new Refusal(
        'POFR_BATCH_MALFORMED',
        `batch ${principal}#${header.seq} could not be applied: ${(e as Error).message}`,
        header.seq,
      );
    }
    throw e;
  }
}

/** The host, whether this seq is stored already (one round trip, not two: on PostgreSQL each costs). */
const hostForBatch = fixedQuery(2, (db, hostId: string, seq: number) =>
  db
    .selectFrom('hosts')
    .select(['status', 'signing_key', 'boot_id', 'seal_seed', 'seal_from'])
    .select((eb) =>
      eb
        .selectFrom('batches')
        .select('hash')
        .where('batches.host_id', '=', hostId)
        .where('batches.seq', '=', seq)
        .as('stored_hash'),
    )
    .where('host_id', '=', hostId),
);

/** The predecessor's hash, and the hash a prune's cut (or an export's first batch) recorded at `seq`. */
const batchLink = fixedQuery(3, (db, hostId: string, prevSeq: number, seq: number) =>
  db
    .selectFrom('hosts')
    .select((eb) => [
      eb
        .selectFrom('batches')
        .select('hash')
        .where('batches.host_id', '=', hostId)
        .where('batches.seq', '=', prevSeq)
        .as('prev_hash'),
      eb
        .selectFrom('prunes')
        .select('last_hash')
        .where('prunes.host_id', '=', hostId)
        .where('prunes.before_seq', '=', seq)
        .orderBy('prunes.id', 'desc')
        .limit(1)
        .as('cut_hash'),
    ])
    .where('host_id', '=', hostId),
);

/** A batch's `batches` row, as the values of its columns in this order. */
type BatchRowValues = [
  host_id: string,
  seq: number,
  hash: string,
  prev_hash: string,
  payload_sha256: string,
  boot_id: string,
  t_from: number,
  t_to: number,
  record_count: number,
  bytes: number,
  received_at: number,
  chain: ChainLink,
];

function batchRow(v: BatchRowValues) {
  const [host_id, seq, hash, prev_hash, payload_sha256, boot_id, t_from, t_to, record_count, bytes] = v;
  return {
    host_id,
    seq,
    hash,
    prev_hash,
    payload_sha256,
    boot_id,
    t_from,
    t_to,
    record_count,
    bytes,
    received_at: v[10],
    chain: v[11],
  };
}

type HeadMove = [
  hostId: string,
  seq: number,
  hash: string,
  bootId: string,
  tFrom: number,
  tTo: number,
  receivedAt: number,
];

function headMove(v: BatchRowValues): HeadMove {
  return [v[0], v[1], v[2], v[5], v[6], v[7], v[10]];
}

/**
 * The chain head moves only forward: a late, lower seq fills a gap but does not rewind the head.
 * In SQL, not read first: the row is locked (PostgreSQL) or the only writer's (SQLite) anyway.
 */
function advanceHostQuery(
  db: Kysely<Database>,
  ...[hostId, seq, hash, bootId, tFrom, tTo, receivedAt]: HeadMove
) {
  const ahead = sql<boolean>`(last_seq IS NULL OR last_seq < ${seq})`;
  return db
    .updateTable('hosts')
    .set({
      first_seen: sql`CASE WHEN first_seen IS NULL OR first_seen > ${tFrom} THEN ${tFrom} ELSE first_seen END`,
      last_seen: sql`CASE WHEN last_seen IS NULL OR last_seen < ${tTo} THEN ${tTo} ELSE last_seen END`,
      last_batch_at: receivedAt,
      last_hash: sql`CASE WHEN ${ahead} THEN ${hash} ELSE last_hash END`,
      boot_id: sql`CASE WHEN ${ahead} THEN ${bootId} ELSE boot_id END`,
      // Last: SQLite evaluates every SET expression on the old row, PostgreSQL too.
      last_seq: sql`CASE WHEN ${ahead} THEN ${seq} ELSE last_seq END`,
    })
    .where('host_id', '=', hostId);
}

const insertBatch = fixedQuery(12, (db, ...v: BatchRowValues) =>
  db.insertInto('batches').values(batchRow(v)),
);

const insertEvidence = fixedQuery(3, (db, hostId: string, seq: number, raw: Buffer) =>
  db.insertInto('batch_evidence').values({ host_id: hostId, seq, raw }),
);

const advanceHost = fixedQuery(7, advanceHostQuery);

/** PostgreSQL: the three in one round trip (the evidence's foreign key is checked at the statement's end). */
const storeBatchInOne = fixedQuery(13, (db, ...v: [...BatchRowValues, Buffer]) => {
  const row = batchRow(v.slice(0, 12) as BatchRowValues);
  const cols = Object.keys(row) as (keyof typeof row)[];
  const raw = v[12];
  return sql`WITH b AS (INSERT INTO batches (${sql.join(cols.map((c) => sql.id(c)))}) VALUES (${sql.join(cols.map((c) => row[c]))})),
          h AS (${advanceHostQuery(db, ...headMove(v.slice(0, 12) as BatchRowValues))})
          INSERT INTO batch_evidence (host_id, seq, raw) VALUES (${row.host_id}, ${row.seq}, ${raw})`;
});

function chainLink(seq: number, prevHash: string, storedPrev: string | undefined): ChainLink {
  if (seq === 1) return prevHash === GENESIS_HASH ? 'genesis' : 'fork';
  if (storedPrev === undefined) return 'gap';
  return storedPrev === prevHash ? 'ok' : 'fork';
}

function chainBreakDetail(
  chain: 'gap' | 'fork',
  seq: number,
  prevHash: string,
  storedPrev: string | undefined,
) {
  if (chain === 'gap') return `missing seq ${seq - 1} (batch ${seq} names prev_hash ${prevHash}, not stored)`;
  if (seq === 1) return `batch 1 names prev_hash ${prevHash} instead of the genesis hash`;
  return `batch ${seq} names prev_hash ${prevHash} but stored batch ${seq - 1} has hash ${storedPrev}`;
}

async function storedBatch(db: Kysely<Database>, hostId: string, seq: number) {
  return db
    .selectFrom('batches')
    .select('hash')
    .where('host_id', '=', hostId)
    .where('seq', '=', seq)
    .executeTakeFirst();
}

function duplicateOrReplay(storedHash: string, frame: BatchFrame): IngestResult {
  const { host_id, seq } = frame.header;
  if (storedHash === frame.hash) return { status: 'duplicate', host_id, seq };
  throw new Refusal(
    'POFR_BATCH_REPLAY',
    `batch ${host_id}#${seq} has hash ${frame.hash} but seq ${seq} is already stored with hash ${storedHash}`,
    seq,
  );
}

/** For the pure decoding steps: whatever they throw is about the bytes, never about the server. */
function refuseOnPofrError<T>(fn: () => T, seq: number | null): T {
  try {
    return fn();
  } catch (e) {
    if (isPofrError(e)) throw new Refusal(e.code, e.message, seq);
    throw new Refusal('POFR_BATCH_MALFORMED', `malformed batch: ${(e as Error).message}`, seq);
  }
}
