import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { PofrError } from '../errors.js';
import {
  decodeFrontier,
  encodeFrontier,
  eraseFrontier,
  frontierFromSeed,
  GENESIS_HASH,
  readBatchFrame,
  type SealedBatch,
  type SealFrontier,
  sealKeyAt,
} from '../protocol/index.js';

export const DEFAULT_SPOOL_MAX_BYTES = 512 * 1024 * 1024;

const BATCH_SUFFIX = '.pofrb';
const BATCH_NAME = /^(\d{20})\.pofrb$/;
const HEAD_FILE = 'chain-head.json';
const REJECTED_DIR = 'rejected';
const HEX64 = /^[0-9a-f]{64}$/;

/** The last batch the client sealed into its spool: the next batch links to it. */
export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

/** The head file: the chain head and, for a client that seals, its seal keys for seq + 1 on. */
interface StoredHead extends ChainHead {
  readonly seal: SealFrontier | null;
}

/** One batch waiting in the spool for the server's ACK. */
export interface SpooledBatch {
  readonly seq: number;
  readonly size: number;
  /** Reads the batch bytes from disk (throws if it was acked or quarantined meanwhile). */
  read(): Buffer;
}

export interface SpoolOptions {
  /** Upper bound of the pending batches' total size; default 512 MiB. */
  readonly maxBytes?: number;
}

/** What a read-only look at a spool directory finds, for `pofr client status`. */
export interface SpoolSummary {
  readonly depth: number;
  readonly sizeBytes: number;
  readonly head: ChainHead | null;
  /** Whether the head holds seal keys (the client seals its batches). */
  readonly seals: boolean;
}

/**
 * The client's durable, bounded FIFO of sealed batches, and the owner of its chain head and of its
 * forward-secure seal keys (docs/protocol.md "Sealing"). Both live in one head file, replaced
 * atomically by each append: when a batch is in the spool, the key that sealed it is gone from disk.
 *
 * A batch leaves the spool only through ack() (the server committed it) or quarantine() (the
 * server refused it for good). A full spool throws POFR_SPOOL_FULL instead of dropping anything, so
 * the recorder can account for what it could not keep with an explicit gap record.
 *
 * One process owns a spool directory at a time (the client daemon); use Spool.inspect() to look
 * at it from another process, since open() repairs the directory (removes half-written files).
 *
 * @example
 * const spool = Spool.open(join(stateDir, 'spool'));
 * const head = spool.chainHead();
 * spool.append(sealBatch({ ...ids, seq: head.seq + 1, prev_hash: head.hash, records }, key));
 * for (const b of spool.pending()) upload(b.read()); // then spool.ack(b.seq) on the server's ACK
 */
export class Spool {
  readonly dir: string;
  readonly maxBytes: number;
  readonly #entries: { seq: number; size: number }[] = [];
  readonly #warnings: string[] = [];
  #head: ChainHead = { seq: 0, hash: GENESIS_HASH };
  #seal: SealFrontier | null = null;
  #bytes = 0;

  private constructor(dir: string, maxBytes: number) {
    this.dir = dir;
    this.maxBytes = maxBytes;
  }

  static open(dir: string, opts: SpoolOptions = {}): Spool {
    const maxBytes = opts.maxBytes ?? DEFAULT_SPOOL_MAX_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
      throw new PofrError('POFR_USAGE', `spool maxBytes must be a positive integer, got ${maxBytes}`);
    }
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const spool = new Spool(dir, maxBytes);
    spool.#recover();
    return spool;
  }

  /** Counts what a spool directory holds without changing it (safe while a daemon owns it). */
  static inspect(dir: string): SpoolSummary {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        return { depth: 0, sizeBytes: 0, head: null, seals: false };
      throw e;
    }
    let depth = 0;
    let sizeBytes = 0;
    for (const name of names) {
      if (!BATCH_NAME.test(name)) continue;
      try {
        sizeBytes += statSync(join(dir, name)).size;
        depth++;
      } catch {
        // acked while we looked
      }
    }
    let head: ChainHead | null = null;
    let seals = false;
    try {
      const stored = parseHead(readFileSync(join(dir, HEAD_FILE), 'utf8'));
      head = { seq: stored.seq, hash: stored.hash };
      seals = stored.seal !== null;
    } catch {
      head = null;
    }
    return { depth, sizeBytes, head, seals };
  }

  /**
   * Stores a sealed batch durably; when this returns, the batch survives a crash or power loss.
   * The batch must extend the chain head (seq above it, prev_hash equal to its hash).
   */
  append(batch: SealedBatch): void {
    const { seq, prev_hash } = batch.header;
    if (seq <= this.#head.seq) {
      throw new PofrError(
        'POFR_BATCH_CHAIN',
        `spool ${this.dir}: batch seq ${seq} is not above the last sealed seq ${this.#head.seq}; seal the next batch from chainHead()`,
      );
    }
    if (prev_hash !== this.#head.hash) {
      throw new PofrError(
        'POFR_BATCH_CHAIN',
        `spool ${this.dir}: batch ${seq} links to ${prev_hash}, but the chain head (seq ${this.#head.seq}) is ${this.#head.hash}; seal the next batch from chainHead()`,
      );
    }
    let nextSeal: SealFrontier | null = null;
    if (this.#seal !== null) {
      if (batch.header.seal === undefined) {
        throw new PofrError(
          'POFR_BATCH_SEAL',
          `spool ${this.dir}: batch ${seq} is not sealed, but this client seals every batch; seal it with sealKeyFor(${seq})`,
        );
      }
      nextSeal = sealKeyAt(this.#seal, seq).rest;
    }
    const size = batch.bytes.length;
    if (this.#bytes + size > this.maxBytes) {
      throw new PofrError(
        'POFR_SPOOL_FULL',
        `spool ${this.dir} holds ${this.#entries.length} batches (${this.#bytes} bytes); batch ${seq} (${size} bytes) would exceed the ${this.maxBytes}-byte bound; the server has not acknowledged for a while: check \`pofr client status\` and the server`,
        { seq, size, sizeBytes: this.#bytes, maxBytes: this.maxBytes },
      );
    }
    const name = batchName(seq);
    try {
      writeDurably(this.dir, name, batch.bytes);
    } catch (e) {
      throw this.#writeError(e, seq, size);
    }
    // The batch file is durable before the head moves: a crash in between is repaired on open
    // from the highest batch file, never the other way round (a head naming a lost batch). The
    // same write drops the seal key of this seq: once it returns, no file holds that key.
    const head = { seq, hash: batch.hash };
    try {
      writeHead(this.dir, { ...head, seal: nextSeal });
    } catch (e) {
      // The head did not move, so the batch must not stay either: on the next open it would become
      // the head while this process reseals the same seq with other records.
      removeQuietly(join(this.dir, name));
      throw this.#writeError(e, seq, size);
    }
    this.#head = head;
    if (this.#seal !== null) eraseFrontier(this.#seal, nextSeal);
    this.#seal = nextSeal;
    this.#entries.push({ seq, size });
    this.#bytes += size;
  }

  chainHead(): ChainHead {
    return this.#head;
  }

  /**
   * The seal key of batch `seq` (the next one: chainHead().seq + 1, or later), or null for a client
   * from before sealing. The key stays usable until append() stores a batch of that seq.
   */
  sealKeyFor(seq: number): Buffer | null {
    return this.#seal === null ? null : sealKeyAt(this.#seal, seq).key;
  }

  /** Whether this spool seals its batches. */
  seals(): boolean {
    return this.#seal !== null;
  }

  /**
   * Starts sealing from the next batch on with the keys grown from `seed` (enrollment). The seed
   * itself is not kept: only the keys for chainHead().seq + 1 and later are written.
   */
  startSealing(seed: Buffer): void {
    if (this.#seal !== null) {
      throw new PofrError(
        'POFR_USAGE',
        `spool ${this.dir} already seals its batches; its keys cannot be replaced`,
      );
    }
    const seal = frontierFromSeed(seed, this.#head.seq + 1);
    writeHead(this.dir, { ...this.#head, seal });
    this.#seal = seal;
  }

  /** A full file system is a full spool (the caller accounts for the loss); other errors stay as they are. */
  #writeError(e: unknown, seq: number, size: number): unknown {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') return e;
    return new PofrError(
      'POFR_SPOOL_FULL',
      `spool ${this.dir}: the file system is full (${code}) writing batch ${seq} (${size} bytes) while ${this.#entries.length} batches (${this.#bytes} bytes) wait for the server; free space there or lower --spool-max; until then what cannot be spooled is counted in a gap record`,
      { seq, size, sizeBytes: this.#bytes, maxBytes: this.maxBytes },
    );
  }

  /** Batches waiting for an ACK, oldest first. */
  pending(): readonly SpooledBatch[] {
    return this.#entries.map(({ seq, size }) => {
      const path = join(this.dir, batchName(seq));
      return Object.freeze({ seq, size, read: () => readFileSync(path) });
    });
  }

  /** The server committed this batch: forget it. Idempotent. */
  ack(seq: number): void {
    const i = this.#entries.findIndex((e) => e.seq === seq);
    if (i < 0) return;
    try {
      unlinkSync(join(this.dir, batchName(seq)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    // No directory fsync: if the unlink is lost in a crash, the batch is sent again and the
    // server acknowledges it as a duplicate.
    this.#bytes -= this.#entries[i].size;
    this.#entries.splice(i, 1);
  }

  /** The server refused this batch for good: move it aside so it never blocks the queue. Idempotent. */
  quarantine(seq: number, reason: string): void {
    const i = this.#entries.findIndex((e) => e.seq === seq);
    if (i < 0) return;
    this.#moveToRejected(batchName(seq), reason);
    this.#bytes -= this.#entries[i].size;
    this.#entries.splice(i, 1);
  }

  depth(): number {
    return this.#entries.length;
  }

  sizeBytes(): number {
    return this.#bytes;
  }

  /** What open() found and repaired (corrupt batch files moved to rejected/, a lost head). */
  warnings(): readonly string[] {
    return this.#warnings;
  }

  #recover(): void {
    const found: { seq: number; size: number; hash: string }[] = [];
    let corrupt = 0;
    for (const name of readdirSync(this.dir)) {
      if (name.endsWith('.tmp')) {
        // A write that never reached its rename: the append did not return, nothing relied on it.
        unlinkSync(join(this.dir, name));
        continue;
      }
      const m = BATCH_NAME.exec(name);
      if (!m) continue;
      const seq = Number(m[1]);
      try {
        const bytes = readFileSync(join(this.dir, name));
        const frame = readBatchFrame(bytes);
        if (frame.header.seq !== seq) {
          throw new Error(`its header says seq ${frame.header.seq}, its name says ${seq}`);
        }
        found.push({ seq, size: bytes.length, hash: frame.hash });
      } catch (e) {
        const reason = `unreadable on spool open: ${(e as Error).message}`;
        this.#moveToRejected(name, reason);
        corrupt++;
        this.#warnings.push(`${join(this.dir, name)}: ${reason}; moved to ${REJECTED_DIR}/`);
      }
    }
    found.sort((a, b) => a.seq - b.seq);

    let head: StoredHead | null = null;
    let headLost = false;
    try {
      head = parseHead(readFileSync(join(this.dir, HEAD_FILE), 'utf8'));
    } catch (e) {
      headLost = (e as NodeJS.ErrnoException).code !== 'ENOENT' || found.length + corrupt > 0;
      if (headLost) this.#warnings.push(`${join(this.dir, HEAD_FILE)}: ${(e as Error).message}`);
    }
    const last = found.at(-1);
    if (last && (head === null || last.seq > head.seq)) {
      // Crash between the batch file and the head file: the batch file is the truth. Its seal
      // key is still in the old head; it goes now.
      const seal = head?.seal ? sealKeyAt(head.seal, last.seq).rest : null;
      if (head?.seal) eraseFrontier(head.seal, seal);
      head = { seq: last.seq, hash: last.hash, seal };
      writeHead(this.dir, head);
    } else if (head === null && headLost) {
      this.#warnings.push(
        `chain head lost and no batch left to rebuild it from: restarting the chain at seq 1, the server will see a fork`,
      );
    }
    if (headLost) {
      this.#warnings.push(
        'the seal keys were kept with the lost chain head: if this client sealed its batches, the server refuses what it sends from now on (POFR_BATCH_SEAL); deregister and enroll it again',
      );
    }
    this.#head = head ? { seq: head.seq, hash: head.hash } : { seq: 0, hash: GENESIS_HASH };
    this.#seal = head?.seal ?? null;
    for (const f of found) {
      this.#entries.push({ seq: f.seq, size: f.size });
      this.#bytes += f.size;
    }
  }

  #moveToRejected(name: string, reason: string): void {
    const rejected = join(this.dir, REJECTED_DIR);
    mkdirSync(rejected, { recursive: true, mode: 0o700 });
    writeFileSync(join(rejected, `${name}.reason.txt`), `${new Date().toISOString()} ${reason}\n`, {
      mode: 0o600,
    });
    try {
      renameSync(join(this.dir, name), join(rejected, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    fsyncDir(rejected);
    fsyncDir(this.dir);
  }
}

function batchName(seq: number): string {
  return `${String(seq).padStart(20, '0')}${BATCH_SUFFIX}`;
}

function writeHead(dir: string, head: StoredHead): void {
  const stored = {
    seq: head.seq,
    hash: head.hash,
    ...(head.seal ? { seal: encodeFrontier(head.seal) } : {}),
  };
  writeDurably(dir, HEAD_FILE, Buffer.from(`${JSON.stringify(stored)}\n`, 'utf8'));
}

function parseHead(text: string): StoredHead {
  const raw = JSON.parse(text) as unknown;
  if (
    raw === null ||
    typeof raw !== 'object' ||
    !('seq' in raw) ||
    !('hash' in raw) ||
    !Number.isSafeInteger(raw.seq) ||
    (raw.seq as number) < 0 ||
    typeof raw.hash !== 'string' ||
    !HEX64.test(raw.hash)
  ) {
    // Not the text itself: past its first bytes a head file holds seal keys, which no log should.
    throw new Error(`not a chain head (${text.length} bytes)`);
  }
  const seal = 'seal' in raw && raw.seal !== undefined ? decodeFrontier(raw.seal) : null;
  return { seq: raw.seq as number, hash: raw.hash, seal };
}

/** write tmp → fsync → rename → fsync dir: after it returns, `name` holds `data` even after power loss. */
function writeDurably(dir: string, name: string, data: Buffer): void {
  const tmp = join(dir, `${name}.tmp`);
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(dir, name));
  } catch (e) {
    // A half-written tmp file would hold on to the space a full disk is short of.
    removeQuietly(tmp);
    throw e;
  }
  fsyncDir(dir);
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone, or the error that brought us here is the one worth reporting
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
