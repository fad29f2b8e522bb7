import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Kysely, type RawBuilder, type SelectQueryBuilder, type SqlBool, sql } from 'kysely';
import { PofrError } from '../errors.js';
import { type Database, openStore, type Store } from '../store/index.js';
import { ingestBatch } from './apply-batch.js';
import { ORD_PER_BATCH } from './batch-applier.js';
import { latestPrune } from './prune-store.js';
import { seedStateAt } from './state-at-cut.js';

/** One table whose stored rows are not what the host's evidence derives. */
export interface RederiveMismatch {
  /** The table compared (`batches` when a stored batch no longer replays). */
  readonly table: string;
  /** The batch that created the first differing row, when the row tells; 0 otherwise. */
  readonly seq: number;
  /** The first differing row (identity, column, stored vs derived value) and how many rows differ. */
  readonly detail: string;
}

export interface RederiveResult {
  /** Tables compared. */
  tables: number;
  /** Stored rows compared with their re-derivation. */
  rows: number;
  mismatches: RederiveMismatch[];
}

export interface RederiveOptions {
  /** Where the scratch SQLite store is created (default: the OS temp dir); it holds a copy of the host's rows. */
  readonly scratchDir?: string;
}

type Value = string | number | Buffer | null;
type Row = Record<string, Value>;
// The compared queries differ per table; rows are normalized and compared by column name at run time.
type Select = SelectQueryBuilder<Database, keyof Database, Row>;

/** Rows compared per query: a large host is compared in chunks, never loaded whole. */
const CHUNK = 2_000;
/** Batch keys read per query; the raw bytes are then read one batch at a time (up to 32 MiB each). */
const KEY_PAGE = 500;

/**
 * Replays every stored batch of a host, from its raw signed evidence and in the order it was first
 * applied, into a scratch SQLite store, then compares the derived rows with the stored ones table by
 * table. An edited, deleted or forged row of processes, file_opens, endpoints, endpoint_states,
 * recorder gaps and crash windows, recorder_events, dns_queries, cred_changes or the inventory tables is reported with the
 * first differing row.
 *
 * The comparison is against what this version of ingest derives: the store's rows were derived by
 * the version that received them.
 *
 * @example
 * const r = await rederiveHost(store, hostId);
 * for (const m of r.mismatches) console.log(`${m.table}: ${m.detail}`);
 */
export async function rederiveHost(
  store: Store,
  hostId: string,
  opts: RederiveOptions = {},
): Promise<RederiveResult> {
  const dir = mkdtempSync(join(opts.scratchDir ?? tmpdir(), 'pofr-rederive-'));
  try {
    const scratch = await openStore({ kind: 'sqlite', path: join(dir, 'rederived.db') });
    try {
      // The copy is thrown away afterwards: it need not survive a power loss.
      await sql`PRAGMA synchronous = OFF`.execute(scratch.db);
      // One snapshot for the replay and the comparison: batches a server ingests meanwhile must not
      // show up as stored rows that the replayed evidence lacks.
      return await store.db
        .transaction()
        .setIsolationLevel('repeatable read')
        .setAccessMode('read only')
        .execute(async (trx) => {
          const mismatches = await replayHost(trx, scratch, hostId);
          let rows = 0;
          for (const spec of TABLES) {
            const r = await compareTable(trx, scratch.db, hostId, spec);
            rows += r.rows;
            if (r.mismatch) mismatches.push(r.mismatch);
          }
          return { tables: TABLES.length, rows, mismatches };
        });
    } finally {
      await scratch.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- replay ------------------------------------------------------------------------------------

/**
 * Applies the host's batches to the scratch store by received_at, then seq: a gap filled later was
 * applied after the batches that arrived before it, and some rows depend on that order (a batch that
 * exits a process the store does not know yet cannot close it).
 */
async function replayHost(
  src: Kysely<Database>,
  scratch: Store,
  hostId: string,
): Promise<RederiveMismatch[]> {
  const host = await src
    .selectFrom('hosts')
    .select(['name', 'ssh_key', 'ssh_fingerprint', 'signing_key', 'enrolled_at'])
    .where('host_id', '=', hostId)
    .executeTakeFirst();
  if (!host) {
    throw new PofrError('POFR_HOST_UNKNOWN', `no enrolled host has id ${hostId}; list hosts with pofr hosts`);
  }
  const pruned = await latestPrune(src, hostId);
  // Approved whatever its status now: a revoked host's past batches were accepted when they came.
  await scratch.db
    .insertInto('hosts')
    .values({
      host_id: hostId,
      ...host,
      status: 'approved',
      approved_at: host.enrolled_at,
      boot_id: pruned?.boot_id ?? null,
    })
    .execute();
  if (pruned) await seedStateAt(src, scratch.db, hostId, pruned.before_seq, pruned.t_to);
  const failures: RederiveMismatch[] = [];
  let after: { receivedAt: number; seq: number } | null = null;
  for (;;) {
    let q = src.selectFrom('batches').select(['seq', 'received_at']).where('host_id', '=', hostId);
    if (after !== null) {
      const { receivedAt, seq } = after;
      q = q.where((eb) =>
        eb.or([
          eb('received_at', '>', receivedAt),
          eb.and([eb('received_at', '=', receivedAt), eb('seq', '>', seq)]),
        ]),
      );
    }
    const page = await q.orderBy('received_at').orderBy('seq').limit(KEY_PAGE).execute();
    if (page.length === 0) break;
    for (const b of page) {
      const seq = Number(b.seq);
      const receivedAt = Number(b.received_at);
      after = { receivedAt, seq };
      const ev = await src
        .selectFrom('batch_evidence')
        .select('raw')
        .where('host_id', '=', hostId)
        .where('seq', '=', seq)
        .executeTakeFirst();
      if (!ev) {
        failures.push({
          table: 'batch_evidence',
          seq,
          detail: `batch ${seq} has no batch_evidence row: its rows cannot be re-derived`,
        });
        continue;
      }
      const r = await ingestBatch(scratch, Buffer.from(ev.raw), { principal: hostId, receivedAt });
      if (r.status !== 'accepted') {
        const why = r.status === 'refused' ? `${r.code}: ${r.reason}` : 'it replays as a duplicate';
        failures.push({
          table: 'batches',
          seq,
          detail: `batch ${seq} does not replay from its evidence (${why})`,
        });
      }
    }
  }
  return failures;
}

// ---- what is compared --------------------------------------------------------------------------

/**
 * How one table is compared. Surrogate ids differ between the stores, so `process_id`, `parent_id`
 * and `endpoint_id` are replaced by the identity of the row they point to (joined on the same host:
 * a pointer to a missing row or to another host's row shows as `has_*` 1 with NULL identity).
 */
interface TableSpec {
  readonly table: string;
  /** The host's rows with the compared columns; one portable query run against both stores. */
  readonly rows: (db: Kysely<Database>, hostId: string) => Select;
  /**
   * Non-null integer expressions the database orders and pages by. Never text: PostgreSQL's collation
   * and SQLite's byte order disagree, so rows equal on these are ordered in JS instead. Taken from
   * the row's identity where possible, so that an edited row still meets its re-derived twin.
   */
  readonly keys: readonly RawBuilder<number>[];
  /** Compared columns, as named by `rows`. */
  readonly columns: readonly string[];
  /** The columns that name a row: two rows with the same identity are one row that changed. */
  readonly identity: readonly string[];
  /** Shown beside the identity to make a row recognisable (not compared as identity). */
  readonly describe?: readonly string[];
  readonly seqOf: (row: Row) => number;
}

const ref = (c: string) => sql.ref<number>(c);
const flag = (c: string) => sql<number>`case when ${sql.ref(c)} is null then 0 else 1 end`;
const batchOf = (ord: Value) => (typeof ord === 'number' ? Math.floor(ord / ORD_PER_BATCH) : 0);

/** What names a process image across stores. */
const PROCESS_IDENTITY = ['boot_id', 'pid', 'start_ticks', 'exec_index'] as const;

/**
 * A row's pointer to another row of the host, compared as that row's identity: the pointed table is
 * left-joined as `alias` on the id and the same host, and its identity selected as `<as>_<column>`.
 */
interface Pointer {
  /** The column holding the pointed row's id. */
  readonly column: 'parent_id' | 'process_id' | 'endpoint_id';
  readonly table: 'processes' | 'endpoints';
  readonly alias: string;
  readonly identity: readonly string[];
  readonly as: string;
  /** Selected as 1 when the pointer is set, so that a dangling pointer differs from none. */
  readonly flag?: string;
}

const PARENT: Pointer = {
  column: 'parent_id',
  table: 'processes',
  alias: 'pp',
  identity: PROCESS_IDENTITY,
  as: 'parent',
  flag: 'has_parent',
};
const FILE_HOLDER: Pointer = {
  column: 'process_id',
  table: 'processes',
  alias: 'p',
  identity: PROCESS_IDENTITY,
  as: 'proc',
};
const ENDPOINT_HOLDER: Pointer = { ...FILE_HOLDER, flag: 'has_process' };
const STATE_OF: Pointer = {
  column: 'endpoint_id',
  table: 'endpoints',
  alias: 'e',
  identity: ['boot_id', 'key', 'open_ord'],
  as: 'endpoint',
};

/** A file's or an endpoint's sightings as ingest derives them (open_ord is part of its identity). */
const SIGHTINGS = ['first_seen', 'last_seen', 'is_open', 'close_ord'] as const;

/** The names a pointer is compared under, in the order they are compared. */
function pointed(p: Pointer): string[] {
  return [...(p.flag === undefined ? [] : [p.flag]), ...p.identity.map((c) => `${p.as}_${c}`)];
}

/**
 * A table's spec whose rows are the host's rows of `table as alias` with every named column
 * (identity, describe, columns): the pointer's names come from the pointed row, the others are the
 * table's own columns of that name.
 */
function derivedTable(
  def: Omit<TableSpec, 'rows'> & {
    readonly table: keyof Database;
    readonly alias: string;
    readonly pointer?: Pointer;
    /** Only rows with these column values. */
    readonly only?: Readonly<Record<string, string>>;
  },
): TableSpec {
  const { alias, pointer, only = {}, ...spec } = def;
  const { table } = spec;
  const names = new Set([...def.identity, ...(def.describe ?? []), ...def.columns]);
  const fromPointer = new Map<string, RawBuilder<unknown>>();
  if (pointer !== undefined) {
    for (const c of pointer.identity) fromPointer.set(`${pointer.as}_${c}`, sql.ref(`${pointer.alias}.${c}`));
    if (pointer.flag !== undefined) fromPointer.set(pointer.flag, flag(`${alias}.${pointer.column}`));
  }
  const selection = [...names].map((n) => (fromPointer.get(n) ?? sql.ref(`${alias}.${n}`)).as(n));
  return {
    ...spec,
    rows: (db, hostId) => {
      // Table and column names come from the specs above, never from input.
      const untyped = db as unknown as Kysely<Record<string, Row>>;
      let q = untyped.selectFrom(`${table} as ${alias}`);
      if (pointer !== undefined) {
        const to = pointer.alias;
        q = q.leftJoin(`${pointer.table} as ${to}`, (j) =>
          j
            .onRef(`${to}.id`, '=', `${alias}.${pointer.column}`)
            .onRef(`${to}.host_id`, '=', `${alias}.host_id`),
        ) as unknown as typeof q;
      }
      q = q.where(`${alias}.host_id`, '=', hostId);
      for (const [c, v] of Object.entries(only)) q = q.where(`${alias}.${c}`, '=', v);
      return q.select(selection) as unknown as Select;
    },
  };
}

/** The tables ingest derives from evidence. */
const TABLES: readonly TableSpec[] = [
  derivedTable({
    table: 'processes',
    alias: 'p',
    pointer: PARENT,
    keys: [ref('p.pid'), ref('p.start_ticks'), ref('p.exec_index')],
    identity: PROCESS_IDENTITY,
    describe: ['comm'],
    columns: [
      'start',
      'end',
      'end_reason',
      'ppid',
      ...pointed(PARENT),
      'exe',
      'exe_raw',
      'comm',
      'comm_raw',
      'argv',
      'argv_raw',
      'cmdline',
      'cwd',
      'cwd_raw',
      'ruid',
      'euid',
      'rgid',
      'egid',
      'user',
      'source',
      'observer',
      'argv_source',
      'argv_complete',
      'cgroup',
      'cgroup_raw',
      'container_id',
      'ns_pid',
      'ns_net',
      'ns_mnt',
      'ns_user',
      'open_ord',
      'close_ord',
    ],
    seqOf: (r) => batchOf(r.open_ord),
  }),
  derivedTable({
    table: 'file_opens',
    alias: 'f',
    pointer: FILE_HOLDER,
    keys: [ref('f.pid'), ref('f.fd'), ref('f.open_ord')],
    identity: ['pid', 'fd', 'open_ord'],
    describe: ['path'],
    columns: [...pointed(FILE_HOLDER), 'path', 'path_raw', 'kind', ...SIGHTINGS],
    seqOf: (r) => batchOf(r.open_ord),
  }),
  derivedTable({
    // country, city and fqdn are left out: enrichment (GeoIP, reverse DNS) fills them after ingest,
    // from databases that are not part of the evidence.
    table: 'endpoints',
    alias: 'e',
    pointer: ENDPOINT_HOLDER,
    keys: [ref('e.open_ord'), ref('e.inode')],
    identity: ['boot_id', 'key', 'open_ord'],
    columns: [
      ...pointed(ENDPOINT_HOLDER),
      'pid',
      'proto',
      'family',
      'local_ip',
      'local_port',
      'remote_ip',
      'remote_port',
      'state',
      'netns',
      'inode',
      ...SIGHTINGS,
    ],
    seqOf: (r) => batchOf(r.open_ord),
  }),
  derivedTable({
    table: 'endpoint_states',
    alias: 's',
    pointer: STATE_OF,
    keys: [ref('s.ord'), sql<number>`coalesce(${sql.ref('e.open_ord')}, -1)`],
    identity: [...pointed(STATE_OF), 'ord'],
    columns: ['t', 'state'],
    seqOf: (r) => batchOf(r.ord),
  }),
  // Only the recorder's own word: its losses and its crash windows. seq_gap and fork rows (and every
  // `at`) say when batches arrived, not what they hold; verifyStore checks chain breaks against them.
  recorderGaps('recorder'),
  recorderGaps('crash'),
  derivedTable({
    table: 'recorder_events',
    alias: 'r',
    keys: [ref('r.ord')],
    identity: ['ord'],
    describe: ['kind'],
    columns: ['boot_id', 'seq', 't', 'kind', 'pid', 'config_hash', 'heartbeat_ms', 'batch_ms', 'detail'],
    seqOf: (r) => batchOf(r.ord),
  }),
  derivedTable({
    table: 'dns_queries',
    alias: 'd',
    pointer: ENDPOINT_HOLDER,
    keys: [ref('d.ord')],
    identity: ['ord'],
    describe: ['name'],
    columns: [
      ...pointed(ENDPOINT_HOLDER),
      'boot_id',
      'seq',
      't',
      'pid',
      'start_ticks',
      'func',
      'name',
      'name_raw',
    ],
    seqOf: (r) => batchOf(r.ord),
  }),
  derivedTable({
    table: 'cred_changes',
    alias: 'c',
    pointer: ENDPOINT_HOLDER,
    keys: [ref('c.ord')],
    identity: ['ord'],
    describe: ['call'],
    columns: [
      ...pointed(ENDPOINT_HOLDER),
      'boot_id',
      'seq',
      't',
      'pid',
      'start_ticks',
      'call',
      ...['ruid', 'euid', 'rgid', 'egid'].flatMap((id) => [`old_${id}`, `new_${id}`]),
    ],
    seqOf: (r) => batchOf(r.ord),
  }),
  inventory('users', ['uid', 'gid', 'name', 'home', 'shell'], ['uid'], ['uid']),
  inventory('groups', ['gid', 'name', 'members'], ['gid'], ['gid']),
  inventory('interfaces', ['name', 'mac', 'addresses'], [], ['name']),
  inventory(
    'routes',
    ['family', 'destination', 'gateway', 'dev', 'metric'],
    ['family'],
    ['family', 'destination'],
  ),
  inventory(
    'devices',
    ['bus', 'device_id', 'vendor_id', 'product_id', 'name', 'serial'],
    [],
    ['bus', 'device_id'],
  ),
];

function recorderGaps(kind: 'recorder' | 'crash'): TableSpec {
  return derivedTable({
    table: 'gaps',
    alias: 'g',
    only: { kind },
    keys: [ref('g.seq'), sql<number>`coalesce(${sql.ref('g.t_from')}, -1)`],
    identity: ['seq', 't_from'],
    columns: ['t_to', 'detail'],
    seqOf: (r) => (typeof r.seq === 'number' ? r.seq : 0),
  });
}

function inventory(
  table: 'users' | 'groups' | 'interfaces' | 'routes' | 'devices',
  content: readonly string[],
  intKeys: readonly string[],
  identity: readonly string[],
): TableSpec {
  return derivedTable({
    table,
    alias: 'i',
    keys: [ref('i.valid_from'), ...intKeys.map((c) => ref(`i.${c}`))],
    identity: [...identity, 'valid_from'],
    columns: [...content, 'valid_to'],
    seqOf: () => 0,
  });
}

// ---- comparison --------------------------------------------------------------------------------

/** Reads one side of a table in key order, a chunk at a time. */
class RowStream {
  private buf: Row[] = [];
  private i = 0;
  private after: Value[] | null = null;
  private done = false;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly hostId: string,
    private readonly spec: TableSpec,
  ) {}

  async peek(): Promise<Row | undefined> {
    if (this.i >= this.buf.length && !this.done) await this.fill();
    return this.buf[this.i];
  }

  advance(): void {
    this.i++;
  }

  private async fill(): Promise<void> {
    let rows = await this.fetch(this.after === null ? null : { op: '>', key: this.after }, CHUNK);
    this.i = 0;
    if (rows.length === 0) {
      this.done = true;
      this.buf = [];
      return;
    }
    if (rows.length === CHUNK) {
      // The chunk may end inside a group of rows with equal keys; their order is decided in JS, so the
      // whole group is read at once.
      const last = keyOf(this.spec, rows[rows.length - 1]);
      rows = rows.filter((r) => compareKeys(keyOf(this.spec, r), last) !== 0);
      rows.push(...(await this.fetch({ op: '=', key: last }, null)));
    }
    rows.sort((a, b) => compareRows(this.spec, a, b));
    this.after = keyOf(this.spec, rows[rows.length - 1]);
    this.buf = rows;
  }

  private async fetch(where: { op: '>' | '='; key: Value[] } | null, limit: number | null): Promise<Row[]> {
    const { spec } = this;
    let q = spec
      .rows(this.db, this.hostId)
      .select(spec.keys.map((k, i) => k.as(`k${i}`))) as unknown as Select;
    if (where !== null) {
      q = q.where(sql<SqlBool>`(${sql.join(spec.keys)}) ${sql.raw(where.op)} (${sql.join(where.key)})`);
    }
    for (const k of spec.keys) q = q.orderBy(k);
    if (limit !== null) q = q.limit(limit);
    return (await q.execute()).map(normalizeRow);
  }
}

async function compareTable(
  stored: Kysely<Database>,
  derived: Kysely<Database>,
  hostId: string,
  spec: TableSpec,
): Promise<{ rows: number; mismatch: RederiveMismatch | null }> {
  const s = new RowStream(stored, hostId, spec);
  const d = new RowStream(derived, hostId, spec);
  let rows = 0;
  let changed = 0;
  let onlyStored = 0;
  let onlyDerived = 0;
  let first: RederiveMismatch | null = null;
  for (;;) {
    const a = await s.peek();
    const b = await d.peek();
    if (a === undefined && b === undefined) break;
    const c = a === undefined ? 1 : b === undefined ? -1 : compareRows(spec, a, b);
    if (a !== undefined && b !== undefined && c !== 0 && sameIdentity(spec, a, b)) {
      changed++;
      first ??= { table: spec.table, seq: spec.seqOf(b), detail: changedDetail(spec, a, b) };
    } else if (c < 0 && a !== undefined) {
      onlyStored++;
      first ??= {
        table: spec.table,
        seq: spec.seqOf(a),
        detail: `${label(spec, a)} is in the store but the evidence does not derive it (forged or altered)`,
      };
      rows++;
      s.advance();
      continue;
    } else if (c > 0 && b !== undefined) {
      onlyDerived++;
      first ??= {
        table: spec.table,
        seq: spec.seqOf(b),
        detail: `${label(spec, b)} derives from the evidence but is missing from the store (deleted or altered)`,
      };
      d.advance();
      continue;
    }
    rows++;
    s.advance();
    d.advance();
  }
  if (first === null) return { rows, mismatch: null };
  const counts = [
    changed > 0 ? `${changed} changed` : '',
    onlyStored > 0 ? `${onlyStored} only in the store` : '',
    onlyDerived > 0 ? `${onlyDerived} only in the evidence` : '',
  ].filter((x) => x !== '');
  return {
    rows,
    mismatch: { ...first, detail: `${first.detail}; ${spec.table} rows: ${counts.join(', ')}` },
  };
}

function changedDetail(spec: TableSpec, stored: Row, derived: Row): string {
  const cols = spec.columns.filter((c) => compareValues(stored[c], derived[c]) !== 0);
  const shown = cols
    .slice(0, 3)
    .map((c) => `${c} is ${show(stored[c])} in the store but ${show(derived[c])} in the evidence`);
  const more = cols.length > 3 ? ` (and ${cols.slice(3).join(', ')})` : '';
  return `${label(spec, derived)}: ${shown.join('; ')}${more}`;
}

function label(spec: TableSpec, r: Row): string {
  const id = spec.identity.map((c) => `${c} ${show(r[c])}`).join(' ');
  const extra = (spec.describe ?? []).map((c) => ` ${c} ${show(r[c])}`).join('');
  return `${spec.table} row ${id}${extra}`;
}

function show(v: Value): string {
  if (v === null) return 'NULL';
  if (Buffer.isBuffer(v)) {
    const hex = v.subarray(0, 48).toString('hex');
    return `0x${hex}${v.length > 48 ? `… (${v.length} bytes)` : ''}`;
  }
  if (typeof v === 'number') return String(v);
  const s = JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 117)}…"` : s;
}

/** Both engines' values as one type each: integers as numbers, blobs as Buffers. */
function normalizeRow(r: Record<string, unknown>): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(r)) {
    if (v === null || v === undefined) out[k] = null;
    else if (typeof v === 'bigint') out[k] = Number(v);
    else if (v instanceof Uint8Array) out[k] = Buffer.from(v);
    else out[k] = v as string | number;
  }
  return out;
}

function keyOf(spec: TableSpec, r: Row): Value[] {
  return spec.keys.map((_, i) => r[`k${i}`]);
}

function compareKeys(a: Value[], b: Value[]): number {
  for (let i = 0; i < a.length; i++) {
    const c = compareValues(a[i], b[i]);
    if (c !== 0) return c;
  }
  return 0;
}

/** A total order on rows, the same for both stores: keys, then identity, then every compared column. */
function compareRows(spec: TableSpec, a: Row, b: Row): number {
  const c = compareKeys(keyOf(spec, a), keyOf(spec, b));
  if (c !== 0) return c;
  for (const col of [...spec.identity, ...spec.columns]) {
    const d = compareValues(a[col], b[col]);
    if (d !== 0) return d;
  }
  return 0;
}

function sameIdentity(spec: TableSpec, a: Row, b: Row): boolean {
  return spec.identity.every((c) => compareValues(a[c], b[c]) === 0);
}

/** NULL < numbers < text (UTF-16 code units, as JS orders them) < bytes. */
function compareValues(a: Value, b: Value): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return Buffer.compare(a, b);
  return 0;
}

function rank(v: Value): number {
  if (v === null) return 0;
  if (typeof v === 'number') return 1;
  if (typeof v === 'string') return 2;
  return 3;
}
