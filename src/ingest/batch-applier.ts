import { type Insertable, sql, type Transaction } from 'kysely';
import type { GeoLookup } from '../enrich/index.js';
import {
  type EndpointInfo,
  type FileInfo,
  type PofrRecord,
  type ProcessImage,
  type RecordOf,
  UNKNOWN_ID,
} from '../protocol/index.js';
import {
  type Capabilities,
  type Database,
  type EndpointStatesTable,
  type EndpointsTable,
  type FileOpensTable,
  fixedQuery,
  type IdPool,
  type LinkedTable,
  type ProcessesTable,
  reserveIds,
} from '../store/index.js';
import { ActivityWriter } from './activity-records.js';
import { chunks, MAX_PARAMS, writeRows } from './bulk-rows.js';
import { syncInventory } from './inventory-versions.js';
import { kernelArgv, kernelText } from './kernel-text.js';
import { contextColumns } from './process-context.js';
import { RecorderHealthWriter } from './recorder-health.js';

/** Which batch the records come from: every row they produce is stamped from it. */
export interface BatchScope {
  readonly hostId: string;
  readonly bootId: string;
  readonly seq: number;
  readonly tFrom: number;
  readonly receivedAt: number;
  /** The host's boot_id on record before this batch differs: rows of the old boot must be closed. */
  readonly bootChanged: boolean;
  /** Country of endpoints' remote addresses (enrichment: not part of the evidence, not re-derived). */
  readonly geo?: GeoLookup;
}

/** The ordinal that orders rows exactly, even at equal times: batch seq, then record index. */
export const ORD_PER_BATCH = 1_000_000;

type Trx = Transaction<Database>;

/**
 * What applying one record costs: nothing to wait for (the common case: every row the record needs
 * was read up front, and what it writes waits in memory for the batch's bulk writes), or a promise
 * when it must read or write the store first (a cache miss, keyframes, inventories, gaps).
 */
type Step = Promise<void> | undefined;

type ProcessRow = Insertable<ProcessesTable> & { id: number };
type FileRow = Insertable<FileOpensTable> & { id: number };
type EndpointRow = Insertable<EndpointsTable> & { id: number };

interface ImageRow {
  id: number;
  exec_index: number;
  start: number;
  end: number | null;
  parent_id: number | null;
  ppid: number;
  /** Not inserted yet: changes go to the row itself. */
  row: ProcessRow | null;
}

interface UserRow {
  name: string;
  valid_from: number;
  valid_to: number | null;
}

interface OpenEndpoint {
  id: number;
  state: string;
  row: EndpointRow | null;
}

/** An open descriptor; `row` while it is not inserted yet (changed in place). */
interface OpenFile {
  id: number;
  row: FileRow | null;
  path: string;
  path_raw: Uint8Array | null;
}

const IMAGE_COLUMNS = ['id', 'exec_index', 'start', 'end', 'parent_id', 'ppid'] as const;

/**
 * What a forked process's image takes from its parent's (process_fork), and an exec's new image from
 * the one before (process_exec_delta): all but identity, times and source.
 */
const INHERITED_COLUMNS = [
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
  'argv_source',
  'argv_complete',
  'cgroup',
  'cgroup_raw',
  'container_id',
  'ns_pid',
  'ns_net',
  'ns_mnt',
  'ns_user',
  'observer',
] as const;
type InheritedColumns = Pick<ProcessRow, (typeof INHERITED_COLUMNS)[number]>;

// The reads every batch makes, compiled once (store/fixed-query.ts).

/** Every stored image of these pids in this boot. */
const imagesOfPids = fixedQuery(3, (db, hostId: string, bootId: string, pids: number[]) =>
  db
    .selectFrom('processes')
    .select([...IMAGE_COLUMNS, 'pid', 'start_ticks'])
    .where('host_id', '=', hostId)
    .where('boot_id', '=', bootId)
    .where('pid', 'in', pids)
    .orderBy('exec_index'),
);

/** The open descriptors of these process images (the host named: the partial index of open rows). */
const openFilesOf = fixedQuery(2, (db, hostId: string, processIds: number[]) =>
  db
    .selectFrom('file_opens')
    .select(['id', 'process_id', 'fd', 'path', 'path_raw'])
    .where('host_id', '=', hostId)
    .where('process_id', 'in', processIds)
    .where('is_open', '=', sql.lit(1))
    .orderBy('id'),
);

const usersOf = fixedQuery(1, (db, hostId: string) =>
  db.selectFrom('users').select(['uid', 'name', 'valid_from', 'valid_to']).where('host_id', '=', hostId),
);

/** The newest open endpoint of one key. */
const openEndpoint = fixedQuery(2, (db, hostId: string, key: string) =>
  db
    .selectFrom('endpoints')
    .select(['id', 'state'])
    .where('host_id', '=', hostId)
    .where('key', '=', key)
    .where('is_open', '=', sql.lit(1))
    .orderBy('id', 'desc')
    .limit(1),
);

/** The open endpoints of these keys, oldest first. */
const openEndpoints = fixedQuery(2, (db, hostId: string, keys: string[]) =>
  db
    .selectFrom('endpoints')
    .select(['id', 'key', 'state'])
    .where('host_id', '=', hostId)
    .where('key', 'in', keys)
    .where('is_open', '=', sql.lit(1))
    .orderBy('id'),
);

/**
 * Applies the records of one batch inside its transaction. It owns the batch's caches (process
 * images by identity, open descriptors and endpoints, users by uid), which are valid only within
 * that transaction: create one per batch.
 *
 * Ingest speed comes from three things (docs/benchmarks.md): what the records will look up is read
 * before the first record (one query per table, not one per record); the ids of new rows are
 * reserved up front, so rows can point at each other before they exist; and every row the batch
 * creates or changes is written at the end in multi-row statements. Records in between cost no
 * statement and no await.
 */
export class BatchApplier {
  private readonly images = new Map<string, ImageRow[]>();
  /** pid → identity keys in `images`; complete for the pids in `loadedPids`. */
  private readonly pidKeys = new Map<number, Set<string>>();
  private readonly loadedPids = new Set<number>();
  /** Open descriptors by process identity (known empty for new processes). */
  private readonly fds = new Map<string, Map<number, OpenFile>>();
  private readonly endpoints = new Map<string, OpenEndpoint | null>();
  private users: Map<number, UserRow[]> | null = null;
  private ids: Record<LinkedTable, IdPool> | null = null;

  // Written at the end of the batch (or before a keyframe, which compares with the stored state).
  private newProcesses: ProcessRow[] = [];
  /** Stored images' inherited columns by row id, read for the process_fork records of their children. */
  private readonly inherited = new Map<number, InheritedColumns>();
  private newFiles: FileRow[] = [];
  private newEndpoints: EndpointRow[] = [];
  /** Every process and file row this batch inserted, as inserted (createdRows). */
  private readonly written: { processes: ProcessRow[]; files: FileRow[] } = { processes: [], files: [] };
  private readonly pendingStates: Insertable<EndpointStatesTable>[] = [];
  /** Changes to rows stored by earlier batches, by id: the whole new value of every column set. */
  private readonly processUpdates = new Map<number, { end: number; end_reason: string; close_ord: number }>();
  private readonly fileUpdates = new Map<
    number,
    { last_seen: number; is_open: number; close_ord: number | null }
  >();
  private readonly endpointUpdates = new Map<
    number,
    { state: string; last_seen: number; is_open: number; close_ord: number | null }
  >();

  private otherBootsClosed = false;
  private readonly warned = new Map<string, { count: number; example: string }>();
  private readonly health: RecorderHealthWriter;
  private readonly activity: ActivityWriter;

  constructor(
    private readonly trx: Trx,
    private readonly scope: BatchScope,
    private readonly caps: Capabilities,
  ) {
    this.health = new RecorderHealthWriter(trx, scope);
    this.activity = new ActivityWriter(
      trx,
      scope,
      async (pid, startTicks, t) => imageAt(await this.imagesOf(pid, startTicks), t)?.id ?? null,
    );
  }

  /**
   * The process and file rows the batch inserted, with the values written (a row stored is not
   * changed through its object again: later changes are updates by id, of columns such as `end`
   * and `is_open`). Live detection tests its rules on them without reading them back.
   */
  createdRows(): { readonly processes: readonly ProcessRow[]; readonly files: readonly FileRow[] } {
    return this.written;
  }

  /** One line per kind of oddity, with a count and the first example. */
  warnings(): string[] {
    return [...this.warned].map(([what, w]) => `${w.count} × ${what} (first: ${w.example})`);
  }

  /**
   * Applies the records. `ids`: the ids `reserveIds(…, idsNeeded(records))` reserved already (with
   * the host's lock, on PostgreSQL); without it the applier reserves them itself.
   */
  async apply(records: readonly PofrRecord[], ids?: Record<LinkedTable, IdPool>): Promise<void> {
    if (this.scope.bootChanged) await this.closeOtherBoots();
    this.ids = ids ?? (await reserveIds(this.trx, this.caps, idsNeeded(records)));
    await this.prefetchImages(records);
    await this.prefetchFiles(records);
    await this.prefetchEndpoints(records);
    if (
      records.some(
        (r) =>
          r.type === 'process_start' ||
          r.type === 'process_exec' ||
          r.type === 'process_fork' ||
          r.type === 'process_exec_delta',
      )
    )
      await this.loadUsers();
    await this.prefetchInherited(records);
    const base = this.scope.seq * ORD_PER_BATCH;
    for (let i = 0; i < records.length; i++) {
      const step = this.applyRecord(records[i] as PofrRecord, base + i);
      if (step !== undefined) await step;
    }
    await this.flushWrites();
    await this.health.flush();
    await this.activity.flush();
  }

  private applyRecord(r: PofrRecord, ord: number): Step {
    switch (r.type) {
      case 'process_start':
        return this.processStart(r.proc, ord);
      case 'process_exec':
        return this.processExec(r.t, r.proc, ord);
      case 'process_fork':
        return this.processFork(r, ord);
      case 'process_exec_delta':
        return this.processExecDelta(r, ord);
      case 'process_exit':
        return this.processExit(r.t, r.pid, r.start_ticks, ord);
      case 'file_open':
        return this.fileOpen(r.t, r.file, ord);
      case 'file_close':
        return this.fileClose(r.t, r.pid, r.start_ticks, r.fd, ord);
      case 'endpoint_open':
        return this.endpointOpen(r.t, r.endpoint, ord);
      case 'endpoint_state':
        return this.endpointState(r.t, r.key, r.state, ord);
      case 'endpoint_close':
        return this.endpointClose(r.t, r.key, ord);
      case 'inventory':
        return this.inventory(r);
      case 'keyframe':
        return this.keyframe(r, ord);
      case 'gap':
        return this.recorderGap(r);
      case 'recorder_start':
      case 'recorder_stop':
      case 'recorder_crash':
      case 'recorder_heartbeat':
        this.health.add(r, ord);
        return undefined;
      case 'dns_query':
      case 'cred_change':
        return this.activity.add(r, ord);
    }
  }

  // ---- processes ---------------------------------------------------------------------------

  private processStart(proc: ProcessImage, ord: number): Step {
    const miss = this.loadProcessContext(proc);
    if (miss) return miss.then(() => this.processStart(proc, ord));
    const images = this.cachedImages(proc.pid, proc.start_ticks) as ImageRow[];
    if (images.length > 0) return; // already known (a keyframe or an earlier batch saw it first)
    this.insertImage(proc, 0, proc.start, null, ord);
  }

  /**
   * A child that is its parent's copy: the parent's image at the fork (the store's, which the same
   * records made) under the child's identity. A parent the store lacks (its batch lost in a gap)
   * leaves a row that says so: no program, argv unknown and marked incomplete.
   */
  private processFork(r: RecordOf<'process_fork'>, ord: number): Step {
    const ref = {
      pid: r.pid,
      start_ticks: r.start_ticks,
      ppid: r.ppid,
      parent_start_ticks: r.parent_start_ticks,
    };
    const miss = this.loadProcessContext(ref);
    if (miss) return miss.then(() => this.processFork(r, ord));
    if ((this.cachedImages(r.pid, r.start_ticks) as ImageRow[]).length > 0) return;
    const parent = imageAt(this.cachedImages(r.ppid, r.parent_start_ticks) ?? [], r.t);
    let from: InheritedColumns | undefined;
    if (parent !== undefined) {
      from = parent.row ?? this.inherited.get(parent.id);
      if (from === undefined) return this.loadInherited([parent.id]).then(() => this.processFork(r, ord));
    } else {
      this.warn(
        'process_fork of a parent the store does not know',
        `pid ${r.pid} parent ${r.ppid}:${r.parent_start_ticks}`,
      );
    }
    const inherited = from ?? UNKNOWN_IMAGE;
    const row: ProcessRow = {
      id: this.takeId('processes'),
      host_id: this.scope.hostId,
      boot_id: this.scope.bootId,
      pid: r.pid,
      start_ticks: r.start_ticks,
      exec_index: 0,
      start: r.t,
      end: null,
      end_reason: null,
      ppid: r.ppid,
      parent_id: parent?.id ?? null,
      ...pickInherited(inherited),
      user: this.userAt(inherited.ruid, r.t),
      source: 'trace',
      observer: r.observer ? 1 : 0,
      open_ord: ord,
      close_ord: null,
    };
    this.addImage(row);
  }

  /**
   * An exec named by what it changed: the process's current image (the store's, which the same
   * records made) with the new program and whatever else the record names. A process the store
   * lacks (its start lost in a gap) gets a first image with what the record says and the rest
   * unknown, as a fork of an unknown parent does.
   */
  private processExecDelta(r: RecordOf<'process_exec_delta'>, ord: number): Step {
    const ref = { pid: r.pid, start_ticks: r.start_ticks, ppid: 0, parent_start_ticks: null };
    const miss = this.loadProcessContext(ref);
    if (miss) return miss.then(() => this.processExecDelta(r, ord));
    const current = (this.cachedImages(r.pid, r.start_ticks) as ImageRow[]).at(-1);
    let from: InheritedColumns | undefined;
    if (current !== undefined) {
      from = current.row ?? this.inherited.get(current.id);
      if (from === undefined)
        return this.loadInherited([current.id]).then(() => this.processExecDelta(r, ord));
    } else {
      this.warn(
        'process_exec_delta of a process the store does not know',
        `pid ${r.pid} start_ticks ${r.start_ticks}`,
      );
    }
    const columns = execDeltaColumns(pickInherited(from ?? UNKNOWN_IMAGE), r);
    if (current !== undefined && current.end === null) this.closeImages([current], r.t, 'exec', ord);
    const row: ProcessRow = {
      id: this.takeId('processes'),
      host_id: this.scope.hostId,
      boot_id: this.scope.bootId,
      pid: r.pid,
      start_ticks: r.start_ticks,
      exec_index: current === undefined ? 0 : current.exec_index + 1,
      start: r.t,
      end: null,
      end_reason: null,
      ppid: r.ppid ?? current?.ppid ?? 0,
      parent_id: current?.parent_id ?? null,
      ...columns,
      user: this.userAt(columns.ruid, r.t),
      source: 'trace',
      open_ord: ord,
      close_ord: null,
    };
    this.addImage(row);
  }

  /**
   * One read for the stored images the batch's process_fork and process_exec_delta records build
   * on (the parent at the fork, the image before the exec); images the batch makes need none.
   */
  private async prefetchInherited(records: readonly PofrRecord[]): Promise<void> {
    const ids = new Set<number>();
    for (const r of records) {
      let base: ImageRow | undefined;
      if (r.type === 'process_fork')
        base = imageAt(this.cachedImages(r.ppid, r.parent_start_ticks) ?? [], r.t);
      else if (r.type === 'process_exec_delta') base = this.cachedImages(r.pid, r.start_ticks)?.at(-1);
      else continue;
      if (base !== undefined && base.row === null && !this.inherited.has(base.id)) ids.add(base.id);
    }
    if (ids.size > 0) await this.loadInherited([...ids]);
  }

  private async loadInherited(ids: readonly number[]): Promise<void> {
    for (const part of chunks(ids, MAX_PARAMS)) {
      const rows = await this.trx
        .selectFrom('processes')
        .select(['id', ...INHERITED_COLUMNS])
        .where('id', 'in', part)
        .execute();
      for (const row of rows)
        this.inherited.set(Number(row.id), pickInherited(row as unknown as InheritedColumns));
    }
    // An id the store no longer holds (pruned) is remembered as unknown, so the retry cannot loop.
    for (const id of ids) if (!this.inherited.has(id)) this.inherited.set(id, UNKNOWN_IMAGE);
  }

  private processExec(t: number, proc: ProcessImage, ord: number): Step {
    const miss = this.loadProcessContext(proc);
    if (miss) return miss.then(() => this.processExec(t, proc, ord));
    const images = this.cachedImages(proc.pid, proc.start_ticks) as ImageRow[];
    const current = images.at(-1);
    if (current === undefined) {
      // The start was lost (gap, or the recorder began after it): the first image we know of.
      this.insertImage(proc, 0, proc.start, null, ord);
      return;
    }
    if (current.end === null) this.closeImages([current], t, 'exec', ord);
    this.insertImage(proc, current.exec_index + 1, t, current.parent_id, ord);
  }

  private processExit(t: number, pid: number, startTicks: number, ord: number): Step {
    const images = this.cachedImages(pid, startTicks);
    if (images === undefined)
      return this.imagesOf(pid, startTicks).then(() => this.processExit(t, pid, startTicks, ord));
    if (images.length === 0) {
      this.warn('process_exit for a process the store does not know', `pid ${pid} start_ticks ${startTicks}`);
      return;
    }
    const fds = this.fds.get(identityKey(pid, startTicks));
    if (fds === undefined) {
      return this.openFds(pid, startTicks, images).then(() => this.processExit(t, pid, startTicks, ord));
    }
    this.closeImages(
      images.filter((i) => i.end === null),
      t,
      'exit',
      ord,
    );
    // Kept in step since it was loaded: it holds every descriptor the process has open.
    this.closeFiles([...fds.values()], t, ord);
    fds.clear();
  }

  private closeImages(rows: ImageRow[], t: number, reason: string, ord: number): void {
    for (const r of rows) {
      r.end = t;
      if (r.row) {
        r.row.end = t;
        r.row.end_reason = reason;
        r.row.close_ord = ord;
      } else {
        this.processUpdates.set(r.id, { end: t, end_reason: reason, close_ord: ord });
      }
    }
  }

  /** Needs the process's images, its parent's and the users (all read up front, unless a keyframe came between). */
  private loadProcessContext(
    proc: Pick<ProcessImage, 'pid' | 'start_ticks' | 'ppid' | 'parent_start_ticks'>,
  ): Promise<void> | undefined {
    const parentKnown =
      proc.ppid === 0 ||
      (proc.parent_start_ticks !== null
        ? this.cachedImages(proc.ppid, proc.parent_start_ticks) !== undefined
        : this.loadedPids.has(proc.ppid));
    if (this.cachedImages(proc.pid, proc.start_ticks) !== undefined && parentKnown && this.users !== null) {
      return undefined;
    }
    return (async () => {
      await this.imagesOf(proc.pid, proc.start_ticks);
      // imagesOf marks an identity the store lacks as known-empty, so the retry cannot loop.
      if (proc.parent_start_ticks !== null) await this.imagesOf(proc.ppid, proc.parent_start_ticks);
      else await this.loadPids([proc.ppid]);
      if (this.users === null) await this.loadUsers();
    })();
  }

  private insertImage(
    proc: ProcessImage,
    execIndex: number,
    start: number,
    parentId: number | null,
    ord: number,
  ): ImageRow {
    return this.addImage(this.processRow(proc, execIndex, start, parentId, ord));
  }

  /** A new image row: written with the batch, cached under its identity (a first image starts with no descriptors). */
  private addImage(row: ProcessRow): ImageRow {
    this.newProcesses.push(row);
    const key = identityKey(row.pid, row.start_ticks);
    if ((this.images.get(key)?.length ?? 0) === 0) this.fds.set(key, new Map());
    return this.remember(row, {
      id: row.id,
      exec_index: row.exec_index,
      start: row.start,
      end: null,
      parent_id: row.parent_id ?? null,
      ppid: row.ppid,
      row,
    });
  }

  private remember(proc: { pid: number; start_ticks: number }, image: ImageRow): ImageRow {
    const key = identityKey(proc.pid, proc.start_ticks);
    const list = this.images.get(key);
    if (list) list.push(image);
    else this.images.set(key, [image]);
    this.indexPid(proc.pid, key);
    return image;
  }

  private indexPid(pid: number, key: string): void {
    const keys = this.pidKeys.get(pid);
    if (keys) keys.add(key);
    else this.pidKeys.set(pid, new Set([key]));
  }

  /** The row of a new image; its parent and user must be loaded (loadProcessContext). */
  private processRow(
    proc: ProcessImage,
    execIndex: number,
    start: number,
    parentId: number | null,
    ord: number,
  ): ProcessRow {
    const exe = proc.exe === null ? null : kernelText(proc.exe);
    const cwd = proc.cwd === null ? null : kernelText(proc.cwd);
    const comm = kernelText(proc.comm);
    const argv = kernelArgv(proc.argv);
    return {
      id: this.takeId('processes'),
      host_id: this.scope.hostId,
      boot_id: this.scope.bootId,
      pid: proc.pid,
      start_ticks: proc.start_ticks,
      exec_index: execIndex,
      start,
      end: null,
      end_reason: null,
      ppid: proc.ppid,
      parent_id: parentId ?? this.resolveParent(proc),
      exe: exe?.text ?? null,
      exe_raw: exe?.raw ?? null,
      comm: comm.text,
      comm_raw: comm.raw,
      argv: argv.argv,
      argv_raw: argv.raw,
      cmdline: argv.cmdline,
      cwd: cwd?.text ?? null,
      cwd_raw: cwd?.raw ?? null,
      ruid: proc.ruid,
      euid: proc.euid,
      rgid: proc.rgid,
      egid: proc.egid,
      user: this.userAt(proc.ruid, start),
      source: proc.source,
      observer: proc.observer ? 1 : 0,
      argv_source: proc.argv_source ?? null,
      argv_complete: proc.argv_complete === undefined ? null : proc.argv_complete ? 1 : 0,
      open_ord: ord,
      close_ord: null,
      ...contextColumns(proc),
    };
  }

  private takeId(table: LinkedTable): number {
    if (this.ids === null) throw new Error('BatchApplier: apply() reserves ids before any row is made');
    return this.ids[table].take();
  }

  /** The parent image that was running when the child started (a parent may exec after forking). */
  private resolveParent(proc: ProcessImage): number | null {
    if (proc.ppid === 0) return null;
    if (proc.parent_start_ticks !== null) {
      const images = this.cachedImages(proc.ppid, proc.parent_start_ticks) ?? [];
      return imageAt(images, proc.start)?.id ?? null;
    }
    // The newest image of the pid alive at the child's start (what the store's query would give).
    let best: ImageRow | undefined;
    for (const key of this.pidKeys.get(proc.ppid) ?? []) {
      for (const i of this.images.get(key) ?? []) {
        if (
          i.start <= proc.start &&
          (i.end === null || i.end >= proc.start) &&
          (!best || i.start > best.start || (i.start === best.start && i.exec_index > best.exec_index))
        ) {
          best = i;
        }
      }
    }
    return best?.id ?? null;
  }

  /** The images of one process identity, when read (undefined: not read yet). */
  private cachedImages(pid: number, startTicks: number): ImageRow[] | undefined {
    return this.images.get(identityKey(pid, startTicks));
  }

  private async imagesOf(pid: number, startTicks: number): Promise<ImageRow[]> {
    const cached = this.cachedImages(pid, startTicks);
    if (cached) return cached;
    await this.loadPids([pid]);
    const key = identityKey(pid, startTicks);
    const images = this.images.get(key) ?? [];
    this.images.set(key, images);
    return images;
  }

  /** Every stored image of these pids in this boot (the pids' whole state is then known). */
  private async loadPids(pids: readonly number[]): Promise<void> {
    const wanted = pids.filter((p) => !this.loadedPids.has(p));
    for (const pid of wanted) this.loadedPids.add(pid);
    for (const part of chunks(wanted, MAX_PARAMS)) {
      const { rows } = await imagesOfPids.run(
        this.trx,
        this.caps,
        this.scope.hostId,
        this.scope.bootId,
        part,
      );
      for (const r of rows) {
        const key = identityKey(Number(r.pid), Number(r.start_ticks));
        // Rows this batch made are already cached (and, after a keyframe, stored too).
        const list = this.images.get(key);
        if (list?.some((i) => i.id === Number(r.id))) continue;
        if (list) list.push(toImageRow(r));
        else this.images.set(key, [toImageRow(r)]);
        this.indexPid(Number(r.pid), key);
      }
    }
  }

  /** One query for every process the batch names, instead of one per record. */
  private async prefetchImages(records: readonly PofrRecord[]): Promise<void> {
    const wanted = new Set<string>();
    const pids = new Set<number>();
    const want = (pid: number, st: number | null) => {
      pids.add(pid);
      if (st !== null) wanted.add(identityKey(pid, st));
    };
    for (const r of records) {
      switch (r.type) {
        case 'process_start':
        case 'process_exec':
          want(r.proc.pid, r.proc.start_ticks);
          want(r.proc.ppid, r.proc.parent_start_ticks);
          break;
        case 'process_fork':
          want(r.pid, r.start_ticks);
          want(r.ppid, r.parent_start_ticks);
          break;
        case 'process_exec_delta':
        case 'process_exit':
        case 'file_close':
        case 'dns_query':
        case 'cred_change':
          want(r.pid, r.start_ticks);
          break;
        case 'file_open':
          want(r.file.pid, r.file.start_ticks);
          break;
        case 'endpoint_open':
          if (r.endpoint.pid !== null) want(r.endpoint.pid, r.endpoint.start_ticks);
          break;
        case 'keyframe':
          for (const p of r.processes) {
            want(p.pid, p.start_ticks);
            want(p.ppid, p.parent_start_ticks);
          }
          for (const f of r.files) want(f.pid, f.start_ticks);
          break;
        default:
          break;
      }
    }
    await this.loadPids([...pids]);
    for (const key of wanted) if (!this.images.has(key)) this.images.set(key, []);
  }

  /** The open descriptors of every stored process whose files the batch opens, closes or ends. */
  private async prefetchFiles(records: readonly PofrRecord[]): Promise<void> {
    const keys = new Set<string>();
    for (const r of records) {
      if (r.type === 'file_open') keys.add(identityKey(r.file.pid, r.file.start_ticks));
      else if (r.type === 'file_close' || r.type === 'process_exit')
        keys.add(identityKey(r.pid, r.start_ticks));
    }
    const keyOfImage = new Map<number, string>();
    for (const key of keys) {
      if (this.fds.has(key)) continue;
      const images = this.images.get(key);
      if (images === undefined || images.length === 0) continue;
      this.fds.set(key, new Map());
      for (const i of images) keyOfImage.set(i.id, key);
    }
    await this.loadOpenFiles(keyOfImage);
  }

  /** Reads the open file rows of these images (id → its process identity) into their descriptor maps. */
  private async loadOpenFiles(keyOfImage: ReadonlyMap<number, string>): Promise<void> {
    for (const part of chunks([...keyOfImage.keys()], MAX_PARAMS)) {
      const { rows } = await openFilesOf.run(this.trx, this.caps, this.scope.hostId, part);
      for (const r of rows) {
        const fds = this.fds.get(keyOfImage.get(Number(r.process_id)) as string);
        fds?.set(Number(r.fd), { id: Number(r.id), row: null, path: r.path, path_raw: r.path_raw });
      }
    }
  }

  private async loadUsers(): Promise<void> {
    const { rows } = await usersOf.run(this.trx, this.caps, this.scope.hostId);
    const users = new Map<number, UserRow[]>();
    for (const r of rows) {
      const uidNum = Number(r.uid);
      const list = users.get(uidNum) ?? [];
      list.push({
        name: r.name,
        valid_from: Number(r.valid_from),
        valid_to: r.valid_to === null ? null : Number(r.valid_to),
      });
      users.set(uidNum, list);
    }
    // Several names may share a uid (root and toor): pick one by value, not by the order the engine
    // returns rows in (PostgreSQL moves updated rows), so re-deriving on another engine agrees.
    for (const list of users.values()) {
      list.sort((a, b) => a.valid_from - b.valid_from || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }
    this.users = users;
  }

  private userAt(uid: number, start: number): string | null {
    const rows = this.users?.get(uid);
    if (!rows) return null;
    const validAt = (at: number) =>
      rows.find((u) => u.valid_from <= at && (u.valid_to === null || u.valid_to > at));
    const valid = validAt(start);
    if (valid) return valid.name;
    // A process older than the first inventory (every process alive when recording began) gets
    // the name the uid had when it was first seen.
    const earliest = rows.reduce((a, b) => (a.valid_from <= b.valid_from ? a : b));
    return start < earliest.valid_from ? earliest.name : null;
  }

  // ---- files -------------------------------------------------------------------------------

  private fileOpen(t: number, file: FileInfo, ord: number): Step {
    const images = this.cachedImages(file.pid, file.start_ticks);
    if (images === undefined) {
      return this.imagesOf(file.pid, file.start_ticks).then(() => this.fileOpen(t, file, ord));
    }
    const current = images.at(-1);
    if (current === undefined) {
      this.warn(
        'file_open for a process the store does not know (recorder bug?)',
        `pid ${file.pid} fd ${file.fd}`,
      );
      return;
    }
    const fds = this.fds.get(identityKey(file.pid, file.start_ticks));
    if (fds === undefined) {
      return this.openFds(file.pid, file.start_ticks, images).then(() => this.fileOpen(t, file, ord));
    }
    const path = kernelText(file.path);
    const existing = fds.get(file.fd);
    if (existing && samePath(existing, path)) {
      if (existing.row) existing.row.last_seen = t;
      else this.fileUpdates.set(existing.id, { last_seen: t, is_open: 1, close_ord: null });
      return;
    }
    // A new open of a descriptor that is still open here means the close was missed.
    if (existing) this.closeFiles([existing], t, ord);
    const row = this.fileRow(current.id, file, path, t, ord);
    this.newFiles.push(row);
    fds.set(file.fd, { id: row.id, row, path: path.text, path_raw: path.raw });
  }

  private async openFds(pid: number, startTicks: number, images: ImageRow[]): Promise<Map<number, OpenFile>> {
    const key = identityKey(pid, startTicks);
    const cached = this.fds.get(key);
    if (cached) return cached;
    // What this batch wrote so far must be stored before the store is asked.
    await this.flushWrites();
    this.fds.set(key, new Map());
    await this.loadOpenFiles(new Map(images.map((i) => [i.id, key])));
    return this.fds.get(key) as Map<number, OpenFile>;
  }

  private closeFiles(files: readonly OpenFile[], t: number, ord: number): void {
    for (const f of files) {
      if (f.row) {
        f.row.last_seen = t;
        f.row.is_open = 0;
        f.row.close_ord = ord;
      } else {
        this.fileUpdates.set(f.id, { last_seen: t, is_open: 0, close_ord: ord });
      }
    }
  }

  private fileRow(
    processId: number,
    file: FileInfo,
    path: { text: string; raw: Buffer | null },
    t: number,
    ord: number,
  ): FileRow {
    return {
      id: this.takeId('file_opens'),
      host_id: this.scope.hostId,
      process_id: processId,
      pid: file.pid,
      fd: file.fd,
      path: path.text,
      path_raw: path.raw,
      kind: file.kind,
      first_seen: t,
      last_seen: t,
      is_open: 1,
      open_ord: ord,
      close_ord: null,
    };
  }

  private fileClose(t: number, pid: number, startTicks: number, fd: number, ord: number): Step {
    const images = this.cachedImages(pid, startTicks);
    if (images === undefined) {
      return this.imagesOf(pid, startTicks).then(() => this.fileClose(t, pid, startTicks, fd, ord));
    }
    if (images.length > 0) {
      const fds = this.fds.get(identityKey(pid, startTicks));
      if (fds === undefined) {
        return this.openFds(pid, startTicks, images).then(() => this.fileClose(t, pid, startTicks, fd, ord));
      }
      const open = fds.get(fd);
      if (open) {
        this.closeFiles([open], t, ord);
        fds.delete(fd);
        return;
      }
    }
    this.warn('file_close for a descriptor the store does not hold open', `pid ${pid} fd ${fd}`);
  }

  // ---- endpoints ---------------------------------------------------------------------------

  private async loadEndpoint(key: string): Promise<void> {
    if (this.endpoints.has(key)) return;
    const row = (await openEndpoint.run(this.trx, this.caps, this.scope.hostId, key)).rows[0];
    this.endpoints.set(key, row ? { id: Number(row.id), state: row.state, row: null } : null);
  }

  /** One query for the open endpoints of every key the batch names, instead of one per key. */
  private async prefetchEndpoints(records: readonly PofrRecord[]): Promise<void> {
    const keys = new Set<string>();
    for (const r of records) {
      if (r.type === 'endpoint_open') keys.add(r.endpoint.key);
      else if (r.type === 'endpoint_state' || r.type === 'endpoint_close') keys.add(r.key);
    }
    const wanted = [...keys].filter((k) => !this.endpoints.has(k));
    for (const key of wanted) this.endpoints.set(key, null);
    for (const part of chunks(wanted, MAX_PARAMS)) {
      const { rows } = await openEndpoints.run(this.trx, this.caps, this.scope.hostId, part);
      // Ascending ids: the newest open row of a key wins, as in loadEndpoint().
      for (const r of rows) this.endpoints.set(r.key, { id: Number(r.id), state: r.state, row: null });
    }
  }

  private endpointOpen(t: number, ep: EndpointInfo, ord: number): Step {
    const existing = this.endpoints.get(ep.key);
    if (existing === undefined) return this.loadEndpoint(ep.key).then(() => this.endpointOpen(t, ep, ord));
    if (existing) {
      this.touchEndpoint(existing, t, ep.state, ord);
      return;
    }
    const processId = this.endpointProcess(ep);
    if (typeof processId === 'object' && processId !== null) {
      return processId.then(() => this.endpointOpen(t, ep, ord));
    }
    const row = this.endpointRow(ep, processId, t, ord);
    this.newEndpoints.push(row);
    this.endpoints.set(ep.key, { id: row.id, state: ep.state, row });
    this.pendingStates.push({ endpoint_id: row.id, host_id: this.scope.hostId, t, state: ep.state, ord });
  }

  /** Records a state change (if any) and the sighting. */
  private touchEndpoint(ep: OpenEndpoint, t: number, state: string, ord: number, always = false): void {
    if (always || ep.state !== state) {
      this.pendingStates.push({ endpoint_id: ep.id, host_id: this.scope.hostId, t, state, ord });
    }
    ep.state = state;
    if (ep.row) {
      ep.row.state = state;
      ep.row.last_seen = t;
    } else {
      this.endpointUpdates.set(ep.id, { state, last_seen: t, is_open: 1, close_ord: null });
    }
  }

  private endpointState(t: number, key: string, state: string, ord: number): Step {
    const ep = this.endpoints.get(key);
    if (ep === undefined) return this.loadEndpoint(key).then(() => this.endpointState(t, key, state, ord));
    if (!ep) {
      this.warn('endpoint_state for an endpoint the store does not hold open', key);
      return;
    }
    this.touchEndpoint(ep, t, state, ord, true);
  }

  private endpointClose(t: number, key: string, ord: number): Step {
    const ep = this.endpoints.get(key);
    if (ep === undefined) return this.loadEndpoint(key).then(() => this.endpointClose(t, key, ord));
    if (!ep) {
      this.warn('endpoint_close for an endpoint the store does not hold open', key);
      return;
    }
    if (ep.row) {
      ep.row.last_seen = t;
      ep.row.is_open = 0;
      ep.row.close_ord = ord;
    } else {
      this.endpointUpdates.set(ep.id, { state: ep.state, last_seen: t, is_open: 0, close_ord: ord });
    }
    this.endpoints.set(key, null);
  }

  /** The process of an endpoint: its id, or a promise that loads what answers it (then ask again). */
  private endpointProcess(ep: EndpointInfo): number | null | Promise<void> {
    if (ep.pid === null) return null;
    if (ep.start_ticks !== null) {
      const images = this.cachedImages(ep.pid, ep.start_ticks);
      if (images === undefined) return this.imagesOf(ep.pid, ep.start_ticks).then(() => undefined);
      return images.at(-1)?.id ?? null;
    }
    if (!this.loadedPids.has(ep.pid)) return this.loadPids([ep.pid]);
    // The newest running image of the pid.
    let best: ImageRow | undefined;
    for (const key of this.pidKeys.get(ep.pid) ?? []) {
      for (const i of this.images.get(key) ?? []) {
        if (i.end !== null) continue;
        if (!best || i.start > best.start || (i.start === best.start && i.exec_index > best.exec_index))
          best = i;
      }
    }
    return best?.id ?? null;
  }

  private endpointRow(ep: EndpointInfo, processId: number | null, t: number, ord: number): EndpointRow {
    return {
      id: this.takeId('endpoints'),
      host_id: this.scope.hostId,
      boot_id: this.scope.bootId,
      key: ep.key,
      process_id: processId,
      pid: ep.pid,
      proto: ep.proto,
      family: ep.family,
      local_ip: ep.local_ip,
      local_port: ep.local_port,
      remote_ip: ep.remote_ip,
      remote_port: ep.remote_port,
      state: ep.state,
      inode: ep.inode,
      netns: ep.netns ?? null,
      ...enrichment(this.scope.geo, ep.remote_ip),
      first_seen: t,
      last_seen: t,
      is_open: 1,
      open_ord: ord,
      close_ord: null,
    };
  }

  // ---- writing -----------------------------------------------------------------------------

  /** Writes every row made or changed so far: afterwards the store holds the batch's state. */
  private async flushWrites(): Promise<void> {
    const processes = this.newProcesses;
    const files = this.newFiles;
    const endpoints = this.newEndpoints;
    this.newProcesses = [];
    this.newFiles = [];
    this.newEndpoints = [];
    for (const r of processes) this.written.processes.push(r);
    for (const r of files) this.written.files.push(r);
    // Stored now: later changes are updates by id.
    for (const key of this.images.values()) for (const i of key) i.row = null;
    for (const fds of this.fds.values()) for (const f of fds.values()) f.row = null;
    for (const e of this.endpoints.values()) if (e) e.row = null;
    const processUpdates = new Map(this.processUpdates);
    const fileUpdates = new Map(this.fileUpdates);
    const endpointUpdates = new Map(this.endpointUpdates);
    this.processUpdates.clear();
    this.fileUpdates.clear();
    this.endpointUpdates.clear();
    await writeRows(this.trx, this.caps, [
      { insert: 'processes', rows: processes },
      { insert: 'file_opens', rows: files },
      { insert: 'endpoints', rows: endpoints },
      {
        update: 'processes',
        columns: { end: 'bigint', end_reason: 'text', close_ord: 'bigint' },
        rows: processUpdates,
      },
      {
        update: 'file_opens',
        columns: { last_seen: 'bigint', is_open: 'integer', close_ord: 'bigint' },
        rows: fileUpdates,
      },
      {
        update: 'endpoints',
        columns: { state: 'text', last_seen: 'bigint', is_open: 'integer', close_ord: 'bigint' },
        rows: endpointUpdates,
      },
      { insert: 'endpoint_states', rows: this.pendingStates.splice(0) },
    ]);
  }

  // ---- inventory, gaps ---------------------------------------------------------------------

  private async inventory(r: RecordOf<'inventory'>): Promise<void> {
    const inv = r.inventory;
    await this.trx
      .updateTable('hosts')
      .set({
        os: inv.os,
        kernel: inv.kernel,
        arch: inv.arch,
        timezone: inv.timezone,
        machine_id: inv.machine_id,
        boot_time: inv.boot_time,
      })
      .where('host_id', '=', this.scope.hostId)
      .execute();
    await syncInventory(this.trx, this.scope.hostId, r.t, inv);
    await this.loadUsers();
  }

  private async recorderGap(r: RecordOf<'gap'>): Promise<void> {
    const dropped = r.dropped === null ? '' : `, ${r.dropped} events dropped`;
    await this.trx
      .insertInto('gaps')
      .values({
        host_id: this.scope.hostId,
        kind: 'recorder',
        seq: this.scope.seq,
        t_from: r.from,
        t_to: r.to,
        detail: `recorder lost events: ${r.reason}${dropped}`,
        at: this.scope.receivedAt,
      })
      .execute();
  }

  // ---- keyframes ---------------------------------------------------------------------------

  /**
   * A keyframe is the whole state at `t`: open what the store lacks, close what it holds open for
   * this boot but the keyframe does not list. Set operations throughout: keyframes list thousands
   * of files.
   */
  private async keyframe(r: RecordOf<'keyframe'>, ord: number): Promise<void> {
    // The keyframe compares with the stored open rows: this batch's must be stored first.
    await this.flushWrites();
    await this.closeOtherBoots();
    await this.keyframeProcesses(r.t, r.processes, ord);
    await this.keyframeFiles(r.t, r.files, ord);
    await this.keyframeEndpoints(r.t, r.endpoints, ord);
    await this.flushWrites();
  }

  private async keyframeProcesses(t: number, procs: readonly ProcessImage[], ord: number): Promise<void> {
    const listed = new Set<string>();
    const missing: { proc: ProcessImage; execIndex: number; start: number }[] = [];
    for (const proc of procs) {
      const key = identityKey(proc.pid, proc.start_ticks);
      if (listed.has(key)) continue;
      listed.add(key);
      const images = await this.imagesOf(proc.pid, proc.start_ticks);
      const current = images.at(-1);
      if (current === undefined) missing.push({ proc, execIndex: 0, start: proc.start });
      // Stored as ended, yet alive: a new image from now on, rather than rewriting the old end.
      else if (current.end !== null) missing.push({ proc, execIndex: current.exec_index + 1, start: t });
    }
    const open = await this.trx
      .selectFrom('processes')
      .select([...IMAGE_COLUMNS, 'pid', 'start_ticks'])
      .where('host_id', '=', this.scope.hostId)
      .where('boot_id', '=', this.scope.bootId)
      .where('end', 'is', null)
      .execute();
    const gone: ImageRow[] = [];
    for (const row of open) {
      if (listed.has(identityKey(Number(row.pid), Number(row.start_ticks)))) continue;
      const key = identityKey(Number(row.pid), Number(row.start_ticks));
      const cached = this.images.get(key)?.find((i) => i.id === Number(row.id));
      gone.push(cached ?? toImageRow(row));
    }
    this.closeImages(gone, t, 'keyframe', ord);
    for (const m of missing) {
      const miss = this.loadProcessContext(m.proc);
      if (miss) await miss;
    }
    // Parents first, generation by generation, so every child finds its parent's image (and id).
    const pendingKeys = new Set(missing.map((m) => identityKey(m.proc.pid, m.proc.start_ticks)));
    let pending = missing;
    while (pending.length > 0) {
      const ready = pending.filter(
        (m) =>
          m.proc.parent_start_ticks === null ||
          !pendingKeys.has(identityKey(m.proc.ppid, m.proc.parent_start_ticks)),
      );
      // A cycle cannot happen in a real tree; a hostile one is inserted without parents.
      const generation = ready.length > 0 ? ready : pending;
      const made: { proc: ProcessImage; image: ImageRow }[] = [];
      for (const m of generation) {
        const row = this.processRow(m.proc, m.execIndex, m.start, null, ord);
        this.newProcesses.push(row);
        made.push({
          proc: m.proc,
          image: {
            id: row.id,
            exec_index: m.execIndex,
            start: m.start,
            end: null,
            parent_id: row.parent_id ?? null,
            ppid: m.proc.ppid,
            row,
          },
        });
      }
      // Remembered after the whole generation, as the rows a generation's INSERT returned were.
      for (const { proc, image } of made) this.remember(proc, image);
      const done = new Set(generation);
      for (const m of generation) pendingKeys.delete(identityKey(m.proc.pid, m.proc.start_ticks));
      pending = pending.filter((m) => !done.has(m));
    }
    await this.flushWrites();
  }

  private async keyframeFiles(t: number, files: readonly FileInfo[], ord: number): Promise<void> {
    const open = await this.trx
      .selectFrom('file_opens as f')
      .innerJoin('processes as p', 'p.id', 'f.process_id')
      .select(['f.id', 'f.fd', 'f.path', 'f.path_raw', 'p.pid', 'p.start_ticks'])
      .where('f.host_id', '=', this.scope.hostId)
      .where('f.is_open', '=', sql.lit(1))
      .where('p.boot_id', '=', this.scope.bootId)
      .execute();
    const openByFd = new Map<string, (typeof open)[number]>();
    for (const o of open) openByFd.set(`${identityKey(Number(o.pid), Number(o.start_ticks))}:${o.fd}`, o);
    const touch: number[] = [];
    const close: number[] = [];
    for (const file of files) {
      const key = `${identityKey(file.pid, file.start_ticks)}:${file.fd}`;
      const path = kernelText(file.path);
      const existing = openByFd.get(key);
      if (existing !== undefined) {
        openByFd.delete(key);
        if (samePath(existing, path)) {
          touch.push(Number(existing.id));
          continue;
        }
        close.push(Number(existing.id));
      }
      const current = (await this.imagesOf(file.pid, file.start_ticks)).at(-1);
      if (current === undefined) {
        this.warn(
          'keyframe lists a file of a process it does not list (recorder bug?)',
          `pid ${file.pid} fd ${file.fd}`,
        );
        continue;
      }
      this.newFiles.push(this.fileRow(current.id, file, path, t, ord));
    }
    for (const o of openByFd.values()) close.push(Number(o.id));
    // Loaded again, from the stored rows, when a later record of the batch needs them.
    this.fds.clear();
    for (const ids of chunks(touch, MAX_PARAMS)) {
      await this.trx.updateTable('file_opens').set({ last_seen: t }).where('id', 'in', ids).execute();
    }
    for (const ids of chunks(close, MAX_PARAMS)) {
      await this.trx
        .updateTable('file_opens')
        .set({ last_seen: t, is_open: 0, close_ord: ord })
        .where('id', 'in', ids)
        .execute();
    }
    await this.flushWrites();
  }

  private async keyframeEndpoints(t: number, eps: readonly EndpointInfo[], ord: number): Promise<void> {
    const open = await this.trx
      .selectFrom('endpoints')
      .select(['id', 'key', 'state'])
      .where('host_id', '=', this.scope.hostId)
      .where('is_open', '=', sql.lit(1))
      .where('boot_id', '=', this.scope.bootId)
      .execute();
    const openByKey = new Map<string, OpenEndpoint>();
    for (const o of open)
      openByKey.set(o.key, this.endpoints.get(o.key) ?? { id: Number(o.id), state: o.state, row: null });
    const touch: number[] = [];
    const seen = new Set<string>();
    for (const ep of eps) {
      if (seen.has(ep.key)) continue;
      seen.add(ep.key);
      const existing = openByKey.get(ep.key);
      if (existing === undefined) {
        let processId = this.endpointProcess(ep);
        while (typeof processId === 'object' && processId !== null) {
          await processId;
          processId = this.endpointProcess(ep);
        }
        const row = this.endpointRow(ep, processId, t, ord);
        this.newEndpoints.push(row);
        this.pendingStates.push({
          endpoint_id: row.id,
          host_id: this.scope.hostId,
          t,
          state: row.state,
          ord,
        });
        this.endpoints.set(ep.key, { id: row.id, state: row.state, row });
        continue;
      }
      openByKey.delete(ep.key);
      if (existing.state === ep.state) touch.push(existing.id);
      else this.touchEndpoint(existing, t, ep.state, ord);
    }
    for (const ids of chunks(touch, MAX_PARAMS)) {
      await this.trx.updateTable('endpoints').set({ last_seen: t }).where('id', 'in', ids).execute();
    }
    const gone = [...openByKey];
    for (const part of chunks(gone, MAX_PARAMS)) {
      await this.trx
        .updateTable('endpoints')
        .set({ last_seen: t, is_open: 0, close_ord: ord })
        .where(
          'id',
          'in',
          part.map(([, e]) => e.id),
        )
        .execute();
      for (const [key] of part) this.endpoints.set(key, null);
    }
    await this.flushWrites();
  }

  /** Whatever is still open from another boot of this host ended with that boot, at the latest now. */
  private async closeOtherBoots(): Promise<void> {
    if (this.otherBootsClosed) return;
    this.otherBootsClosed = true;
    await this.flushWrites();
    const { hostId, bootId, tFrom } = this.scope;
    const closeOrd = this.scope.seq * ORD_PER_BATCH;
    const stale = await this.trx
      .selectFrom('processes')
      .select('id')
      .where('host_id', '=', hostId)
      .where('end', 'is', null)
      .where('boot_id', '<>', bootId)
      .execute();
    for (const part of chunks(
      stale.map((r) => Number(r.id)),
      MAX_PARAMS,
    )) {
      await this.trx
        .updateTable('processes')
        .set({ end: tFrom, end_reason: 'reboot', close_ord: closeOrd })
        .where('id', 'in', part)
        .execute();
    }
    if (stale.length > 0) {
      await this.trx
        .updateTable('file_opens')
        .set({ last_seen: tFrom, is_open: 0, close_ord: closeOrd })
        .where('host_id', '=', hostId)
        .where('is_open', '=', sql.lit(1))
        .where('process_id', 'in', (eb) =>
          eb
            .selectFrom('processes')
            .select('id')
            .where('host_id', '=', hostId)
            .where('boot_id', '<>', bootId),
        )
        .execute();
    }
    await this.trx
      .updateTable('endpoints')
      .set({ last_seen: tFrom, is_open: 0, close_ord: closeOrd })
      .where('host_id', '=', hostId)
      .where('is_open', '=', sql.lit(1))
      .where('boot_id', '<>', bootId)
      .execute();
    this.endpoints.clear();
  }

  private warn(what: string, example: string): void {
    const w = this.warned.get(what);
    if (w) w.count++;
    else this.warned.set(what, { count: 1, example });
  }
}

/** An upper bound of the rows of each linked table the records can make (their ids are reserved). */
export function idsNeeded(records: readonly PofrRecord[]): Record<LinkedTable, number> {
  const n = { processes: 0, file_opens: 0, endpoints: 0 };
  for (const r of records) {
    switch (r.type) {
      case 'process_start':
      case 'process_exec':
      case 'process_fork':
      case 'process_exec_delta':
        n.processes++;
        break;
      case 'file_open':
        n.file_opens++;
        break;
      case 'endpoint_open':
        n.endpoints++;
        break;
      case 'keyframe':
        n.processes += r.processes.length;
        n.file_opens += r.files.length;
        n.endpoints += r.endpoints.length;
        break;
      default:
        break;
    }
  }
  return n;
}

/** What the server's databases say of a remote address, frozen into the row with their names. */
function enrichment(geo: GeoLookup | undefined, ip: string) {
  const g = geo?.lookup(ip);
  const known = g !== undefined && (g.country !== null || g.city !== null || g.asn !== null);
  return {
    country: g?.country ?? null,
    city: g?.city ?? null,
    asn: g?.asn ?? null,
    as_org: g?.as_org ?? null,
    geo_db: known ? geo!.stamp : null,
  };
}

function identityKey(pid: number, startTicks: number): string {
  return `${pid}:${startTicks}`;
}

function toImageRow(r: {
  id: number | bigint;
  exec_index: number;
  start: number;
  end: number | null;
  parent_id: number | null;
  ppid: number;
}): ImageRow {
  return {
    id: Number(r.id),
    exec_index: Number(r.exec_index),
    start: Number(r.start),
    end: r.end === null ? null : Number(r.end),
    parent_id: r.parent_id === null ? null : Number(r.parent_id),
    ppid: Number(r.ppid),
    row: null,
  };
}

/** The image running at `at`; failing that (tick rounding of start times), the nearest earlier one. */
/** What a fork of a parent the store lacks inherits: nothing known, and argv marked incomplete. */
const UNKNOWN_IMAGE: InheritedColumns = Object.freeze({
  exe: null,
  exe_raw: null,
  comm: '',
  comm_raw: null,
  argv: '[]',
  argv_raw: null,
  cmdline: '',
  cwd: null,
  cwd_raw: null,
  // (uid_t)-1, the kernel's "no id": never a real user's, and not root's.
  ruid: UNKNOWN_ID,
  euid: UNKNOWN_ID,
  rgid: UNKNOWN_ID,
  egid: UNKNOWN_ID,
  argv_source: null,
  argv_complete: 0,
  cgroup: null,
  cgroup_raw: null,
  container_id: null,
  ns_pid: null,
  ns_net: null,
  ns_mnt: null,
  ns_user: null,
  observer: 0,
});

/** The columns of an exec's new image: those before it, with the program's and the changed ones replaced. */
function execDeltaColumns(before: InheritedColumns, r: RecordOf<'process_exec_delta'>): InheritedColumns {
  const exe = r.exe === null ? null : kernelText(r.exe);
  const comm = kernelText(r.comm);
  const argv = kernelArgv(r.argv);
  const out: InheritedColumns = {
    ...before,
    exe: exe?.text ?? null,
    exe_raw: exe?.raw ?? null,
    comm: comm.text,
    comm_raw: comm.raw,
    argv: argv.argv,
    argv_raw: argv.raw,
    cmdline: argv.cmdline,
    argv_source: r.argv_source,
    argv_complete: r.argv_complete ? 1 : 0,
  };
  if (r.cwd !== undefined) {
    const cwd = r.cwd === null ? null : kernelText(r.cwd);
    out.cwd = cwd?.text ?? null;
    out.cwd_raw = cwd?.raw ?? null;
  }
  if (r.ruid !== undefined) out.ruid = r.ruid;
  if (r.euid !== undefined) out.euid = r.euid;
  if (r.rgid !== undefined) out.rgid = r.rgid;
  if (r.egid !== undefined) out.egid = r.egid;
  if (r.observer !== undefined) out.observer = r.observer ? 1 : 0;
  if (r.cgroup !== undefined) {
    const cgroup = r.cgroup === null ? null : kernelText(r.cgroup);
    out.cgroup = cgroup?.text ?? null;
    out.cgroup_raw = cgroup?.raw ?? null;
  }
  if (r.container_id !== undefined) out.container_id = r.container_id;
  if (r.ns_pid !== undefined) out.ns_pid = r.ns_pid;
  if (r.ns_net !== undefined) out.ns_net = r.ns_net;
  if (r.ns_mnt !== undefined) out.ns_mnt = r.ns_mnt;
  if (r.ns_user !== undefined) out.ns_user = r.ns_user;
  return out;
}

function pickInherited(row: InheritedColumns): InheritedColumns {
  const out: Record<string, unknown> = {};
  for (const c of INHERITED_COLUMNS) out[c] = row[c] ?? null;
  return out as InheritedColumns;
}

function imageAt(images: readonly ImageRow[], at: number): ImageRow | undefined {
  let best: ImageRow | undefined;
  for (const i of images) if (i.start <= at && (i.end === null || i.end >= at)) best = i;
  if (best) return best;
  for (const i of images) if (i.start <= at) best = i;
  return best ?? images[0];
}

function samePath(
  row: { path: string; path_raw: Uint8Array | null },
  path: { text: string; raw: Buffer | null },
) {
  if (row.path !== path.text) return false;
  if (row.path_raw === null || path.raw === null) return row.path_raw === null && path.raw === null;
  return Buffer.from(row.path_raw).equals(path.raw);
}
