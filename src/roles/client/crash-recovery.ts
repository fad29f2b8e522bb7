import type { KeyObject } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { PofrRecord, RecordOf } from '../../protocol/index.js';
import { CrashJournal, type JournalContents } from '../../spool/index.js';
import { BatchAssembler, type BatchSink } from './batch-assembler.js';
import type { ClientOptions, Log } from './run-client.js';

export interface RecoveryOptions {
  /** The journal the previous run left. */
  readonly path: string;
  readonly sink: BatchSink;
  readonly hostId: string;
  /** The boot this run records in (the journal's records keep the boot they were recorded in). */
  readonly bootId: string;
  readonly signingKey: KeyObject;
  readonly log: Log;
  /** Called after each recovered batch reached the spool. */
  readonly onSealed?: () => void;
  /** µs; default now. */
  readonly now?: number;
  readonly pid?: number;
}

export interface Recovery {
  /** For the new run's first batch: `recorder_crash` when the last run did not stop cleanly, and any gap still owed. */
  readonly records: readonly PofrRecord[];
  /** Records of the journal sealed into batches now. */
  readonly recovered: number;
  readonly crashed: boolean;
}

const NOTHING: Recovery = { records: [], recovered: 0, crashed: false };

/**
 * What the previous run left in its crash journal is sealed into batches before this run records
 * anything: same chain (they follow the spool's head, as they would have), same signing key, and the
 * boot the records were recorded in (a process is (boot, pid, start ticks): a journal from before a
 * reboot keeps its boot id). When that run did not stop cleanly, a `recorder_crash` record says when
 * it last wrote, when this one came back and what was recovered; the server turns the window between
 * into a known gap.
 *
 * @example
 * const { records } = recoverJournal({ path, sink: spool, hostId, bootId, signingKey, log });
 * assembler.add(records); // the new run's first records
 */
export function recoverJournal(opts: RecoveryOptions): Recovery {
  const contents = CrashJournal.read(opts.path);
  if (contents === null) return NOTHING;
  const now = opts.now ?? Date.now() * 1000;
  const { header } = contents;
  if (header !== null && header.host_id !== opts.hostId) {
    opts.log('ignoring a crash journal of another enrollment', {
      path: opts.path,
      journal_host: header.host_id,
      host_id: opts.hostId,
    });
    return NOTHING;
  }
  const owed: PofrRecord[] = [];
  const sealed = sealLeftovers(opts, contents, now, owed);
  const crashed = contents.stopped === null;
  if (!crashed) {
    if (sealed.count > 0) opts.log('sealed records the last run still owed', { records: sealed.count });
    return { records: owed, recovered: sealed.count, crashed };
  }
  const crash: RecordOf<'recorder_crash'> = {
    type: 'recorder_crash',
    t: now,
    pid: opts.pid ?? process.pid,
    last_write: contents.lastWrite,
    crashed_pid: header?.pid ?? null,
    crashed_boot_id: header?.boot_id ?? null,
    rebooted: header !== null && header.boot_id !== opts.bootId,
    recovered_records: sealed.count,
    recovered_seq_from: sealed.from,
    recovered_seq_to: sealed.to,
    journal_lost: header === null ? null : (contents.lost?.dropped ?? 0),
    torn_bytes: contents.tornBytes,
  };
  opts.log('the last run did not stop cleanly: sealed what its journal held', {
    last_write: contents.lastWrite === null ? null : new Date(contents.lastWrite / 1000).toISOString(),
    recovered_records: sealed.count,
    batches: sealed.from === null ? 0 : sealed.to! - sealed.from + 1,
    rebooted: crash.rebooted,
    journal_lost: crash.journal_lost,
    torn_bytes: crash.torn_bytes,
  });
  return { records: [crash, ...owed], recovered: sealed.count, crashed };
}

/** Seals the journal's records (and the gaps it knows of) into batches of the boot they belong to. */
function sealLeftovers(
  opts: RecoveryOptions,
  contents: JournalContents,
  now: number,
  owed: PofrRecord[],
): { count: number; from: number | null; to: number | null } {
  const { header } = contents;
  const none = { count: 0, from: null, to: null };
  if (header === null) return none;
  const records = [...journalGaps(contents, now), ...contents.records];
  if (records.length === 0) return none;
  const before = opts.sink.chainHead().seq;
  if (before > header.base_seq) {
    // The run died between sealing these records and emptying its journal: they are in the spool.
    opts.log('the crash journal holds records already sealed; not sealing them twice', {
      journal_base_seq: header.base_seq,
      spool_seq: before,
    });
    return none;
  }
  let loss: { dropped: number; reason: string } | null = null;
  const assembler = new BatchAssembler({
    hostId: opts.hostId,
    bootId: header.boot_id,
    signingKey: opts.signingKey,
    sink: opts.sink,
    maxAgeMs: Number.MAX_SAFE_INTEGER,
    onSealed: opts.onSealed,
    onLoss: (dropped, reason) => {
      loss = { dropped: (loss?.dropped ?? 0) + dropped, reason };
    },
  });
  assembler.add(records);
  assembler.seal();
  const after = opts.sink.chainHead().seq;
  let lost = 0;
  if (loss !== null) {
    const l: { dropped: number; reason: string } = loss;
    let from = Number.MAX_SAFE_INTEGER;
    let to = 0;
    for (const r of records) {
      from = Math.min(from, r.t);
      to = Math.max(to, r.t);
    }
    owed.push({
      type: 'gap',
      t: now,
      from,
      to,
      reason: `records recovered from the crash journal could not be spooled: ${l.reason}`.slice(0, 1024),
      dropped: l.dropped,
    });
    lost = Math.min(contents.records.length, l.dropped);
  }
  if (after === before) return none;
  return { count: contents.records.length - lost, from: before + 1, to: after };
}

/** What the journal says it could not keep, or kept damaged, as gap records. */
function journalGaps(contents: JournalContents, now: number): PofrRecord[] {
  const gaps: PofrRecord[] = [];
  const { lost, header } = contents;
  if (lost !== null && lost.dropped > 0) {
    gaps.push({
      type: 'gap',
      t: lost.to,
      from: lost.from,
      to: lost.to,
      reason: `not in the crash journal (${lost.reason}), so lost when the recorder died`.slice(0, 1024),
      dropped: lost.dropped,
    });
  }
  if (contents.invalid > 0 && header !== null) {
    gaps.push({
      type: 'gap',
      t: contents.lastWrite ?? now,
      from: header.started,
      to: contents.lastWrite ?? now,
      reason: 'records in the crash journal did not match the protocol schema (damaged journal)',
      dropped: contents.invalid,
    });
  }
  return gaps;
}

/**
 * This run's journal, begun at the spool's chain head (after recovery sealed what the last run
 * left); undefined when the journal is disabled, and then no earlier journal is left behind.
 */
export function startJournal(
  opts: Pick<ClientOptions, 'journal' | 'journalMaxBytes' | 'journalSyncMs' | 'log'>,
  path: string,
  run: { readonly host_id: string; readonly boot_id: string; readonly sink: BatchSink },
): CrashJournal | undefined {
  if (opts.journal === false) {
    rmSync(path, { force: true });
    return undefined;
  }
  const head = run.sink.chainHead();
  return CrashJournal.open(
    path,
    {
      host_id: run.host_id,
      boot_id: run.boot_id,
      pid: process.pid,
      started: Date.now() * 1000,
      base_seq: head.seq,
      base_hash: head.hash,
    },
    {
      maxBytes: opts.journalMaxBytes,
      syncMs: opts.journalSyncMs,
      onError: (message) =>
        opts.log('the crash journal failed; recording goes on, a crash now loses more', { error: message }),
    },
  );
}
