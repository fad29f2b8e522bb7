import type { KeyObject } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
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
import { type Database, ensurePartitions, type Store } from '../store/index.js';
import { BatchApplier } from './batch-applier.js';
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
   */
  readonly onApplied?: (trx: Kysely<Database>, batch: { hostId: string; seq: number }) => Promise<void>;
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
 * Verifies, dedupes and stores one signed batch in one transaction. Refusals are data, recorded in
 * refused_batches; it throws only when the store itself fails, and then nothing may be ACKed.
 *
 * @example
 * const r = await ingestBatch(store, bytes, { principal: authenticatedHostId });
 * if (r.status !== 'refused') ack(r.seq);
 */
export async function ingestBatch(store: Store, bytes: Buffer, ctx: IngestContext): Promise<IngestResult> {
  const receivedAt = ctx.receivedAt ?? Date.now() * 1000;
  try {
    return await verifyAndApply(store, bytes, ctx.principal, receivedAt, ctx.geo, ctx.onApplied);
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    // After the rollback, in its own statement: the refusal is evidence too.
    await store.db
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
  const host = await store.db
    .selectFrom('hosts')
    .select(['status', 'signing_key', 'boot_id', 'seal_seed', 'seal_from'])
    .where('host_id', '=', principal)
    .executeTakeFirst();
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

  const dup = await storedBatch(store, principal, header.seq);
  if (dup) return duplicateOrReplay(dup.hash, frame);
  const records = refuseOnPofrError(() => decodeRecords(frame), header.seq);

  // The batch's weeks exist before its transaction, so it never waits on DDL (or holds locks through it).
  if (store.caps.timePartitions) await ensurePartitions(store.db, header.t_from, header.t_to);
  try {
    return await store.db.transaction().execute(async (trx) => {
      // One host's batches apply one after the other, whichever connection or server node they
      // reach: batch N+1 must see N committed, or its chain looks broken and its intervals are
      // applied on a state that lacks N's. Other hosts are not held up.
      if (store.caps.concurrentWriters) {
        await trx
          .selectFrom('hosts')
          .select('host_id')
          .where('host_id', '=', principal)
          .forUpdate()
          .execute();
      }
      const prev =
        header.seq > 1
          ? await trx
              .selectFrom('batches')
              .select('hash')
              .where('host_id', '=', principal)
              .where('seq', '=', header.seq - 1)
              .executeTakeFirst()
          : undefined;
      // Below a prune's cut (or an export's first batch) the predecessor's hash is in `prunes`.
      const cut =
        header.seq > 1 && prev === undefined
          ? await trx
              .selectFrom('prunes')
              .select('last_hash')
              .where('host_id', '=', principal)
              .where('before_seq', '=', header.seq)
              .orderBy('id', 'desc')
              .limit(1)
              .executeTakeFirst()
          : undefined;
      const chain = chainLink(header.seq, header.prev_hash, prev?.hash ?? cut?.last_hash);
      await trx
        .insertInto('batches')
        .values({
          host_id: principal,
          seq: header.seq,
          hash: frame.hash,
          prev_hash: header.prev_hash,
          payload_sha256: header.payload_sha256,
          boot_id: header.boot_id,
          t_from: header.t_from,
          t_to: header.t_to,
          record_count: header.record_count,
          bytes: bytes.length,
          received_at: receivedAt,
          chain,
        })
        .execute();
      await trx
        .insertInto('batch_evidence')
        .values({ host_id: principal, seq: header.seq, raw: bytes })
        .execute();
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
      await applier.apply(records);
      if (onApplied) await onApplied(trx, { hostId: principal, seq: header.seq });
      await advanceHost(trx, principal, frame, receivedAt);
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
    const raced = await storedBatch(store, principal, header.seq);
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

/** The chain head moves only forward: a late, lower seq fills a gap but does not rewind the head. */
async function advanceHost(
  trx: Transaction<Database>,
  hostId: string,
  frame: BatchFrame,
  receivedAt: number,
) {
  const { header } = frame;
  const h = await trx
    .selectFrom('hosts')
    .select(['first_seen', 'last_seen', 'last_seq'])
    .where('host_id', '=', hostId)
    .executeTakeFirstOrThrow();
  const ahead = h.last_seq === null || Number(h.last_seq) < header.seq;
  await trx
    .updateTable('hosts')
    .set({
      first_seen: h.first_seen === null ? header.t_from : Math.min(Number(h.first_seen), header.t_from),
      last_seen: h.last_seen === null ? header.t_to : Math.max(Number(h.last_seen), header.t_to),
      last_batch_at: receivedAt,
      ...(ahead ? { last_seq: header.seq, last_hash: frame.hash, boot_id: header.boot_id } : {}),
    })
    .where('host_id', '=', hostId)
    .execute();
}

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

async function storedBatch(store: Store, hostId: string, seq: number) {
  return store.db
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
