import type { Store } from '../../store/index.js';
import type { AuditKind } from './audit-kinds.js';

/** One refused attempt, as the server saw it. */
export interface AuditEntry {
  readonly kind: AuditKind;
  readonly reason: string;
  /** "ip:port" of the peer. */
  readonly remote?: string | null;
  /** The peer's address alone; derived from `remote` when absent. */
  readonly source?: string | null;
  readonly fingerprint?: string | null;
  readonly hostId?: string | null;
  readonly user?: string | null;
  readonly code?: string | null;
  /** µs since the epoch; default now. */
  readonly at?: number;
}

/** How many rows refusals may write, so that a flood of them cannot flood the table. */
export interface AuditLimits {
  /** Rows one source (address) may write per window; past it, its refusals are counted. */
  readonly perSource: number;
  /** Rows every source together may write per window. */
  readonly total: number;
  readonly windowMs: number;
  /** Sources counted apart at once; past it, further sources share one count under source '*'. */
  readonly maxSources: number;
}

export const DEFAULT_AUDIT_LIMITS: AuditLimits = Object.freeze({
  perSource: 30,
  total: 600,
  windowMs: 60_000,
  maxSources: 10_000,
});

/** Per window, at most this many 'suppressed' rows; the smaller counts are summed under '*'. */
const MAX_SUPPRESSED_ROWS = 100;
const REASON_MAX = 2000;

export type AuditLog = (msg: string, fields?: object) => void;

/**
 * The audit trail: every refusal becomes a row of `audit_events`, up to a rate per source; what the
 * rate does not let through is counted and written as one `suppressed` row per source and window.
 * Writing never throws into the caller: a failing store is logged, and serving goes on.
 *
 * Two ways to count. A long-running server counts in memory (`AuditTrail.inMemory`): nothing is
 * read from the store to decide. One-shot processes (sshd's AuthorizedKeysCommand and forced
 * commands, one per connection) count in the store (`AuditTrail.shared`), so that their limit holds
 * across processes.
 *
 * @example
 * const audit = AuditTrail.inMemory(store, log);
 * audit.record({ kind: 'unknown_key', reason: '…', remote: '203.0.113.9:50122', fingerprint });
 * await audit.close(); // writes what is still counted
 */
export class AuditTrail {
  readonly #store: Store;
  readonly #log: AuditLog;
  readonly #limits: AuditLimits;
  readonly #shared: boolean;
  #writes: Promise<void> = Promise.resolve();
  #windowStart = 0;
  #total = 0;
  readonly #counts = new Map<string, SourceCount>();
  readonly #timer: NodeJS.Timeout | null;

  private constructor(store: Store, log: AuditLog, limits: Partial<AuditLimits>, shared: boolean) {
    this.#store = store;
    this.#log = log;
    this.#limits = { ...DEFAULT_AUDIT_LIMITS, ...limits };
    this.#shared = shared;
    this.#timer = shared ? null : setInterval(() => this.#rotate(Date.now()), this.#limits.windowMs);
    this.#timer?.unref();
  }

  static inMemory(store: Store, log: AuditLog, limits: Partial<AuditLimits> = {}): AuditTrail {
    return new AuditTrail(store, log, limits, false);
  }

  static shared(store: Store, log: AuditLog, limits: Partial<AuditLimits> = {}): AuditTrail {
    return new AuditTrail(store, log, limits, true);
  }

  record(entry: AuditEntry): void {
    const row = toRow(entry);
    if (this.#shared) {
      this.#enqueue(() => this.#recordShared(row));
      return;
    }
    const nowMs = Math.floor(row.at / 1000);
    if (nowMs >= this.#windowStart + this.#limits.windowMs) this.#rotate(nowMs);
    let count = this.#counts.get(row.source);
    if (!count) {
      const key = this.#counts.size >= this.#limits.maxSources ? '*' : row.source;
      count = this.#counts.get(key) ?? newCount(key);
      this.#counts.set(key, count);
    }
    if (count.written < this.#limits.perSource && this.#total < this.#limits.total) {
      count.written++;
      this.#total++;
      this.#enqueue(() => this.#insert(row));
      return;
    }
    count.suppressed++;
    count.kinds.set(row.kind, (count.kinds.get(row.kind) ?? 0) + 1);
    count.first = Math.min(count.first, row.at);
    count.last = Math.max(count.last, row.at);
    if (row.host_id !== null) count.hosts.add(row.host_id);
  }

  /** Writes every count still open and waits for every write. */
  async flush(): Promise<void> {
    if (!this.#shared) this.#rotate(Date.now());
    await this.#writes;
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.flush();
  }

  #enqueue(write: () => Promise<void>): void {
    this.#writes = this.#writes.then(write).catch((e: unknown) => {
      this.#log('audit row not written', { error: (e as Error).message });
    });
  }

  async #insert(row: AuditRow): Promise<void> {
    await this.#store.db.insertInto('audit_events').values(row).execute();
  }

  /** Closes the window: one 'suppressed' row per source that went over the rate, then a new count. */
  #rotate(nowMs: number): void {
    const over = [...this.#counts.values()].filter((c) => c.suppressed > 0);
    over.sort((a, b) => b.suppressed - a.suppressed);
    const rows = over.slice(0, MAX_SUPPRESSED_ROWS);
    const rest = over.slice(MAX_SUPPRESSED_ROWS);
    if (rest.length > 0) {
      const merged = newCount('*');
      for (const c of rest) mergeInto(merged, c);
      rows.push(merged);
    }
    for (const c of rows) {
      const row = suppressedRow(c, this.#limits);
      this.#enqueue(() => this.#insert(row));
    }
    this.#counts.clear();
    this.#total = 0;
    this.#windowStart = Math.floor(nowMs / this.#limits.windowMs) * this.#limits.windowMs;
  }

  /** The same limits, counted in the store: several processes write the same table. */
  async #recordShared(row: AuditRow): Promise<void> {
    const db = this.#store.db;
    const windowStart = Math.floor(row.at / 1000 / this.#limits.windowMs) * this.#limits.windowMs * 1000;
    const counted = await db
      .selectFrom('audit_events')
      .select((eb) => [
        eb.fn.countAll<number>().as('total'),
        eb.fn.sum<number>(eb.case().when('source', '=', row.source).then(1).else(0).end()).as('mine'),
      ])
      .where('at', '>=', windowStart)
      .where('kind', '<>', 'suppressed')
      .executeTakeFirstOrThrow();
    if (Number(counted.mine ?? 0) < this.#limits.perSource && Number(counted.total) < this.#limits.total) {
      await this.#insert(row);
      return;
    }
    // One counting row per source and window; the increment is one statement, so concurrent
    // processes never lose a count (at worst two of them each insert a counting row).
    const updated = await db
      .updateTable('audit_events')
      .set((eb) => ({ suppressed: eb('suppressed', '+', 1), fingerprint: null }))
      .where('kind', '=', 'suppressed')
      .where('source', '=', row.source)
      .where('at', '>=', windowStart)
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) > 0) return;
    await this.#insert({
      ...row,
      kind: 'suppressed',
      code: null,
      suppressed: 1,
      reason: clip(
        `refusals from ${row.source} over the audit rate (${this.#limits.perSource} rows a source, ${this.#limits.total} in all, per ${this.#limits.windowMs / 1000} s): counted in suppressed, not written one by one; the first was ${row.kind}: ${row.reason}`,
      ),
    });
  }
}

interface AuditRow {
  at: number;
  remote: string | null;
  source: string;
  fingerprint: string | null;
  host_id: string | null;
  ssh_user: string | null;
  kind: string;
  code: string | null;
  reason: string;
  suppressed: number;
}

interface SourceCount {
  readonly source: string;
  written: number;
  suppressed: number;
  first: number;
  last: number;
  readonly kinds: Map<string, number>;
  readonly hosts: Set<string>;
}

function newCount(source: string): SourceCount {
  return {
    source,
    written: 0,
    suppressed: 0,
    first: Number.MAX_SAFE_INTEGER,
    last: 0,
    kinds: new Map(),
    hosts: new Set(),
  };
}

function mergeInto(into: SourceCount, c: SourceCount): void {
  into.suppressed += c.suppressed;
  into.first = Math.min(into.first, c.first);
  into.last = Math.max(into.last, c.last);
  for (const [k, n] of c.kinds) into.kinds.set(k, (into.kinds.get(k) ?? 0) + n);
  for (const h of c.hosts) into.hosts.add(h);
}

function suppressedRow(c: SourceCount, limits: AuditLimits): AuditRow {
  const kinds = [...c.kinds.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k}×${n}`)
    .join(', ');
  const from = new Date(c.first / 1000).toISOString();
  const to = new Date(c.last / 1000).toISOString();
  return {
    at: c.last,
    remote: null,
    source: c.source,
    fingerprint: null,
    host_id: c.hosts.size === 1 ? [...c.hosts][0] : null,
    ssh_user: null,
    kind: 'suppressed',
    code: null,
    reason: clip(
      `${c.suppressed} refusals from ${c.source === '*' ? 'many addresses' : c.source} between ${from} and ${to} over the audit rate (${limits.perSource} rows a source, ${limits.total} in all, per ${limits.windowMs / 1000} s), counted and not written one by one: ${kinds}`,
    ),
    suppressed: c.suppressed,
  };
}

function toRow(e: AuditEntry): AuditRow {
  return {
    at: e.at ?? Date.now() * 1000,
    remote: e.remote ?? null,
    source: e.source ?? sourceOf(e.remote ?? null),
    fingerprint: e.fingerprint ?? null,
    host_id: e.hostId ?? null,
    ssh_user: e.user ?? null,
    kind: e.kind,
    code: e.code ?? null,
    reason: clip(e.reason),
    suppressed: 0,
  };
}

/** The address of "ip:port" or "[v6]:port". */
export function sourceOf(remote: string | null): string {
  if (remote === null || remote === '') return 'unknown';
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(remote);
  if (v6) return v6[1];
  const m = /^([^:]+):\d+$/.exec(remote);
  return m ? m[1] : remote;
}

function clip(s: string): string {
  return s.length > REASON_MAX ? `${s.slice(0, REASON_MAX - 1)}…` : s;
}
