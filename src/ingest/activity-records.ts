import type { Insertable, Transaction } from 'kysely';
import type { RecordOf } from '../protocol/index.js';
import type { CredChangesTable, Database, DnsQueriesTable } from '../store/index.js';
import type { BatchScope } from './batch-applier.js';
import { kernelText } from './kernel-text.js';

/** What a process did that is an instant, not an interval: a name lookup, a change of its ids. */
export type ActivityRecord = RecordOf<'dns_query' | 'cred_change'>;

/** Rows per INSERT: well under both engines' bound on bound parameters (about 20 per row). */
const ROWS_PER_INSERT = 1000;

/**
 * Stores a batch's `dns_query` and `cred_change` records in `dns_queries` and `cred_changes`, in
 * bulk at the end of the batch (nothing reads them back within it). Each row points at the process
 * image running at its time, when the store knows the process.
 */
export class ActivityWriter {
  private readonly dns: Insertable<DnsQueriesTable>[] = [];
  private readonly creds: Insertable<CredChangesTable>[] = [];

  constructor(
    private readonly trx: Transaction<Database>,
    private readonly scope: BatchScope,
    /** The id of the image of (pid, start_ticks) running at t, or null. */
    private readonly imageAt: (pid: number, startTicks: number, t: number) => Promise<number | null>,
  ) {}

  async add(r: ActivityRecord, ord: number): Promise<void> {
    const base = {
      host_id: this.scope.hostId,
      boot_id: this.scope.bootId,
      seq: this.scope.seq,
      ord,
      t: r.t,
      process_id: await this.imageAt(r.pid, r.start_ticks, r.t),
      pid: r.pid,
      start_ticks: r.start_ticks,
    };
    if (r.type === 'dns_query') {
      const name = kernelText(r.name);
      this.dns.push({ ...base, func: r.func, name: name.text, name_raw: name.raw });
      return;
    }
    this.creds.push({
      ...base,
      call: r.call,
      old_ruid: r.old.ruid,
      old_euid: r.old.euid,
      old_rgid: r.old.rgid,
      old_egid: r.old.egid,
      new_ruid: r.new.ruid,
      new_euid: r.new.euid,
      new_rgid: r.new.rgid,
      new_egid: r.new.egid,
    });
  }

  async flush(): Promise<void> {
    for (let i = 0; i < this.dns.length; i += ROWS_PER_INSERT) {
      await this.trx
        .insertInto('dns_queries')
        .values(this.dns.slice(i, i + ROWS_PER_INSERT))
        .execute();
    }
    for (let i = 0; i < this.creds.length; i += ROWS_PER_INSERT) {
      await this.trx
        .insertInto('cred_changes')
        .values(this.creds.slice(i, i + ROWS_PER_INSERT))
        .execute();
    }
    this.dns.length = 0;
    this.creds.length = 0;
  }
}
