import { sql, type Transaction } from 'kysely';
import type { Database, Store } from '../store/index.js';
import {
  type IngestContext,
  type IngestResult,
  type IngestScope,
  ingestBatch,
  ingestInScope,
} from './apply-batch.js';

/** What a server hands each batch to: resolves once the batch's outcome is durable. */
export interface BatchIngestor {
  ingest(bytes: Buffer, ctx: IngestContext): Promise<IngestResult>;
  /** How many COMMITs the batches took so far: groups ≤ batches (logs, tests, benchmarks). */
  stats(): GroupStats;
}

export interface GroupStats {
  readonly groups: number;
  readonly batches: number;
  readonly largest: number;
  /** Groups run a second time, each batch isolated, after one of them failed having written. */
  readonly retried: number;
}

export interface CommitGroupOptions {
  /** At most this many batches share one COMMIT; default 64. */
  readonly maxBatches?: number;
  /** And at most this many bytes of them; default 16 MiB. */
  readonly maxBytes?: number;
}

interface Job {
  readonly bytes: Buffer;
  readonly ctx: IngestContext;
  resolve(r: IngestResult): void;
  reject(e: unknown): void;
}

type Outcome = { readonly ok: IngestResult } | { readonly error: unknown };

const JOB_SAVEPOINT = 'pofr_batch';
const APPLY_SAVEPOINT = 'pofr_batch_rows';

/**
 * Group commit, for a store with one writer (SQLite). Every batch used to be a transaction of its
 * own, so every batch paid a COMMIT: a WAL fsync that blocks the only thread (better-sqlite3 is
 * synchronous) and the WAL frames of every page it dirtied, written again by the next batch. At a
 * thousand hosts the server spent a third of its wall time waiting in fsync and fell behind with a
 * core to spare (docs/benchmarks.md, fleet). Here the batches that arrived while the last group
 * was committing share one transaction and one COMMIT (`together`; after a failure, `isolated`).
 * Nothing waits to form a group: an idle server commits each batch alone, as before; a busy one
 * groups what queued.
 *
 * Each batch keeps its own outcome. A refused batch leaves only its refusal row in the group; a
 * batch whose statements fail is rolled back alone and rejected (its
 * channel closes unacknowledged and the client retries), unless the failure ended the transaction
 * itself (a full disk): then every batch of the group is rejected, as none is stored. No result
 * leaves before the COMMIT that makes it durable: an ACK still means the batch is on disk.
 *
 * A store with concurrent writers (PostgreSQL) gets ingestBatch unchanged: each batch takes its
 * host's lock in its own transaction, and one transaction holding several hosts' locks could
 * deadlock with another server node taking them in another order.
 */
export function createBatchIngestor(store: Store, opts: CommitGroupOptions = {}): BatchIngestor {
  const counts = { groups: 0, batches: 0, largest: 0, retried: 0 };
  const stats = (): GroupStats => ({ ...counts });
  const count = (n: number) => {
    counts.groups++;
    counts.batches += n;
    counts.largest = Math.max(counts.largest, n);
  };
  if (store.caps.concurrentWriters) {
    return {
      ingest: (bytes, ctx) => {
        count(1);
        return ingestBatch(store, bytes, ctx);
      },
      stats,
    };
  }
  const maxBatches = opts.maxBatches ?? 64;
  const maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  const queue: Job[] = [];
  let scheduled = false;
  let running = false;

  function schedule(): void {
    if (scheduled || running || queue.length === 0) return;
    scheduled = true;
    // setImmediate, not a microtask: the event loop first reads what the sockets hold, so batches
    // that arrived during the last COMMIT join this group instead of each waiting for its own.
    setImmediate(() => {
      scheduled = false;
      void runGroup();
    });
  }

  async function runGroup(): Promise<void> {
    running = true;
    const jobs = takeGroup(queue, maxBatches, maxBytes);
    count(jobs.length);
    let outcomes: Outcome[] | null;
    try {
      outcomes = jobs.length === 1 ? [await alone(jobs[0]!)] : await together(jobs);
      // Something in the group failed and took every batch's rows with it: each again, isolated.
      if (outcomes === null) {
        counts.retried++;
        outcomes = await isolated(jobs);
      }
    } catch (e) {
      // The COMMIT failed, or a batch's failure took the transaction with it: nothing is stored.
      for (const job of jobs) job.reject(e);
      return;
    } finally {
      running = false;
      schedule();
    }
    jobs.forEach((job, i) => {
      const o = outcomes[i]!;
      if ('ok' in o) job.resolve(o.ok);
      else job.reject(o.error);
    });
  }

  /** One batch: a transaction of its own, exactly as ingestBatch (a store error is its rejection). */
  async function alone(job: Job): Promise<Outcome> {
    try {
      return { ok: await ingestBatch(store, job.bytes, job.ctx) };
    } catch (e) {
      return { error: e };
    }
  }

  /**
   * The fast path: every batch straight in the group's transaction, no savepoint. A savepoint
   * costs more than its statements: each page a batch touches is first copied to the statement
   * journal, and FTS5 flushes its pending trigrams into a new segment at every savepoint, which
   * its merges then rewrite (docs/benchmarks.md, fleet). The
   * price is paid only when a batch fails after it wrote: then the whole group is rolled back and
   * null says to run it again, each batch isolated. A refusal decided before any write (frame,
   * key, signature, seal, replay) needs no rollback: its refusal row is one statement.
   */
  async function together(jobs: readonly Job[]): Promise<Outcome[] | null> {
    const outcomes: Outcome[] = [];
    try {
      await store.writeTransaction(async (trx) => {
        // Set when a batch's writes threw: some of its rows may be in the transaction.
        let wrote = false;
        const scope: IngestScope = {
          db: trx,
          async atomically(fn) {
            try {
              return await fn(trx);
            } catch (e) {
              // Only a rollback of the group takes them away (ingestInScope may turn this into a refusal).
              wrote = true;
              throw e;
            }
          },
        };
        for (const job of jobs) {
          const result = await ingestInScope(store, scope, job.bytes, job.ctx);
          if (wrote) throw new GroupRetry();
          outcomes.push({ ok: result });
        }
      });
    } catch {
      // Whatever failed (a batch, a statement, the COMMIT), nothing of the group is stored; the
      // isolated run finds out which batch it was and answers for each.
      return null;
    }
    return outcomes;
  }

  /** Each batch under a savepoint of its own: a failing batch is rolled back alone. */
  async function isolated(jobs: readonly Job[]): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    await store.writeTransaction(async (trx) => {
      const scope = savepointScope(trx);
      // A host whose batch failed here sends nothing more through this group: its next batch
      // would be stored with a gap before the one that failed, which the client resends later.
      const failed = new Map<string, unknown>();
      for (const job of jobs) {
        if (failed.has(job.ctx.principal)) {
          outcomes.push({ error: notAfterFailure(job, failed.get(job.ctx.principal)) });
          continue;
        }
        // The whole batch under a savepoint of its own, its refusal row included: whatever
        // fails in it, rolling back to here tells whether the group's transaction survived.
        await sql.raw(`SAVEPOINT ${JOB_SAVEPOINT}`).execute(trx);
        try {
          const result = await ingestInScope(store, scope, job.bytes, job.ctx);
          await sql.raw(`RELEASE ${JOB_SAVEPOINT}`).execute(trx);
          outcomes.push({ ok: result });
        } catch (e) {
          // SQLite rolls the whole transaction back by itself on SQLITE_FULL, IOERR, NOMEM: then
          // the savepoint is gone, and with it every batch of the group.
          if (!(await rolledBackTo(trx, JOB_SAVEPOINT))) throw e;
          failed.set(job.ctx.principal, e);
          outcomes.push({ error: e });
        }
      }
    });
    return outcomes;
  }

  return {
    ingest(bytes, ctx) {
      return new Promise<IngestResult>((resolve, reject) => {
        // Stamped on arrival: a batch's received_at is not delayed by the group it waits for.
        const stamped = ctx.receivedAt === undefined ? { ...ctx, receivedAt: Date.now() * 1000 } : ctx;
        queue.push({ bytes, ctx: stamped, resolve, reject });
        schedule();
      });
    },
    stats,
  };
}

/** Thrown out of the fast path's transaction to roll the whole group back. */
class GroupRetry extends Error {
  constructor() {
    super('a batch of the commit group failed after writing: the group is run again, each batch isolated');
  }
}

function notAfterFailure(job: Job, cause: unknown): Error {
  return new Error(
    `batch of host ${job.ctx.principal} not applied: an earlier batch of that host in the same commit group failed (${(cause as Error).message ?? String(cause)}); it was not stored and may be resent`,
    { cause },
  );
}

/** The oldest queued batches that fit in one group (always at least one). */
function takeGroup(queue: Job[], maxBatches: number, maxBytes: number): Job[] {
  let n = 0;
  let bytes = 0;
  while (n < queue.length && n < maxBatches && (n === 0 || bytes + queue[n]!.bytes.length <= maxBytes)) {
    bytes += queue[n]!.bytes.length;
    n++;
  }
  return queue.splice(0, n);
}

/** The batch's writes, under a savepoint inside its job's: a refusal keeps only its refusal row. */
function savepointScope(trx: Transaction<Database>): IngestScope {
  return {
    db: trx,
    async atomically<T>(fn: (t: Transaction<Database>) => Promise<T>): Promise<T> {
      await sql.raw(`SAVEPOINT ${APPLY_SAVEPOINT}`).execute(trx);
      let result: T;
      try {
        result = await fn(trx);
      } catch (e) {
        // If this fails, the transaction is gone: the job's own savepoint finds out and says so.
        await rolledBackTo(trx, APPLY_SAVEPOINT);
        throw e;
      }
      await sql.raw(`RELEASE ${APPLY_SAVEPOINT}`).execute(trx);
      return result;
    },
  };
}

/** Rolls back to and releases `name`; false when that cannot be done (no transaction any more). */
async function rolledBackTo(trx: Transaction<Database>, name: string): Promise<boolean> {
  try {
    await sql.raw(`ROLLBACK TO ${name}`).execute(trx);
    await sql.raw(`RELEASE ${name}`).execute(trx);
    return true;
  } catch {
    return false;
  }
}
