import { type Insertable, sql, type Transaction } from 'kysely';
import type { GeoLookup } from '../enrich/index.js';
import type { EndpointInfo, FileInfo, PofrRecord, ProcessImage, RecordOf } from '../protocol/index.js';
import type { Database, EndpointStatesTable, FileOpensTable, ProcessesTable } from '../store/index.js';
import { ActivityWriter } from './activity-records.js';
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

interface ImageRow {
  id: number;
  exec_index: number;
  start: number;
  end: number | null;
  parent_id: number | null;
  ppid: number;
}

interface UserRow {
  name: string;
  valid_from: number;
  valid_to: number | null;
}

interface OpenEndpoint {
  id: number;
  state: string;
}

type FileRow = Insertable<FileOpensTable>;

/** An open descriptor: a stored row (id), or a row of this batch not inserted yet (row, changed in place). */
interface OpenFile {
  id: number | null;
  row: FileRow | null;
  path: string;
  path_raw: Uint8Array | null;
}

// Keeps statements under SQLite's 32766 and PostgreSQL's 65535 bind-parameter limits.
const MAX_PARAMS = 30_000;
const IMAGE_COLUMNS = ['id', 'exec_index', 'start', 'end', 'parent_id', 'ppid'] as const;

/**
 * Applies the records of one batch inside its transaction. It owns the batch's caches (process
 * images by identity, open endpoints by key, users by uid), which are valid only within that
 * transaction: create one per batch.
 */
export class BatchApplier {
  private readonly images = new Map<string, ImageRow[]>();
  /** pid → identity keys in `images`; complete for the pids in `loadedPids`. */
  private readonly pidKeys = new Map<number, Set<string>>();
  private readonly loadedPids = new Set<number>();
  /** Open descriptors by process identity, loaded on first use (or known empty for new processes). */
  private readonly fds = new Map<string, Map<number, OpenFile>>();
  /**
   * File rows opened by this batch, inserted in bulk by flushFiles(). Most descriptors a batch opens
   * it also closes (short-lived processes): those close in memory and cost no statement of their own,
   * which is what bounds ingest on PostgreSQL, where every statement is a round trip.
   */
  private pendingFiles: OpenFile[] = [];
  private readonly endpoints = new Map<string, OpenEndpoint | null>();
  // Nothing reads these back within the batch: written once, in bulk, before commit.
  private readonly pendingStates: Insertable<EndpointStatesTable>[] = [];
  private readonly dirtyEndpoints = new Map<number, { state: string; last_seen: number }>();
  private users: Map<number, UserRow[]> | null = null;
  private otherBootsClosed = false;
  private readonly warned = new Map<string, { count: number; example: string }>();
  private readonly health: RecorderHealthWriter;
  private readonly activity: ActivityWriter;

  constructor(
    private readonly trx: Trx,
    private readonly scope: BatchScope,
  ) {
    this.health = new RecorderHealthWriter(trx, scope);
    this.activity = new ActivityWriter(
      trx,
      scope,
      async (pid, startTicks, t) => imageAt(await this.imagesOf(pid, startTicks), t)?.id ?? null,
    );
  }

  /** One line per kind of oddity, with a count and the first example. */
  warnings(): string[] {
    return [...this.warned].map(([what, w]) => `${w.count} × ${what} (first: ${w.example})`);
  }

  async apply(records: readonly PofrRecord[]): Promise<void> {
    if (this.scope.bootChanged) await this.closeOtherBoots();
    await this.prefetchImages(records);
    await this.prefetchEndpoints(records);
    const base = this.scope.seq * ORD_PER_BATCH;
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      const ord = base + i;
      switch (r.type) {
        case 'process_start':
          await this.processStart(r.proc, ord);
          break;
        case 'process_exec':
          await this.processExec(r.t, r.proc, ord);
          break;
        case 'process_exit':
          await this.processExit(r.t, r.pid, r.start_ticks, ord);
          break;
        case 'file_open':
          await this.fileOpen(r.t, r.file, ord);
          break;
        case 'file_close':
          await this.fileClose(r.t, r.pid, r.start_ticks, r.fd, ord);
          break;
        case 'endpoint_open':
          await this.endpointOpen(r.t, r.endpoint, ord);
          break;
        case 'endpoint_state':
          await this.endpointState(r.t, r.key, r.state, ord);
          break;
        case 'endpoint_close':
          await this.endpointClose(r.t, r.key, ord);
          break;
        case 'inventory':
          await this.inventory(r);
          break;
        case 'keyframe':
          await this.keyframe(r, ord);
          break;
        case 'gap':
          await this.recorderGap(r);
          break;
        case 'recorder_start':
        case 'recorder_stop':
        case 'recorder_crash':
        case 'recorder_heartbeat':
          this.health.add(r, ord);
          break;
        case 'dns_query':
        case 'cred_change':
          await this.activity.add(r, ord);
          break;
      }
    }
    await this.flushFiles();
    await this.flushEndpoints();
    await this.health.flush();
    await this.activity.flush();
  }

  // ---- processes ---------------------------------------------------------------------------

  private async processStart(proc: ProcessImage, ord: number): Promise<void> {
    const images = await this.imagesOf(proc.pid, proc.start_ticks);
    if (images.length > 0) return; // already known (a keyframe or an earlier batch saw it first)
    await this.insertImage(proc, 0, proc.start, null, ord);
  }

  private async processExec(t: number, proc: ProcessImage, ord: number): Promise<void> {
    const images = await this.imagesOf(proc.pid, proc.start_ticks);
    const current = images.at(-1);
    if (current === undefined) {
      // The start was lost (gap, or the recorder began after it): the first image we know of.
      await this.insertImage(proc, 0, proc.start, null, ord);
      return;
    }
    if (current.end === null) await this.closeImages([current], t, 'exec', ord);
    await this.insertImage(proc, current.exec_index + 1, t, current.parent_id, ord);
  }

  private async processExit(t: number, pid: number, startTicks: number, ord: number): Promise<void> {
    const images = await this.imagesOf(pid, startTicks);
    const open = images.filter((i) => i.end === null);
    if (images.length === 0) {
      this.warn('process_exit for a process the store does not know', `pid ${pid} start_ticks ${startTicks}`);
      return;
    }
    await this.closeImages(open, t, 'exit', ord);
    const key = identityKey(pid, startTicks);
    const fds = this.fds.get(key);
    if (fds) {
      // Loaded once, then kept in step: it holds every descriptor the process has open.
      await this.closeFiles([...fds.values()], t, ord);
      fds.clear();
      return;
    }
    this.fds.set(key, new Map());
    // Descriptors survive exec, so a file may belong to any image of the process.
    await this.trx
      .updateTable('file_opens')
      .set({ last_seen: t, is_open: 0, close_ord: ord })
      .where(
        'process_id',
        'in',
        images.map((i) => i.id),
      )
      .where('is_open', '=', sql.lit(1))
      .execute();
  }

  private async closeImages(rows: ImageRow[], t: number, reason: string, ord: number): Promise<void> {
    if (rows.length === 0) return;
    for (const ids of chunks(
      rows.map((r) => r.id),
      MAX_PARAMS,
    )) {
      await this.trx
        .updateTable('processes')
        .set({ end: t, end_reason: reason, close_ord: ord })
        .where('id', 'in', ids)
        .execute();
    }
    for (const r of rows) r.end = t;
  }

  private async insertImage(
    proc: ProcessImage,
    execIndex: number,
    start: number,
    parentId: number | null,
    ord: number,
  ): Promise<ImageRow> {
    const row = await this.processRow(proc, execIndex, start, parentId, ord);
    const { id } = await this.trx
      .insertInto('processes')
      .values(row)
      .returning('id')
      .executeTakeFirstOrThrow();
    const key = identityKey(proc.pid, proc.start_ticks);
    if ((this.images.get(key)?.length ?? 0) === 0) this.fds.set(key, new Map());
    return this.remember(proc, {
      id: Number(id),
      exec_index: execIndex,
      start,
      end: null,
      parent_id: row.parent_id ?? null,
      ppid: proc.ppid,
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

  private async processRow(
    proc: ProcessImage,
    execIndex: number,
    start: number,
    parentId: number | null,
    ord: number,
  ): Promise<Insertable<ProcessesTable>> {
    const exe = proc.exe === null ? null : kernelText(proc.exe);
    const cwd = proc.cwd === null ? null : kernelText(proc.cwd);
    const comm = kernelText(proc.comm);
    const argv = kernelArgv(proc.argv);
    return {
      host_id: this.scope.hostId,
      boot_id: this.scope.bootId,
      pid: proc.pid,
      start_ticks: proc.start_ticks,
      exec_index: execIndex,
      start,
      end: null,
      end_reason: null,
      ppid: proc.ppid,
      parent_id: parentId ?? (await this.resolveParent(proc)),
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
      user: await this.userAt(proc.ruid, start),
      source: proc.source,
      observer: proc.observer ? 1 : 0,
      argv_source: proc.argv_source ?? null,
      argv_complete: proc.argv_complete === undefined ? null : proc.argv_complete ? 1 : 0,
      open_ord: ord,
      close_ord: null,
      ...contextColumns(proc),
    };
  }

  /** The parent image that was running when the child started (a parent may exec after forking). */
  private async resolveParent(proc: ProcessImage): Promise<number | null> {
    if (proc.ppid === 0) return null;
    if (proc.parent_start_ticks !== null) {
      const images = await this.imagesOf(proc.ppid, proc.parent_start_ticks);
      return imageAt(images, proc.start)?.id ?? null;
    }
    if (this.loadedPids.has(proc.ppid)) {
      let best: ImageRow | undefined;
      for (const key of this.pidKeys.get(proc.ppid) ?? []) {
        for (const i of this.images.get(key) ?? []) {
          if (
            i.start <= proc.start &&
            (i.end === null || i.end >= proc.start) &&
            (!best || i.start >= best.start)
          ) {
            best = i;
          }
        }
      }
      return best?.id ?? null;
    }
    const row = await this.trx
      .selectFrom('processes')
      .select('id')
      .where('host_id', '=', this.scope.hostId)
      .where('boot_id', '=', this.scope.bootId)
      .where('pid', '=', proc.ppid)
      .where('start', '<=', proc.start)
      .where((eb) => eb.or([eb('end', 'is', null), eb('end', '>=', proc.start)]))
      .orderBy('start', 'desc')
      .orderBy('exec_index', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? Number(row.id) : null;
  }

  private async imagesOf(pid: number, startTicks: number): Promise<ImageRow[]> {
    const key = identityKey(pid, startTicks);
    const cached = this.images.get(key);
    if (cached) return cached;
    const rows = await this.trx
      .selectFrom('processes')
      .select(IMAGE_COLUMNS)
      .where('host_id', '=', this.scope.hostId)
      .where('boot_id', '=', this.scope.bootId)
      .where('pid', '=', pid)
      .where('start_ticks', '=', startTicks)
      .orderBy('exec_index')
      .execute();
    const images = rows.map(toImageRow);
    this.images.set(key, images);
    this.indexPid(pid, key);
    return images;
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
        case 'process_exit':
        case 'file_close':
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
          break;
        default:
          break;
      }
    }
    for (const key of wanted) if (!this.images.has(key)) this.images.set(key, []);
    for (const pid of pids) this.loadedPids.add(pid);
    for (const part of chunks([...pids], MAX_PARAMS)) {
      const rows = await this.trx
        .selectFrom('processes')
        .select([...IMAGE_COLUMNS, 'pid', 'start_ticks'])
        .where('host_id', '=', this.scope.hostId)
        .where('boot_id', '=', this.scope.bootId)
        .where('pid', 'in', part)
        .orderBy('exec_index')
        .execute();
      for (const r of rows) {
        const key = identityKey(Number(r.pid), Number(r.start_ticks));
        const list = this.images.get(key);
        if (list) list.push(toImageRow(r));
        else this.images.set(key, [toImageRow(r)]);
        this.indexPid(Number(r.pid), key);
      }
    }
  }

  private async userAt(uid: number, start: number): Promise<string | null> {
    if (this.users === null) {
      const rows = await this.trx
        .selectFrom('users')
        .select(['uid', 'name', 'valid_from', 'valid_to'])
        .where('host_id', '=', this.scope.hostId)
        .execute();
      this.users = new Map();
      for (const r of rows) {
        const uidNum = Number(r.uid);
        const list = this.users.get(uidNum) ?? [];
        list.push({
          name: r.name,
          valid_from: Number(r.valid_from),
          valid_to: r.valid_to === null ? null : Number(r.valid_to),
        });
        this.users.set(uidNum, list);
      }
      // Several names may share a uid (root and toor): pick one by value, not by the order the engine
      // returns rows in (PostgreSQL moves updated rows), so re-deriving on another engine agrees.
      for (const list of this.users.values()) {
        list.sort((a, b) => a.valid_from - b.valid_from || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      }
    }
    const rows = this.users.get(uid);
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

  private async fileOpen(t: number, file: FileInfo, ord: number): Promise<void> {
    const images = await this.imagesOf(file.pid, file.start_ticks);
    const current = images.at(-1);
    if (current === undefined) {
      this.warn(
        'file_open for a process the store does not know (recorder bug?)',
        `pid ${file.pid} fd ${file.fd}`,
      );
      return;
    }
    const path = kernelText(file.path);
    const fds = await this.openFds(file.pid, file.start_ticks, images);
    const existing = fds.get(file.fd);
    if (existing && samePath(existing, path)) {
      if (existing.row) existing.row.last_seen = t;
      else
        await this.trx
          .updateTable('file_opens')
          .set({ last_seen: t })
          .where('id', '=', existing.id)
          .execute();
      return;
    }
    // A new open of a descriptor that is still open here means the close was missed.
    if (existing) await this.closeFiles([existing], t, ord);
    const opened: OpenFile = {
      id: null,
      row: this.fileRow(current.id, file, path, t, ord),
      path: path.text,
      path_raw: path.raw,
    };
    this.pendingFiles.push(opened);
    fds.set(file.fd, opened);
  }

  /** Inserts the file rows this batch opened, and gives their descriptors the ids they got. */
  private async flushFiles(): Promise<void> {
    const pending = this.pendingFiles;
    if (pending.length === 0) return;
    this.pendingFiles = [];
    // (process, fd, open_ord) names one row: each record has its own ord, and one process's fd
    // opens once per record. RETURNING promises no order, so ids are matched by it.
    const rowKey = (r: { process_id: unknown; fd: unknown; open_ord: unknown }) =>
      `${r.process_id}:${r.fd}:${r.open_ord}`;
    for (const part of chunks(pending, Math.floor(MAX_PARAMS / 12))) {
      const inserted = await this.trx
        .insertInto('file_opens')
        .values(part.map((f) => f.row as FileRow))
        .returning(['id', 'process_id', 'fd', 'open_ord'])
        .execute();
      const ids = new Map(inserted.map((r) => [rowKey(r), Number(r.id)]));
      for (const f of part) {
        const id = ids.get(rowKey(f.row as FileRow));
        if (id === undefined)
          throw new Error(`file row ${rowKey(f.row as FileRow)} was inserted without an id`);
        f.id = id;
        f.row = null;
      }
    }
  }

  private async openFds(pid: number, startTicks: number, images: ImageRow[]): Promise<Map<number, OpenFile>> {
    const key = identityKey(pid, startTicks);
    const cached = this.fds.get(key);
    if (cached) return cached;
    const rows = await this.trx
      .selectFrom('file_opens')
      .select(['id', 'fd', 'path', 'path_raw'])
      .where(
        'process_id',
        'in',
        images.map((i) => i.id),
      )
      .where('is_open', '=', sql.lit(1))
      .orderBy('id')
      .execute();
    const fds = new Map<number, OpenFile>();
    for (const r of rows)
      fds.set(Number(r.fd), { id: Number(r.id), row: null, path: r.path, path_raw: r.path_raw });
    this.fds.set(key, fds);
    return fds;
  }

  private async closeFiles(files: readonly OpenFile[], t: number, ord: number): Promise<void> {
    const ids: number[] = [];
    for (const f of files) {
      if (f.row) {
        f.row.last_seen = t;
        f.row.is_open = 0;
        f.row.close_ord = ord;
      } else if (f.id !== null) {
        ids.push(f.id);
      }
    }
    for (const part of chunks(ids, MAX_PARAMS)) {
      await this.trx
        .updateTable('file_opens')
        .set({ last_seen: t, is_open: 0, close_ord: ord })
        .where('id', 'in', part)
        .execute();
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

  private async fileClose(
    t: number,
    pid: number,
    startTicks: number,
    fd: number,
    ord: number,
  ): Promise<void> {
    const images = await this.imagesOf(pid, startTicks);
    if (images.length > 0) {
      const fds = await this.openFds(pid, startTicks, images);
      const open = fds.get(fd);
      if (open) {
        await this.closeFiles([open], t, ord);
        fds.delete(fd);
        return;
      }
    }
    this.warn('file_close for a descriptor the store does not hold open', `pid ${pid} fd ${fd}`);
  }

  // ---- endpoints ---------------------------------------------------------------------------

  private async openEndpoint(key: string): Promise<OpenEndpoint | null> {
    const cached = this.endpoints.get(key);
    if (cached !== undefined) return cached;
    const row = await this.trx
      .selectFrom('endpoints')
      .select(['id', 'state'])
      .where('host_id', '=', this.scope.hostId)
      .where('key', '=', key)
      .where('is_open', '=', sql.lit(1))
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
    const found = row ? { id: Number(row.id), state: row.state } : null;
    this.endpoints.set(key, found);
    return found;
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
      const rows = await this.trx
        .selectFrom('endpoints')
        .select(['id', 'key', 'state'])
        .where('host_id', '=', this.scope.hostId)
        .where('key', 'in', part)
        .where('is_open', '=', sql.lit(1))
        .orderBy('id')
        .execute();
      // Ascending ids: the newest open row of a key wins, as in openEndpoint().
      for (const r of rows) this.endpoints.set(r.key, { id: Number(r.id), state: r.state });
    }
  }

  private async endpointOpen(t: number, ep: EndpointInfo, ord: number): Promise<void> {
    const existing = await this.openEndpoint(ep.key);
    if (existing) {
      this.touchEndpoint(existing, t, ep.state, ord);
      return;
    }
    const row = this.endpointRow(ep, await this.endpointProcess(ep), t, ord);
    const { id } = await this.trx
      .insertInto('endpoints')
      .values(row)
      .returning('id')
      .executeTakeFirstOrThrow();
    this.endpoints.set(ep.key, { id: Number(id), state: ep.state });
    this.pendingStates.push({ endpoint_id: Number(id), host_id: this.scope.hostId, t, state: ep.state, ord });
  }

  /** Records a state change (if any) and the sighting; written by flushEndpoints. */
  private touchEndpoint(ep: OpenEndpoint, t: number, state: string, ord: number, always = false): void {
    if (always || ep.state !== state) {
      this.pendingStates.push({ endpoint_id: ep.id, host_id: this.scope.hostId, t, state, ord });
    }
    ep.state = state;
    this.dirtyEndpoints.set(ep.id, { state, last_seen: t });
  }

  private async endpointState(t: number, key: string, state: string, ord: number): Promise<void> {
    const ep = await this.openEndpoint(key);
    if (!ep) {
      this.warn('endpoint_state for an endpoint the store does not hold open', key);
      return;
    }
    this.touchEndpoint(ep, t, state, ord, true);
  }

  private async endpointClose(t: number, key: string, ord: number): Promise<void> {
    const ep = await this.openEndpoint(key);
    if (!ep) {
      this.warn('endpoint_close for an endpoint the store does not hold open', key);
      return;
    }
    this.dirtyEndpoints.delete(ep.id);
    await this.trx
      .updateTable('endpoints')
      .set({ state: ep.state, last_seen: t, is_open: 0, close_ord: ord })
      .where('id', '=', ep.id)
      .execute();
    this.endpoints.set(key, null);
  }

  private async flushEndpoints(): Promise<void> {
    for (const [id, e] of this.dirtyEndpoints) {
      await this.trx.updateTable('endpoints').set(e).where('id', '=', id).execute();
    }
    this.dirtyEndpoints.clear();
    const states = this.pendingStates.splice(0);
    for (const part of chunks(states, Math.floor(MAX_PARAMS / 5))) {
      await this.trx.insertInto('endpoint_states').values(part).execute();
    }
  }

  private async endpointProcess(ep: EndpointInfo): Promise<number | null> {
    if (ep.pid === null) return null;
    if (ep.start_ticks !== null) return (await this.imagesOf(ep.pid, ep.start_ticks)).at(-1)?.id ?? null;
    const row = await this.trx
      .selectFrom('processes')
      .select('id')
      .where('host_id', '=', this.scope.hostId)
      .where('boot_id', '=', this.scope.bootId)
      .where('pid', '=', ep.pid)
      .where('end', 'is', null)
      .orderBy('start', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? Number(row.id) : null;
  }

  private endpointRow(ep: EndpointInfo, processId: number | null, t: number, ord: number) {
    return {
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
    this.users = null;
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
    await this.flushFiles();
    await this.closeOtherBoots();
    await this.keyframeProcesses(r.t, r.processes, ord);
    await this.keyframeFiles(r.t, r.files, ord);
    await this.keyframeEndpoints(r.t, r.endpoints, ord);
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
    await this.closeImages(gone, t, 'keyframe', ord);
    // Parents first, generation by generation, so every child's parent row exists when it is inserted.
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
      const rows: Insertable<ProcessesTable>[] = [];
      for (const m of generation) rows.push(await this.processRow(m.proc, m.execIndex, m.start, null, ord));
      for (const part of chunks(rows, Math.floor(MAX_PARAMS / 30))) {
        const inserted = await this.trx
          .insertInto('processes')
          .values(part)
          .returning(['id', 'pid', 'start_ticks', 'exec_index', 'start', 'parent_id', 'ppid'])
          .execute();
        for (const row of inserted) {
          this.remember(
            { pid: Number(row.pid), start_ticks: Number(row.start_ticks) },
            toImageRow({ ...row, end: null }),
          );
        }
      }
      const done = new Set(generation);
      for (const m of generation) pendingKeys.delete(identityKey(m.proc.pid, m.proc.start_ticks));
      pending = pending.filter((m) => !done.has(m));
    }
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
    const insert: ReturnType<BatchApplier['fileRow']>[] = [];
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
      insert.push(this.fileRow(current.id, file, path, t, ord));
    }
    for (const o of openByFd.values()) close.push(Number(o.id));
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
    for (const part of chunks(insert, Math.floor(MAX_PARAMS / 12))) {
      await this.trx.insertInto('file_opens').values(part).execute();
    }
  }

  private async keyframeEndpoints(t: number, eps: readonly EndpointInfo[], ord: number): Promise<void> {
    await this.flushEndpoints();
    const open = await this.trx
      .selectFrom('endpoints')
      .select(['id', 'key', 'state'])
      .where('host_id', '=', this.scope.hostId)
      .where('is_open', '=', sql.lit(1))
      .where('boot_id', '=', this.scope.bootId)
      .execute();
    const openByKey = new Map<string, OpenEndpoint>();
    for (const o of open)
      openByKey.set(o.key, this.endpoints.get(o.key) ?? { id: Number(o.id), state: o.state });
    const touch: number[] = [];
    const insert: ReturnType<BatchApplier['endpointRow']>[] = [];
    const seen = new Set<string>();
    for (const ep of eps) {
      if (seen.has(ep.key)) continue;
      seen.add(ep.key);
      const existing = openByKey.get(ep.key);
      if (existing === undefined) {
        insert.push(this.endpointRow(ep, await this.endpointProcess(ep), t, ord));
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
    for (const part of chunks(insert, Math.floor(MAX_PARAMS / 18))) {
      const inserted = await this.trx
        .insertInto('endpoints')
        .values(part)
        .returning(['id', 'key', 'state'])
        .execute();
      for (const e of inserted) {
        this.pendingStates.push({
          endpoint_id: Number(e.id),
          host_id: this.scope.hostId,
          t,
          state: e.state,
          ord,
        });
      }
      for (const e of inserted) this.endpoints.set(e.key, { id: Number(e.id), state: e.state });
    }
  }

  /** Whatever is still open from another boot of this host ended with that boot, at the latest now. */
  private async closeOtherBoots(): Promise<void> {
    if (this.otherBootsClosed) return;
    this.otherBootsClosed = true;
    await this.flushEndpoints();
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
  };
}

/** The image running at `at`; failing that (tick rounding of start times), the nearest earlier one. */
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

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
