import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readFileSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { type PofrRecord, type RecordTexts, recordSchema, sha256Hex, textsOf } from '../protocol/index.js';

export const DEFAULT_JOURNAL_MAX_BYTES = 64 * 1024 * 1024;
/** At most one fdatasync of the journal per this many ms (default). */
export const DEFAULT_JOURNAL_SYNC_MS = 1000;

/** Ticks (cycles with nothing new) are dropped once they fill this much with nothing unsealed. */
const IDLE_COMPACT_BYTES = 64 * 1024;
const JOURNAL_VERSION = 1;
/**
 * A cycle with nothing new is written at most this often (µs): it only says the recorder was alive,
 * and with kernel events the recorder cycles every 100 ms.
 */
const ALIVE_EVERY_US = 1_000_000;

/** Who wrote a journal and where its records belong: the batch after `base_seq` in the chain. */
export interface JournalHeader {
  readonly host_id: string;
  /** The boot the records were recorded in: their process identities belong to it. */
  readonly boot_id: string;
  readonly pid: number;
  /** When the run began, µs. */
  readonly started: number;
  /** The chain head when this segment began: its records were not sealed into any batch up to it. */
  readonly base_seq: number;
  readonly base_hash: string;
}

/** Records the journal could not keep (its bound, a full disk): they lived only in memory. */
export interface JournalLoss {
  readonly from: number;
  readonly to: number;
  readonly dropped: number;
  readonly reason: string;
}

/** What a journal left by an earlier run holds, read back without trusting it. */
export interface JournalContents {
  /** Null when the journal's first line does not read back (cut short at its very start). */
  readonly header: JournalHeader | null;
  /** The unsealed records, in the order they were written, each valid against the protocol schema. */
  readonly records: readonly PofrRecord[];
  /** The time of the last frame that read back: the last moment the recorder is known alive. */
  readonly lastWrite: number | null;
  readonly lost: JournalLoss | null;
  /** Records that read back but do not match the protocol schema (not sealed; counted). */
  readonly invalid: number;
  /** Bytes that did not read back: a write cut short by a power loss, or a damaged line. */
  readonly tornBytes: number;
  /** Set when the run ended cleanly: the stop frame's time and reason. */
  readonly stopped: { readonly t: number; readonly reason: string } | null;
}

export interface JournalOptions {
  /** Bound of the journal file; records past it are counted, not written. Default 64 MiB. */
  readonly maxBytes?: number;
  /**
   * fdatasync the journal at most once per this many ms, off the event loop (0: after every write;
   * null: never, the page cache alone). Default 1000.
   */
  readonly syncMs?: number | null;
  /** Called once per distinct failure (a full disk, EIO): the journal never throws while recording. */
  readonly onError?: (message: string) => void;
}

export interface JournalStatus {
  readonly path: string;
  readonly bytes: number;
  /** Records written since the last seal. */
  readonly unsealed: number;
  /** Records of this segment that the journal could not keep (still in memory, sealed as usual). */
  readonly lost: JournalLoss | null;
  readonly syncs: number;
  readonly lastError: string | null;
}

/**
 * The crash journal: what the batch assembler holds but has not sealed yet, written to disk every
 * cycle so that a recorder killed with SIGKILL loses at most the cycle it was in. Once a write()
 * returned, the bytes are in the kernel's page cache and survive the death of the process; a power
 * loss can still take what was written since the last fdatasync (`syncMs`).
 *
 * One line per frame, `<16 hex of sha256(json)> <json>\n`: the header first, then one frame per
 * cycle (`{"t":…,"r":[records]}`; with no records at most once a second, to say the recorder was
 * alive: the blind window a crash leaves is never shorter than it was), a loss
 * frame once past the bound, and a stop frame on a clean stop. Every seal empties it (the records
 * are in the spool), so it holds at most one batch's worth. Failures never reach the recorder:
 * what could not be written is counted, and the next start says so.
 *
 * @example
 * const left = CrashJournal.read(path);           // a crashed run's records, before anything else
 * const journal = CrashJournal.open(path, header);
 * journal.write(now, records);                     // every cycle
 * journal.sealed(spool.chainHead(), now, []);      // after every seal
 * journal.stop(now, 'SIGTERM');                    // clean stop
 */
export class CrashJournal {
  readonly path: string;
  readonly maxBytes: number;
  readonly #syncMs: number | null;
  readonly #onError: (message: string) => void;
  #header: JournalHeader;
  #fd: number | null;
  #size = 0;
  #unsealed = 0;
  /** Where the loss frame sits once past the bound; it is rewritten there, never appended. */
  #lossAt: number | null = null;
  #lost: { from: number; to: number; dropped: number; reason: string } | null = null;
  #needsReset = false;
  #syncing = false;
  #lastSync = 0;
  #syncs = 0;
  #closing = false;
  #lastError: string | null = null;
  #lastFrame = 0;
  readonly #reported = new Set<string>();

  private constructor(path: string, header: JournalHeader, fd: number, opts: JournalOptions) {
    this.path = path;
    this.maxBytes = opts.maxBytes ?? DEFAULT_JOURNAL_MAX_BYTES;
    this.#syncMs = opts.syncMs === undefined ? DEFAULT_JOURNAL_SYNC_MS : opts.syncMs;
    this.#onError = opts.onError ?? (() => {});
    this.#header = header;
    this.#fd = fd;
  }

  /**
   * Starts a new journal at `path` (what was there must have been read first): writes the header
   * and makes it durable, so that even a power loss right after start is recognised as a crash.
   */
  static open(path: string, header: JournalHeader, opts: JournalOptions = {}): CrashJournal {
    const fd = openSync(path, 'w', 0o600);
    const journal = new CrashJournal(path, header, fd, opts);
    try {
      journal.#writeHeader();
      fsyncSync(fd);
      const dir = openSync(dirname(path), 'r');
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return journal;
  }

  /** Reads the journal an earlier run left; null when there is none. Never changes the file. */
  static read(path: string): JournalContents | null {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    return parseJournal(bytes);
  }

  /** This cycle's records (possibly none: the frame then only says the recorder was alive at `t`). */
  write(t: number, records: readonly PofrRecord[]): void {
    this.writeTexts(t, textsOf(records));
  }

  /** write(), for records serialised already (the batch assembler makes each record's text once). */
  writeTexts(t: number, texts: RecordTexts): void {
    if (this.#fd === null) return;
    if (texts.count === 0 && t - this.#lastFrame < ALIVE_EVERY_US) return;
    if (this.#needsReset && !this.#reset(t, [])) {
      this.#count(t, texts, this.#lastError ?? 'the journal could not be emptied');
      return;
    }
    if (texts.count === 0 && this.#unsealed === 0 && this.#lossAt === null) {
      // Only ticks since the last seal: keep the file small on an idle host.
      if (this.#size > IDLE_COMPACT_BYTES && !this.#reset(t, [])) return;
    }
    if (this.#lossAt === null) {
      const frame = encodeCycleFrame(t, texts);
      if (this.#size + frame.length <= this.maxBytes) {
        if (this.#append(frame)) {
          this.#lastFrame = t;
          this.#unsealed += texts.count;
          this.#maybeSync();
          return;
        }
        this.#count(t, texts, this.#lastError ?? 'write failed');
      } else {
        this.#count(
          t,
          texts,
          `journal ${this.path} reached its ${this.maxBytes}-byte bound; raise --journal-max`,
        );
      }
      this.#lossAt = this.#size;
    } else {
      this.#count(t, texts, this.#lost?.reason ?? 'journal full');
    }
    this.#writeLoss(t);
  }

  /**
   * Everything unsealed was sealed into the spool (or counted lost by the assembler): start again
   * from the new chain head, with `carry` (the gap record still owed to the next batch) as its first
   * frame.
   */
  sealed(head: { seq: number; hash: string }, t: number, carry: readonly PofrRecord[]): void {
    if (this.#fd === null) return;
    this.#header = { ...this.#header, base_seq: head.seq, base_hash: head.hash };
    this.#reset(t, carry);
  }

  /** A clean stop: the stop frame, made durable, then the file is closed. The next start seals nothing more. */
  stop(t: number, reason: string): void {
    if (this.#fd === null) return;
    const fd = this.#fd;
    if (this.#append(encodeFrame({ t, stop: reason }))) {
      try {
        fdatasyncSync(fd);
      } catch (e) {
        this.#fail(e);
      }
    }
    this.close();
  }

  /** Closes the file (without a stop frame: the next start treats the run as crashed). */
  close(): void {
    if (this.#fd === null || this.#closing) return;
    // An fdatasync may still run on the thread pool: the descriptor is closed when it is done, never
    // under it (a reused fd number would be synced, or worse, written).
    this.#closing = true;
    if (!this.#syncing) this.#closeNow();
  }

  status(): JournalStatus {
    return {
      path: this.path,
      bytes: this.#size,
      unsealed: this.#unsealed,
      lost: this.#lost,
      syncs: this.#syncs,
      lastError: this.#lastError,
    };
  }

  #closeNow(): void {
    if (this.#fd === null) return;
    try {
      closeSync(this.#fd);
    } catch {
      // nothing left to do with it
    }
    this.#fd = null;
  }

  #writeHeader(): void {
    const h = this.#header;
    const frame = encodeFrame({ journal: JOURNAL_VERSION, ...h });
    writeAll(this.#fd!, frame, 0);
    this.#size = frame.length;
  }

  #reset(t: number, carry: readonly PofrRecord[]): boolean {
    try {
      ftruncateSync(this.#fd!, 0);
      this.#size = 0;
      this.#writeHeader();
    } catch (e) {
      this.#fail(e);
      this.#needsReset = true;
      return false;
    }
    this.#needsReset = false;
    this.#unsealed = 0;
    this.#lossAt = null;
    this.#lost = null;
    if (carry.length > 0) this.write(t, carry);
    return true;
  }

  #append(frame: Buffer): boolean {
    try {
      writeAll(this.#fd!, frame, this.#size);
      this.#size += frame.length;
      return true;
    } catch (e) {
      this.#fail(e);
      // A partial line would only be skipped when read back; cutting it off keeps the file clean.
      try {
        ftruncateSync(this.#fd!, this.#size);
      } catch {
        // the next read skips it
      }
      return false;
    }
  }

  #count(t: number, texts: RecordTexts, reason: string): void {
    if (texts.count === 0) return;
    const from = texts.lossFrom;
    const to = Math.max(texts.lossTo, t);
    const dropped = texts.dropped;
    const l = this.#lost;
    this.#lost = l
      ? { from: Math.min(l.from, from), to: Math.max(l.to, to), dropped: l.dropped + dropped, reason }
      : { from, to, dropped, reason };
  }

  /** The loss frame is rewritten in place each cycle: the file stays within its bound plus one line. */
  #writeLoss(t: number): void {
    const at = this.#lossAt!;
    const frame = encodeFrame({ t, r: [], lost: this.#lost });
    try {
      ftruncateSync(this.#fd!, at);
      writeAll(this.#fd!, frame, at);
      this.#size = at + frame.length;
      this.#lastFrame = t;
    } catch (e) {
      this.#fail(e);
      this.#size = at;
    }
    this.#maybeSync();
  }

  #maybeSync(): void {
    if (this.#syncMs === null || this.#syncing || this.#fd === null) return;
    const now = Date.now();
    if (now - this.#lastSync < this.#syncMs) return;
    this.#lastSync = now;
    this.#syncing = true;
    fdatasync(this.#fd, (e) => {
      this.#syncing = false;
      if (e) this.#fail(e);
      else this.#syncs++;
      if (this.#closing) this.#closeNow();
    });
  }

  #fail(e: unknown): void {
    const err = e as NodeJS.ErrnoException;
    const message = `journal ${this.path}: ${err.code ?? ''} ${err.message ?? String(e)}`.trim();
    this.#lastError = message;
    const key = err.code ?? message;
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    this.#onError(message);
  }
}

function writeAll(fd: number, data: Buffer, position: number): void {
  let off = 0;
  while (off < data.length) off += writeSync(fd, data, off, data.length - off, position + off);
}

function encodeFrame(value: object): Buffer {
  return frameOf(JSON.stringify(value));
}

/**
 * `encodeFrame({ t, r: records })`, from the records' text made once for journal and batch alike:
 * the JSON Lines are copied into the line and their newlines made commas there (a byte 0x0a is a
 * newline in UTF-8, and JSON text has none of its own), no string built for the frame.
 */
function encodeCycleFrame(t: number, texts: RecordTexts): Buffer {
  const head = `{"t":${JSON.stringify(t)},"r":[`;
  const n = head.length + texts.jsonl.length + 2;
  const line = Buffer.allocUnsafe(n + 18);
  let at = 17 + line.write(head, 17, 'latin1');
  const bodyEnd = at + texts.jsonl.copy(line, at);
  for (let nl = line.indexOf(0x0a, at); nl >= 0 && nl < bodyEnd; nl = line.indexOf(0x0a, nl + 1))
    line[nl] = 0x2c;
  at = bodyEnd;
  line[at] = 0x5d; // ]
  line[at + 1] = 0x7d; // }
  return sealLine(line, n);
}

function frameOf(json: string): Buffer {
  // Encoded once, in place: a cycle of an exec storm is hundreds of kilobytes, written every tick.
  const n = Buffer.byteLength(json, 'utf8');
  const line = Buffer.allocUnsafe(n + 18);
  line.write(json, 17, n, 'utf8');
  return sealLine(line, n);
}

/** `line` holds `n` bytes of JSON at offset 17: the checksum goes before it, the newline after. */
function sealLine(line: Buffer, n: number): Buffer {
  line.write(sha256Hex(line.subarray(17, 17 + n)).slice(0, 16), 0, 'latin1');
  line[16] = 0x20;
  line[17 + n] = 0x0a;
  return line;
}

/** A line that reads back: its checksum matches and it is a JSON object. */
function decodeFrame(line: string): Record<string, unknown> | null {
  if (line.length < 18 || line[16] !== ' ') return null;
  const json = line.slice(17);
  if (sha256Hex(Buffer.from(json, 'utf8')).slice(0, 16) !== line.slice(0, 16)) return null;
  try {
    const v = JSON.parse(json) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function parseHeader(f: Record<string, unknown> | null): JournalHeader | null {
  if (f === null || f.journal !== JOURNAL_VERSION) return null;
  const { host_id, boot_id, pid, started, base_seq, base_hash } = f;
  if (
    typeof host_id !== 'string' ||
    typeof boot_id !== 'string' ||
    !Number.isSafeInteger(pid) ||
    !Number.isSafeInteger(started) ||
    !Number.isSafeInteger(base_seq) ||
    typeof base_hash !== 'string'
  ) {
    return null;
  }
  return {
    host_id,
    boot_id,
    pid: pid as number,
    started: started as number,
    base_seq: base_seq as number,
    base_hash,
  };
}

function parseLoss(v: unknown): JournalLoss | null {
  if (v === null || typeof v !== 'object') return null;
  const { from, to, dropped, reason } = v as Record<string, unknown>;
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || !Number.isSafeInteger(dropped)) return null;
  return {
    from: from as number,
    to: to as number,
    dropped: dropped as number,
    reason: typeof reason === 'string' ? reason : 'journal full',
  };
}

/**
 * Reads frames back, skipping any line that does not (a torn tail after a power loss, a line cut
 * short by a full disk): the lines after it are still good.
 */
export function parseJournal(bytes: Buffer): JournalContents {
  const text = bytes.toString('utf8');
  const lines = text.split('\n');
  // The part after the last newline was never completed.
  const tail = lines.pop() ?? '';
  let tornBytes = Buffer.byteLength(tail, 'utf8');
  let header: JournalHeader | null = null;
  const records: PofrRecord[] = [];
  let lastWrite: number | null = null;
  let lost: JournalLoss | null = null;
  let invalid = 0;
  let stopped: JournalContents['stopped'] = null;
  for (let i = 0; i < lines.length; i++) {
    const frame = decodeFrame(lines[i]);
    if (i === 0) {
      header = parseHeader(frame);
      if (header === null) tornBytes += Buffer.byteLength(lines[i], 'utf8') + 1;
      continue;
    }
    if (frame === null || !Number.isSafeInteger(frame.t)) {
      tornBytes += Buffer.byteLength(lines[i], 'utf8') + 1;
      continue;
    }
    lastWrite = Math.max(lastWrite ?? 0, frame.t as number);
    if (typeof frame.stop === 'string') stopped = { t: frame.t as number, reason: frame.stop };
    if ('lost' in frame) lost = parseLoss(frame.lost);
    if (!Array.isArray(frame.r)) continue;
    for (const raw of frame.r) {
      const parsed = recordSchema.safeParse(raw);
      if (parsed.success) records.push(parsed.data);
      else invalid++;
    }
  }
  if (header === null) {
    // Without the header nothing says where the records belong in the chain: none is sealed.
    invalid += records.length;
    records.length = 0;
  }
  return { header, records, lastWrite, lost, invalid, tornBytes, stopped };
}
