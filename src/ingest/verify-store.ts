import type { KeyObject } from 'node:crypto';
import { isPofrError, PofrError } from '../errors.js';
import {
  applicableSealSeed,
  decodeRecords,
  GENESIS_HASH,
  loadPublicKey,
  readBatchFrame,
  verifyBatchFrame,
  verifyBatchSeal,
} from '../protocol/index.js';
import type { BatchesTable, Store } from '../store/index.js';
import { findKnownGaps, type KnownGap } from './known-gaps.js';
import { latestPrune } from './prune-store.js';
import { rederiveHost } from './rederive.js';

export interface VerifyFailure {
  seq: number;
  code: string;
  reason: string;
}

/**
 * One host's stored evidence, re-checked. `ok` is false when any batch or any re-derived row failed
 * (not authentic); `complete` is false when the record is authentic but known to miss something.
 */
export interface VerifyReport {
  host_id: string;
  host: string;
  batches: number;
  ok: boolean;
  /** Whether the host seals its batches, so every seal was checked too (false: a client from before sealing). */
  sealed: boolean;
  /** How many known gaps: refused or missing batches, forks, losses the recorder reported. */
  gaps: number;
  /** ok and no known gap. */
  complete: boolean;
  /** The host's latest prune (`pofr server prune`): batches below `before_seq` were taken away on purpose. */
  pruned: { before_seq: number; t_to: number; older_than: number; at: number } | null;
  known_gaps: KnownGap[];
  failures: VerifyFailure[];
}

// Batches are read in pages: a host's evidence can be far larger than memory.
const PAGE = 100;

/** A `batches` row with its evidence (NULL when the evidence row is missing). */
type StoredRow = Omit<BatchesTable, 'host_id'> & { raw: Uint8Array | null };

export interface VerifyOptions {
  /** Only this host (default: every enrolled host). */
  readonly hostId?: string;
  /**
   * Also re-derive every row from the evidence and compare (default true). False is the quick
   * check: the evidence alone, which does not notice an edited or deleted row.
   */
  readonly rederive?: boolean;
}

/**
 * Re-verifies every stored batch from its raw evidence: signature with the host's key, the batches
 * row against the signed header, records decode, and the hash chain. One changed byte in
 * batch_evidence or in a batches row makes the host's report fail, naming the batch. Then, unless
 * `rederive` is false, replays the host's evidence and compares every row it derives with the stored
 * rows (rederiveHost): an edited, deleted or forged row fails the report, naming the row. Rows are
 * re-derived only from evidence that verified: when the evidence fails, its report already says why
 * the rows cannot be trusted.
 *
 * Then lists what the record is known to miss (findKnownGaps): authentic is not complete.
 *
 * @example
 * const reports = await verifyStore(store);
 * process.exitCode = reports.some((r) => !r.ok) ? 1 : reports.some((r) => !r.complete) ? 3 : 0;
 */
export async function verifyStore(store: Store, opts: VerifyOptions = {}): Promise<VerifyReport[]> {
  let q = store.db
    .selectFrom('hosts')
    .select(['host_id', 'name', 'signing_key', 'seal_seed', 'seal_from'])
    .orderBy('host_id');
  if (opts.hostId !== undefined) q = q.where('host_id', '=', opts.hostId);
  const hosts = await q.execute();
  if (opts.hostId !== undefined && hosts.length === 0) {
    throw new PofrError(
      'POFR_HOST_UNKNOWN',
      `no enrolled host has id ${opts.hostId}; list hosts with pofr hosts`,
    );
  }
  const reports: VerifyReport[] = [];
  for (const h of hosts) {
    const seal = { seed: h.seal_seed, from: h.seal_from === null ? null : Number(h.seal_from) };
    const report = await verifyHost(store, h.host_id, h.name, h.signing_key, seal);
    if ((opts.rederive ?? true) && report.ok) {
      const { mismatches } = await rederiveHost(store, h.host_id);
      for (const m of mismatches) {
        report.failures.push({ seq: m.seq, code: 'POFR_VERIFY_FAILED', reason: m.detail });
      }
      report.ok = report.failures.length === 0;
    }
    report.known_gaps = await findKnownGaps(store, h.host_id);
    report.gaps = report.known_gaps.length;
    report.complete = report.ok && report.gaps === 0;
    reports.push(report);
  }
  return reports;
}

async function verifyHost(
  store: Store,
  hostId: string,
  name: string,
  signingKey: string,
  seal: SealOfHost,
): Promise<VerifyReport> {
  const failures: VerifyFailure[] = [];
  const fail = (seq: number, code: string, reason: string) => failures.push({ seq, code, reason });
  let key: KeyObject | null = null;
  try {
    key = loadPublicKey(signingKey);
  } catch (e) {
    fail(0, 'POFR_BATCH_SIGNATURE', `host ${hostId}'s signing key cannot be loaded: ${(e as Error).message}`);
  }
  const recordedBreaks = new Map<number, Set<string>>();
  for (const g of await store.db
    .selectFrom('gaps')
    .select(['seq', 'kind'])
    .where('host_id', '=', hostId)
    .where('kind', 'in', ['seq_gap', 'fork'])
    .execute()) {
    const seq = Number(g.seq);
    const kinds = recordedBreaks.get(seq) ?? new Set<string>();
    kinds.add(g.kind);
    recordedBreaks.set(seq, kinds);
  }

  let batches = 0;
  let gaps = 0;
  // A pruned host's kept chain links to the last pruned batch, whose hash the prune recorded.
  const cut = await latestPrune(store.db, hostId);
  let prev: { seq: number; hash: string; receivedAt: number } | null =
    cut === null ? null : { seq: cut.before_seq - 1, hash: cut.last_hash, receivedAt: 0 };
  let after = cut === null ? 0 : cut.before_seq - 1;
  for (;;) {
    const page = (await store.db
      .selectFrom('batches as b')
      .leftJoin('batch_evidence as e', (j) =>
        j.onRef('e.host_id', '=', 'b.host_id').onRef('e.seq', '=', 'b.seq'),
      )
      .select([
        'b.seq',
        'b.hash',
        'b.prev_hash',
        'b.payload_sha256',
        'b.boot_id',
        'b.t_from',
        'b.t_to',
        'b.record_count',
        'b.bytes',
        'b.chain',
        'b.received_at',
        'e.raw',
      ])
      .where('b.host_id', '=', hostId)
      .where('b.seq', '>', after)
      .orderBy('b.seq')
      .limit(PAGE)
      .execute()) as StoredRow[];
    if (page.length === 0) break;
    for (const raw of page) {
      const row = normalize(raw);
      batches++;
      after = row.seq;
      const frameHash = checkBatch(row, hostId, key, seal, (code, reason) => fail(row.seq, code, reason));
      // The link is judged on the signed prev_hash when the evidence reads, else on the row.
      const link = chainOf(row, prev);
      if (link !== 'genesis' && link !== 'ok') {
        if (recordedBreaks.get(row.seq)?.has(link === 'gap' ? 'seq_gap' : 'fork')) gaps++;
        else fail(row.seq, 'POFR_BATCH_CHAIN', `unrecorded chain break (${link}) before batch ${row.seq}`);
      }
      // A gap filled later: ingest stored 'gap' because seq - 1 arrived after this batch; it links now.
      const filledGap =
        row.chain === 'gap' &&
        link === 'ok' &&
        prev !== null &&
        prev.receivedAt >= row.received_at &&
        (recordedBreaks.get(row.seq)?.has('seq_gap') ?? false);
      if (filledGap) gaps++;
      else if (row.chain !== link) {
        fail(
          row.seq,
          'POFR_VERIFY_FAILED',
          `batches.chain is '${row.chain}' but the stored chain says '${link}'`,
        );
      }
      prev = { seq: row.seq, hash: frameHash ?? row.hash, receivedAt: row.received_at };
    }
  }
  const ok = failures.length === 0;
  return {
    host_id: hostId,
    host: name,
    batches,
    ok,
    sealed: seal.seed !== null,
    gaps,
    complete: ok && gaps === 0,
    pruned:
      cut === null
        ? null
        : { before_seq: cut.before_seq, t_to: cut.t_to, older_than: cut.older_than, at: cut.at },
    known_gaps: [],
    failures,
  };
}

function normalize(r: StoredRow): StoredRow {
  return {
    ...r,
    seq: Number(r.seq),
    t_from: Number(r.t_from),
    t_to: Number(r.t_to),
    record_count: Number(r.record_count),
    bytes: Number(r.bytes),
    received_at: Number(r.received_at),
  };
}

function chainOf(row: StoredRow, prev: { seq: number; hash: string } | null): string {
  if (row.seq === 1) return row.prev_hash === GENESIS_HASH ? 'genesis' : 'fork';
  if (prev === null || prev.seq !== row.seq - 1) return 'gap';
  return prev.hash === row.prev_hash ? 'ok' : 'fork';
}

/** Checks one batch against its evidence; returns the evidence's hash when the frame could be read. */
/** The host's seal seed and the first sequence number it applies to. */
interface SealOfHost {
  readonly seed: string | null;
  readonly from: number | null;
}

function checkBatch(
  row: StoredRow,
  hostId: string,
  key: KeyObject | null,
  seal: SealOfHost,
  fail: (code: string, reason: string) => void,
): string | null {
  if (row.raw === null) {
    fail('POFR_VERIFY_FAILED', `batch ${row.seq} has no batch_evidence row: it cannot be re-derived`);
    return null;
  }
  const raw = Buffer.from(row.raw);
  let frame: ReturnType<typeof readBatchFrame>;
  try {
    frame = readBatchFrame(raw);
  } catch (e) {
    fail(codeOf(e), `batch ${row.seq} evidence does not parse: ${(e as Error).message}`);
    return null;
  }
  if (key !== null) {
    try {
      verifyBatchFrame(frame, key);
    } catch (e) {
      fail(codeOf(e), (e as Error).message);
    }
  }
  try {
    verifyBatchSeal(frame, applicableSealSeed(seal.seed, seal.from, row.seq));
  } catch (e) {
    fail(codeOf(e), (e as Error).message);
  }
  const h = frame.header;
  const expected: [string, unknown, unknown][] = [
    ['host_id', hostId, h.host_id],
    ['seq', row.seq, h.seq],
    ['hash', row.hash, frame.hash],
    ['prev_hash', row.prev_hash, h.prev_hash],
    ['payload_sha256', row.payload_sha256, h.payload_sha256],
    ['boot_id', row.boot_id, h.boot_id],
    ['t_from', row.t_from, h.t_from],
    ['t_to', row.t_to, h.t_to],
    ['record_count', row.record_count, h.record_count],
    ['bytes', row.bytes, raw.length],
  ];
  for (const [col, stored, signed] of expected) {
    if (stored !== signed) {
      fail(
        'POFR_VERIFY_FAILED',
        `batch ${row.seq}: batches.${col} is ${String(stored)} but the evidence says ${String(signed)}`,
      );
    }
  }
  try {
    decodeRecords(frame);
  } catch (e) {
    fail(codeOf(e), `batch ${row.seq} records do not decode: ${(e as Error).message}`);
  }
  return frame.hash;
}

function codeOf(e: unknown): string {
  return isPofrError(e) ? e.code : 'POFR_VERIFY_FAILED';
}
