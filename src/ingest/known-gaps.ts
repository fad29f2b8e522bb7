import { readBatchFrame } from '../protocol/index.js';
import type { Store } from '../store/index.js';
import { latestPrune } from './prune-store.js';

/**
 * One way a host's record is known to be incomplete: authentic, but not all of it. `pofr verify`
 * lists these and exits 3 when there is any (docs/cli.md), 0 only for a record complete as well.
 */
export interface KnownGap {
  /** One of KNOWN_GAP_KINDS. */
  readonly kind: string;
  /** The first and last batch sequence numbers concerned, when the gap is in the chain. */
  readonly seq_from: number | null;
  readonly seq_to: number | null;
  /** The recorded time it covers, µs, when known. */
  readonly t_from: number | null;
  readonly t_to: number | null;
  /** What is missing and, where the store knows it, why. */
  readonly detail: string;
}

/**
 * Where verify learns of gaps: one function per kind of loss, run in this order. To teach verify a
 * new kind (a recorder crash, kernel drops of a new source…), add its kind to KNOWN_GAP_KINDS and
 * its finder to GAP_FINDERS, or, when ingest writes it to the `gaps` table, map the `gaps.kind` in
 * RECORDED_GAP_KINDS: nothing else needs to change.
 */
export const KNOWN_GAP_KINDS = {
  refused_batch:
    'a batch the server refused (bad seal or signature, malformed, …): its place in the chain stays empty',
  missing_batches:
    'sequence numbers that never arrived (deleted from the spool, or lost with the client state)',
  fork: 'a batch that does not link to the batch stored before it (the client chain restarted or diverged)',
  recorder_loss:
    'records the recorder itself reported lost (spool or disk full, kernel drops), from its gap records',
  recorder_crash:
    "a recorder's blind window: from its last write before it was killed (or the host lost power) to its restart",
} as const;

/** `gaps.kind` values that ingest writes from what the recorder reported, and the kind verify lists. */
export const RECORDED_GAP_KINDS: Readonly<Record<string, keyof typeof KNOWN_GAP_KINDS>> = {
  recorder: 'recorder_loss',
  crash: 'recorder_crash',
};

type GapFinder = (store: Store, hostId: string) => Promise<KnownGap[]>;

const GAP_FINDERS: readonly GapFinder[] = [chainHoles, chainForks, recordedLosses];

/** Every known gap of one host, in the order of GAP_FINDERS, each list by sequence number. */
export async function findKnownGaps(store: Store, hostId: string): Promise<KnownGap[]> {
  const all: KnownGap[] = [];
  for (const find of GAP_FINDERS) all.push(...(await find(store, hostId)));
  return all;
}

/**
 * Places in the chain that hold no batch: below the first stored one, between two stored ones, and
 * after the last one when batches there were refused. A place the server refused a batch for names
 * that refusal as its cause; the rest never arrived.
 */
async function chainHoles(store: Store, hostId: string): Promise<KnownGap[]> {
  const db = store.db;
  // The stored batches that follow a hole: few, however long the chain.
  const afterHole = await db
    .selectFrom('batches as b')
    .select('b.seq')
    .where('b.host_id', '=', hostId)
    .where('b.seq', '>', 1)
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('batches as p')
            .select('p.seq')
            .whereRef('p.host_id', '=', 'b.host_id')
            .where((eb) => eb('p.seq', '=', eb('b.seq', '-', 1))),
        ),
      ),
    )
    .orderBy('b.seq')
    .execute();
  const holes: { from: number; to: number }[] = [];
  for (const row of afterHole) {
    const next = Number(row.seq);
    const below = await db
      .selectFrom('batches')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .where('host_id', '=', hostId)
      .where('seq', '<', next)
      .executeTakeFirst();
    holes.push({
      from: below?.seq === null || below?.seq === undefined ? 1 : Number(below.seq) + 1,
      to: next - 1,
    });
  }
  // Batches below a prune's cut were taken away on purpose: pruned (VerifyReport.pruned), not missing.
  const pruned = await latestPrune(db, hostId);
  if (pruned) {
    for (const h of holes) h.from = Math.max(h.from, pruned.before_seq);
    holes.splice(0, holes.length, ...holes.filter((h) => h.from <= h.to));
  }
  const last = await db
    .selectFrom('batches')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .where('host_id', '=', hostId)
    .executeTakeFirst();
  const lastSeq = last?.seq === null || last?.seq === undefined ? 0 : Number(last.seq);
  const refusedAfter = await db
    .selectFrom('refused_batches')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .where('host_id', '=', hostId)
    .where('seq', '>', lastSeq)
    .executeTakeFirst();
  if (refusedAfter?.seq !== null && refusedAfter?.seq !== undefined) {
    holes.push({ from: lastSeq + 1, to: Number(refusedAfter.seq) });
  }

  const gaps: KnownGap[] = [];
  for (const hole of holes) {
    const refused = await db
      .selectFrom('refused_batches')
      .select(['seq', 'received_at', 'code', 'reason', 'raw'])
      .where('host_id', '=', hostId)
      .where('seq', '>=', hole.from)
      .where('seq', '<=', hole.to)
      .orderBy('seq')
      .orderBy('id')
      .execute();
    const bySeq = new Map<number, (typeof refused)[number]>();
    for (const r of refused) if (!bySeq.has(Number(r.seq))) bySeq.set(Number(r.seq), r);
    // A hole of millions of numbers is one entry: walk the refused ones, not every number.
    let cursor = hole.from;
    for (const [seq, r] of bySeq) {
      if (seq > cursor) gaps.push(neverArrived(cursor, seq - 1));
      const claimed = claimedTimes(r.raw);
      gaps.push({
        kind: 'refused_batch',
        seq_from: seq,
        seq_to: seq,
        t_from: claimed?.t_from ?? null,
        t_to: claimed?.t_to ?? null,
        detail: `batch ${seq} was refused at ${new Date(Number(r.received_at) / 1000).toISOString()}: ${r.code}: ${r.reason}`,
      });
      cursor = seq + 1;
    }
    if (cursor <= hole.to) gaps.push(neverArrived(cursor, hole.to));
  }
  return gaps;
}

/** The time range a refused batch's header claims: unproven, but where to look on the host. */
function claimedTimes(raw: Uint8Array | null): { t_from: number; t_to: number } | null {
  if (raw === null) return null;
  try {
    const { header } = readBatchFrame(Buffer.from(raw));
    return { t_from: header.t_from, t_to: header.t_to };
  } catch {
    return null;
  }
}

function neverArrived(from: number, to: number): KnownGap {
  return {
    kind: 'missing_batches',
    seq_from: from,
    seq_to: to,
    t_from: null,
    t_to: null,
    detail:
      from === to
        ? `batch ${from} never arrived`
        : `batches ${from}–${to} never arrived (${to - from + 1} batches)`,
  };
}

async function chainForks(store: Store, hostId: string): Promise<KnownGap[]> {
  const rows = await store.db
    .selectFrom('gaps')
    .select(['seq', 't_to', 'detail'])
    .where('host_id', '=', hostId)
    .where('kind', '=', 'fork')
    .orderBy('seq')
    .execute();
  return rows.map((r) => ({
    kind: 'fork',
    seq_from: Number(r.seq),
    seq_to: Number(r.seq),
    t_from: null,
    t_to: r.t_to === null ? null : Number(r.t_to),
    detail: r.detail,
  }));
}

async function recordedLosses(store: Store, hostId: string): Promise<KnownGap[]> {
  const kinds = Object.keys(RECORDED_GAP_KINDS);
  const rows = await store.db
    .selectFrom('gaps')
    .select(['kind', 'seq', 't_from', 't_to', 'detail'])
    .where('host_id', '=', hostId)
    .where('kind', 'in', kinds)
    .orderBy('seq')
    .orderBy('id')
    .execute();
  return rows.map((r) => ({
    kind: RECORDED_GAP_KINDS[r.kind],
    seq_from: Number(r.seq),
    seq_to: Number(r.seq),
    t_from: r.t_from === null ? null : Number(r.t_from),
    t_to: r.t_to === null ? null : Number(r.t_to),
    detail: `batch ${r.seq}: ${r.detail}`,
  }));
}
