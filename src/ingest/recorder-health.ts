import type { Insertable, Transaction } from 'kysely';
import type { RecordOf } from '../protocol/index.js';
import type { Database, GapsTable, RecorderEventsTable } from '../store/index.js';
import type { BatchScope } from './batch-applier.js';

/** The records that say how the recorder itself is doing. */
export type RecorderHealthRecord = RecordOf<
  'recorder_start' | 'recorder_stop' | 'recorder_crash' | 'recorder_heartbeat'
>;

const KIND = {
  recorder_start: 'start',
  recorder_stop: 'stop',
  recorder_crash: 'crash',
  recorder_heartbeat: 'heartbeat',
} as const;

/**
 * Stores a batch's health records in `recorder_events`, in one statement at the end of the batch
 * (there are a few per batch at most: nothing reads them back within it). A `recorder_crash` also
 * becomes a `crash` row in `gaps`: the window the recorder was blind is a known gap, counted by
 * `pofr verify` like the recorder's other losses.
 */
export class RecorderHealthWriter {
  private readonly events: Insertable<RecorderEventsTable>[] = [];
  private readonly gaps: Insertable<GapsTable>[] = [];

  constructor(
    private readonly trx: Transaction<Database>,
    private readonly scope: BatchScope,
  ) {}

  add(r: RecorderHealthRecord, ord: number): void {
    const { type, t, pid, ...rest } = r;
    const promise =
      r.type === 'recorder_start' || r.type === 'recorder_heartbeat'
        ? { config_hash: r.config_hash, heartbeat_ms: r.heartbeat_ms, batch_ms: r.batch_ms }
        : { config_hash: null, heartbeat_ms: null, batch_ms: null };
    this.events.push({
      host_id: this.scope.hostId,
      boot_id: this.scope.bootId,
      seq: this.scope.seq,
      ord,
      t,
      kind: KIND[type],
      pid,
      ...promise,
      detail: JSON.stringify(rest),
    });
    if (r.type === 'recorder_crash') this.gaps.push(this.blindWindow(r));
  }

  async flush(): Promise<void> {
    if (this.events.length > 0) await this.trx.insertInto('recorder_events').values(this.events).execute();
    if (this.gaps.length > 0) await this.trx.insertInto('gaps').values(this.gaps).execute();
    this.events.length = 0;
    this.gaps.length = 0;
  }

  private blindWindow(r: RecordOf<'recorder_crash'>): Insertable<GapsTable> {
    const how = r.rebooted
      ? 'the host booted again without the recorder stopping (power loss, reset or host crash)'
      : 'the recorder ended without a clean stop (killed, crashed or the host lost power)';
    const who = r.crashed_pid === null ? '' : ` (pid ${r.crashed_pid})`;
    const since =
      r.last_write === null ? 'its journal did not say since when' : 'blind from its last journal write';
    const back =
      r.recovered_seq_from === null
        ? 'nothing unsealed was recovered'
        : `its journal gave back ${r.recovered_records} records (batches ${r.recovered_seq_from}–${r.recovered_seq_to})`;
    const lost = r.journal_lost ? `; ${r.journal_lost} records were not in the journal and are lost` : '';
    return {
      host_id: this.scope.hostId,
      kind: 'crash',
      seq: this.scope.seq,
      t_from: r.last_write,
      t_to: r.t,
      detail: `${how}${who}, ${since} until it restarted (pid ${r.pid}); ${back}${lost}`,
      at: this.scope.receivedAt,
    };
  }
}
