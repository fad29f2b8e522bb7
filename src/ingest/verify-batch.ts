import { isPofrError } from '../errors.js';
import { decodeRecords, loadPublicKey, readBatchFrame, verifyBatchFrame } from '../protocol/index.js';
import type { Store } from '../store/index.js';

/** What re-checking one stored batch found. */
export interface BatchVerdict {
  readonly ok: boolean;
  /** An error code when not ok (POFR_BATCH_SIGNATURE, POFR_VERIFY_FAILED, …). */
  readonly code: string | null;
  readonly reason: string;
}

/**
 * Re-checks one stored batch from its evidence, as `pofr verify` does for every batch: the signature
 * with the host's registered key, the payload hash, every record's schema, and that the `batches`
 * row says what the signed header says. Quick enough to run when an analyst opens the batch that
 * proves a fact.
 *
 * @example
 * const v = await verifyBatch(store, hostId, 12); // { ok: true, code: null, reason: 'signature …' }
 */
export async function verifyBatch(store: Store, hostId: string, seq: number): Promise<BatchVerdict | null> {
  const row = await store.db
    .selectFrom('batches as b')
    .innerJoin('hosts as h', 'h.host_id', 'b.host_id')
    .leftJoin('batch_evidence as x', (j) =>
      j.onRef('x.host_id', '=', 'b.host_id').onRef('x.seq', '=', 'b.seq'),
    )
    .select(['b.hash', 'b.prev_hash', 'b.t_from', 'b.t_to', 'b.record_count', 'h.signing_key', 'x.raw'])
    .where('b.host_id', '=', hostId)
    .where('b.seq', '=', seq)
    .executeTakeFirst();
  if (!row) return null;
  if (row.raw === null) {
    return {
      ok: false,
      code: 'POFR_VERIFY_FAILED',
      reason: `batch ${seq} has no evidence row: it was deleted`,
    };
  }
  try {
    const frame = readBatchFrame(Buffer.from(row.raw));
    verifyBatchFrame(frame, loadPublicKey(row.signing_key));
    decodeRecords(frame);
    const h = frame.header;
    const same =
      frame.hash === row.hash &&
      h.seq === seq &&
      h.prev_hash === row.prev_hash &&
      h.t_from === Number(row.t_from) &&
      h.t_to === Number(row.t_to) &&
      h.record_count === Number(row.record_count);
    if (!same) {
      return {
        ok: false,
        code: 'POFR_VERIFY_FAILED',
        reason: `the batches row of seq ${seq} differs from its signed header (edited after ingest)`,
      };
    }
    return { ok: true, code: null, reason: `signature, payload hash and ${h.record_count} records verify` };
  } catch (e) {
    return {
      ok: false,
      code: isPofrError(e) ? e.code : 'POFR_VERIFY_FAILED',
      reason: (e as Error).message,
    };
  }
}
