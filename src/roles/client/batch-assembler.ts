import type { KeyObject } from 'node:crypto';
import { isPofrError } from '../../errors.js';
import {
  joinTexts,
  LIMITS,
  type PofrRecord,
  type RecordTexts,
  type SealedBatch,
  sealTexts,
  splitTexts,
  textsOf,
} from '../../protocol/index.js';

/** The part of the spool the assembler needs: where sealed batches go and the chain head they extend. */
export interface BatchSink {
  append(batch: SealedBatch): void;
  chainHead(): { seq: number; hash: string };
  /** The forward-secure seal key of `seq`, or null for a client from before sealing. */
  sealKeyFor?(seq: number): Buffer | null;
}

/**
 * Where the assembler mirrors what it holds unsealed (spool/journal.ts CrashJournal), so that a
 * recorder killed before its next seal does not take those records along.
 */
export interface PendingJournal {
  /**
   * One call per add(), that is per cycle, even with no records (it says the recorder was alive),
   * with the records' text as the batch will carry it.
   */
  writeTexts(t: number, texts: RecordTexts): void;
  /** Everything pending went into the spool or was counted lost; `carry` is the gap record still owed. */
  sealed(head: { seq: number; hash: string }, t: number, carry: readonly PofrRecord[]): void;
}

export interface AssemblerOptions {
  readonly hostId: string;
  readonly bootId: string;
  readonly signingKey: KeyObject;
  readonly sink: BatchSink;
  /** Seal when this many records are pending… */
  readonly maxRecords?: number;
  /** …or when the oldest pending record has waited this long. */
  readonly maxAgeMs?: number;
  /** Called after each batch reached the spool (the uploader is told to send). */
  readonly onSealed?: (batch: SealedBatch) => void;
  /** Called when records could not be spooled (spool or disk full, I/O error), with the count lost. */
  readonly onLoss?: (dropped: number, reason: string) => void;
  readonly journal?: PendingJournal;
}

/**
 * Turns the recorder's record stream into sealed, chained batches in the spool. Loss is never
 * silent: records that could not be spooled become one `gap` record at the head of the next batch.
 *
 * Pending records are held as their JSON text, one string per cycle (record-texts.ts): each
 * record is serialised once, for the journal and the batch alike, and the objects are not kept
 * alive for the seconds until the seal.
 */
export class BatchAssembler {
  private pending: RecordTexts[] = [];
  private pendingRecords = 0;
  private firstPendingAt = 0;
  private lost: { from: number; to: number; dropped: number; reason: string } | null = null;
  private retryingGap = false;
  private readonly maxRecords: number;
  private readonly maxAgeMs: number;

  constructor(private readonly opts: AssemblerOptions) {
    this.maxRecords = opts.maxRecords ?? 5000;
    this.maxAgeMs = opts.maxAgeMs ?? 5000;
  }

  get pendingCount(): number {
    return this.pendingRecords;
  }

  add(records: readonly PofrRecord[], nowMs = Date.now()): void {
    const texts = textsOf(records);
    this.opts.journal?.writeTexts(nowMs * 1000, texts);
    if (texts.count > 0) {
      if (this.pendingRecords === 0) this.firstPendingAt = nowMs;
      this.pending.push(texts);
      this.pendingRecords += texts.count;
    }
    if (
      this.pendingRecords >= this.maxRecords ||
      (this.pendingRecords > 0 && nowMs - this.firstPendingAt >= this.maxAgeMs)
    ) {
      this.seal();
    }
  }

  /** Seals everything pending now (also called at shutdown). Returns the number of batches spooled. */
  seal(): number {
    if (this.pendingRecords === 0 && this.lost === null) return 0;
    const parts = this.pending;
    this.pending = [];
    this.pendingRecords = 0;
    try {
      if (this.lost !== null) parts.unshift(textsOf([this.takeGap()]));
      const texts = joinTexts(parts);
      const spooled = this.sealChunks(texts);
      if (this.lost === null || texts.count === 1) return spooled;
      // Nothing else fitted: the loss itself must still reach the server, and a batch of the gap
      // record alone is the smallest there is (a nearly full spool has room for it long before it has
      // room for a busy host's batch).
      this.retryingGap = true;
      try {
        return spooled + this.sealChunks(textsOf([this.takeGap()]));
      } finally {
        this.retryingGap = false;
      }
    } finally {
      // Everything pending is spooled or counted: the journal keeps only the gap still owed.
      this.opts.journal?.sealed(
        this.opts.sink.chainHead(),
        Date.now() * 1000,
        this.lost === null ? [] : [gapRecord(this.lost)],
      );
    }
  }

  /** The pending loss as one gap record; the loss is no longer pending. */
  private takeGap(): PofrRecord {
    const l = this.lost!;
    this.lost = null;
    return gapRecord(l);
  }

  private recordLoss(texts: RecordTexts, why: string): void {
    // The gap record's reason has a bounded length in the protocol; an error message has none.
    const reason = why.length > 1024 ? `${why.slice(0, 1023)}…` : why;
    const { lossFrom: from, lossTo: to, dropped } = texts;
    const prev = this.lost;
    this.lost = prev
      ? {
          from: Math.min(prev.from, from),
          to: Math.max(prev.to, to),
          dropped: prev.dropped + dropped,
          reason,
        }
      : { from, to, dropped, reason };
    // A gap record that could not be spooled alone is the same loss again, not a new one.
    if (!this.retryingGap) this.opts.onLoss?.(dropped, reason);
  }

  /** Seals in as few batches as the size limits allow, halving a chunk that comes out too large. */
  private sealChunks(texts: RecordTexts): number {
    const head = this.opts.sink.chainHead();
    const seq = head.seq + 1;
    const sealed = sealTexts(
      { host_id: this.opts.hostId, boot_id: this.opts.bootId, seq, prev_hash: head.hash, texts },
      this.opts.signingKey,
      this.opts.sink.sealKeyFor?.(seq) ?? null,
    );
    const tooBig =
      sealed.bytes.length > LIMITS.maxBatchBytes || sealed.header.payload_bytes > LIMITS.maxPayloadBytes;
    if (tooBig && texts.count > 1) {
      let spooled = 0;
      let failure: unknown = null;
      // Both halves are tried even when the first fails, so neither is dropped without its count.
      for (const half of splitTexts(texts)) {
        try {
          spooled += this.sealChunks(half);
        } catch (e) {
          failure ??= e;
        }
      }
      if (failure !== null) throw failure;
      return spooled;
    }
    try {
      this.opts.sink.append(sealed);
    } catch (e) {
      // These records are gone from memory either way: whatever failed, the next batch says so.
      this.recordLoss(texts, e instanceof Error ? e.message : String(e));
      // A full spool is expected operation; anything else (EIO, EACCES, a bug) also reaches the log.
      if (!isPofrError(e) || e.code !== 'POFR_SPOOL_FULL') throw e;
      return 0;
    }
    this.opts.onSealed?.(sealed);
    return 1;
  }
}

function gapRecord(l: { from: number; to: number; dropped: number; reason: string }): PofrRecord {
  return { type: 'gap', t: Date.now() * 1000, from: l.from, to: l.to, reason: l.reason, dropped: l.dropped };
}
