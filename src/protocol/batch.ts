import { createHash, type KeyObject, sign, verify } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { PofrError } from '../errors.js';
import { LIMITS } from './limits.js';
import { type RecordTexts, textsOf } from './record-texts.js';
import { type PofrRecord, recordSchema } from './records.js';
import { computeSeal, SEAL_BYTES, SEAL_SCHEME, sealMatches } from './seal.js';

/**
 * Batch framing (docs/protocol.md):
 *
 *   magic "POFRBAT1" | u32be header length | header JSON | u32be payload length | payload | u16be
 *   signature length | ed25519 signature [| u16be seal length | seal]
 *
 * The signature covers every byte before the signature length; the batch hash (the chain link the
 * next batch names as prev_hash) is the sha256 of those same bytes. The header is signed as the exact
 * bytes sent, so no canonical JSON is needed. Version 2 adds the forward-secure seal after the
 * signature (its header says `"seal": "fss1"`, signed, so a seal cannot be stripped unnoticed);
 * version 1, from clients before sealing, has none.
 */
export const PROTOCOL_VERSION = 4;
/** Sealed batches of clients from before `process_exec_delta` records: still read and verified. */
export const FORK_PROTOCOL_VERSION = 3;
/** Sealed batches of clients from before `process_fork` records: still read and verified. */
export const SEALED_PROTOCOL_VERSION = 2;
/** Unsealed batches of clients from before sealing: still read and verified. */
export const UNSEALED_PROTOCOL_VERSION = 1;
/**
 * Every batch version this build reads. Version 3 adds the `process_fork` record to version 2,
 * version 4 the `process_exec_delta` record to version 3.
 */
export const READ_PROTOCOL_VERSIONS: readonly number[] = [
  UNSEALED_PROTOCOL_VERSION,
  SEALED_PROTOCOL_VERSION,
  FORK_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
];
export const MAGIC = Buffer.from('POFRBAT1', 'ascii');
export const GENESIS_HASH = '0'.repeat(64);
export const PAYLOAD_ENCODING = 'gzip+jsonl';
const GZIP_LEVEL = 4;

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const micros = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const batchHeaderSchema = z
  .object({
    v: z.union([
      z.literal(UNSEALED_PROTOCOL_VERSION),
      z.literal(SEALED_PROTOCOL_VERSION),
      z.literal(FORK_PROTOCOL_VERSION),
      z.literal(PROTOCOL_VERSION),
    ]),
    host_id: z.string().min(1).max(64),
    boot_id: z.string().min(1).max(64),
    seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    t_from: micros,
    t_to: micros,
    prev_hash: hex64,
    payload_sha256: hex64,
    payload_encoding: z.literal(PAYLOAD_ENCODING),
    payload_bytes: z.number().int().min(0).max(LIMITS.maxPayloadBytes),
    record_count: z.number().int().min(1).max(LIMITS.maxRecords),
    seal: z.literal(SEAL_SCHEME).optional(),
  })
  .strict()
  .refine((h) => (h.v !== UNSEALED_PROTOCOL_VERSION) === (h.seal !== undefined), {
    message: `versions ${SEALED_PROTOCOL_VERSION} to ${PROTOCOL_VERSION} batches are sealed ("seal": "${SEAL_SCHEME}"), version ${UNSEALED_PROTOCOL_VERSION} ones are not`,
  });

export type BatchHeader = Readonly<z.infer<typeof batchHeaderSchema>>;

/** A batch as the recorder seals it and the spool keeps it. */
export interface SealedBatch {
  readonly bytes: Buffer;
  readonly header: BatchHeader;
  /** sha256 (hex) of the signed bytes: the chain link. */
  readonly hash: string;
}

/** The parts of a framed batch, split but not yet trusted. */
export interface BatchFrame {
  readonly header: BatchHeader;
  readonly hash: string;
  readonly signed: Buffer;
  readonly payload: Buffer;
  readonly signature: Buffer;
  /** The forward-secure seal; null for a version 1 (unsealed) batch. */
  readonly seal: Buffer | null;
}

export interface SealInput {
  readonly host_id: string;
  readonly boot_id: string;
  readonly seq: number;
  readonly prev_hash: string;
  readonly records: readonly PofrRecord[];
  /** A sealed batch's version: PROTOCOL_VERSION unless an older client's batch is wanted (compatibility tests). */
  readonly version?: typeof SEALED_PROTOCOL_VERSION | typeof FORK_PROTOCOL_VERSION | typeof PROTOCOL_VERSION;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Compresses, hashes and signs records into one framed batch, and seals it with `sealKey`, the
 * forward-secure key of its sequence number (seal.ts sealKeyAt). Without a seal key the batch is a
 * version 1 batch, as clients from before sealing made them.
 *
 * @example
 * const { key } = sealKeyAt(frontier, 1);
 * const b = sealBatch({ host_id, boot_id, seq: 1, prev_hash: GENESIS_HASH, records }, signingKey, key);
 * // next: sealBatch({ ..., seq: 2, prev_hash: b.hash, ... }, signingKey, sealKeyAt(rest, 2).key)
 */
export function sealBatch(input: SealInput, signingKey: KeyObject, sealKey?: Buffer | null): SealedBatch {
  if (input.records.length === 0) throw new Error('sealBatch: a batch needs at least one record');
  const { records, ...ids } = input;
  return sealTexts({ ...ids, texts: textsOf(records) }, signingKey, sealKey);
}

/** A batch to seal from records already serialised (record-texts.ts): what the recorder seals. */
export interface SealTextsInput extends Omit<SealInput, 'records'> {
  readonly texts: RecordTexts;
}

/** sealBatch, for records the caller serialised already (the recorder keeps its unsealed records as text). */
export function sealTexts(
  input: SealTextsInput,
  signingKey: KeyObject,
  sealKey?: Buffer | null,
): SealedBatch {
  const { texts } = input;
  if (texts.count === 0) throw new Error('sealTexts: a batch needs at least one record');
  const jsonl = texts.jsonl;
  // Level 4 compresses a recorder's JSON Lines as well as the default 6 here, in two thirds of the
  // time (bench/exec-capture: gzip was a tenth of the recorder's CPU under an exec storm).
  const payload = gzipSync(jsonl, { level: GZIP_LEVEL });
  const tFrom = texts.tFrom;
  const tTo = texts.tTo;
  const sealed = sealKey !== undefined && sealKey !== null;
  const header: BatchHeader = Object.freeze({
    v: sealed ? (input.version ?? PROTOCOL_VERSION) : UNSEALED_PROTOCOL_VERSION,
    host_id: input.host_id,
    boot_id: input.boot_id,
    seq: input.seq,
    t_from: tFrom,
    t_to: tTo,
    prev_hash: input.prev_hash,
    payload_sha256: sha256Hex(payload),
    payload_encoding: PAYLOAD_ENCODING,
    payload_bytes: jsonl.length,
    record_count: texts.count,
    ...(sealed ? { seal: SEAL_SCHEME } : {}),
  });
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const signed = Buffer.concat([MAGIC, u32(headerBytes.length), headerBytes, u32(payload.length), payload]);
  const signature = sign(null, signed, signingKey);
  const parts = [signed, u16(signature.length), signature];
  if (sealed) {
    const seal = computeSeal(sealKey, signed);
    parts.push(u16(seal.length), seal);
  }
  return Object.freeze({
    bytes: Buffer.concat(parts),
    header,
    hash: sha256Hex(signed),
  });
}

/** Splits a framed batch and validates its header, without trusting it yet. */
export function readBatchFrame(bytes: Uint8Array): BatchFrame {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  if (buf.length > LIMITS.maxBatchBytes) {
    throw new PofrError(
      'POFR_BATCH_TOO_LARGE',
      `batch is ${buf.length} bytes, over the ${LIMITS.maxBatchBytes} limit`,
    );
  }
  if (buf.length < MAGIC.length + 4 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw malformed('does not start with the POFRBAT1 magic');
  }
  let off = MAGIC.length;
  const headerLen = buf.readUInt32BE(off);
  off += 4;
  if (headerLen > LIMITS.maxHeaderBytes) {
    throw new PofrError(
      'POFR_BATCH_TOO_LARGE',
      `batch header is ${headerLen} bytes, over ${LIMITS.maxHeaderBytes}`,
    );
  }
  if (off + headerLen + 4 > buf.length) throw malformed('header length runs past the end of the batch');
  const headerBytes = buf.subarray(off, off + headerLen);
  off += headerLen;
  const payloadLen = buf.readUInt32BE(off);
  off += 4;
  if (off + payloadLen + 2 > buf.length) throw malformed('payload length runs past the end of the batch');
  const payload = buf.subarray(off, off + payloadLen);
  off += payloadLen;
  const signed = buf.subarray(0, off);
  const sigLen = buf.readUInt16BE(off);
  off += 2;
  if (sigLen !== 64 || off + sigLen > buf.length) {
    throw malformed(`signature is ${buf.length - off} bytes (declared ${sigLen}); ed25519 signatures are 64`);
  }
  const signature = buf.subarray(off, off + sigLen);
  off += sigLen;
  let raw: unknown;
  try {
    raw = JSON.parse(headerBytes.toString('utf8'));
  } catch (e) {
    throw malformed(`header is not JSON: ${(e as Error).message}`);
  }
  if (
    raw !== null &&
    typeof raw === 'object' &&
    'v' in raw &&
    !READ_PROTOCOL_VERSIONS.includes(raw.v as number)
  ) {
    throw new PofrError(
      'POFR_BATCH_VERSION',
      `batch protocol version ${String(raw.v)} is none of ${READ_PROTOCOL_VERSIONS.join(', ')}: a newer pofr made it; upgrade this one`,
    );
  }
  const parsed = batchHeaderSchema.safeParse(raw);
  if (!parsed.success) throw malformed(`header: ${formatIssues(parsed.error)}`);
  let seal: Buffer | null = null;
  if (parsed.data.seal !== undefined) {
    const sealLen = off + 2 <= buf.length ? buf.readUInt16BE(off) : -1;
    if (sealLen !== SEAL_BYTES || off + 2 + sealLen !== buf.length) {
      throw malformed(
        `the header says sealed, but the seal is ${Math.max(0, buf.length - off - 2)} bytes, not ${SEAL_BYTES}`,
      );
    }
    seal = buf.subarray(off + 2);
  } else if (off !== buf.length) {
    throw malformed(`${buf.length - off} bytes after the signature of an unsealed batch`);
  }
  return { header: Object.freeze(parsed.data), hash: sha256Hex(signed), signed, payload, signature, seal };
}

/**
 * Checks the forward-secure seal with the host's seal seed (null: a host enrolled before sealing,
 * whose batches carry no seal that can be checked). A host that seals must seal every batch: an
 * unsealed one is refused, so a seal cannot be avoided by sending version 1. Throws POFR_BATCH_SEAL.
 */
export function verifyBatchSeal(frame: BatchFrame, sealSeed: Buffer | null): void {
  if (sealSeed === null) return;
  const { host_id, seq } = frame.header;
  if (frame.seal === null) {
    throw new PofrError(
      'POFR_BATCH_SEAL',
      `batch ${host_id}#${seq} is not sealed, but host ${host_id} enrolled with a seal seed: every batch of it must be sealed`,
    );
  }
  if (!sealMatches(sealSeed, seq, frame.signed, frame.seal)) {
    throw new PofrError(
      'POFR_BATCH_SEAL',
      `batch ${host_id}#${seq}: the seal does not verify with the key of sequence number ${seq}; the batch was made or changed after the recorder sealed ${seq} and erased its key (its signature may still verify: whoever made it holds the signing key)`,
    );
  }
}

/** Checks the signature and the payload hash; throws POFR_BATCH_SIGNATURE or POFR_BATCH_PAYLOAD_HASH. */
export function verifyBatchFrame(frame: BatchFrame, publicKey: KeyObject): void {
  if (!verify(null, frame.signed, publicKey, frame.signature)) {
    throw new PofrError(
      'POFR_BATCH_SIGNATURE',
      `batch ${frame.header.host_id}#${frame.header.seq}: signature does not verify with the host's registered key`,
    );
  }
  const actual = sha256Hex(frame.payload);
  if (actual !== frame.header.payload_sha256) {
    throw new PofrError(
      'POFR_BATCH_PAYLOAD_HASH',
      `batch ${frame.header.host_id}#${frame.header.seq}: payload sha256 ${actual} differs from the envelope's ${frame.header.payload_sha256}`,
    );
  }
}

/** Decompresses and validates every record; the error names the first bad record's index. */
export function decodeRecords(frame: BatchFrame): readonly PofrRecord[] {
  let jsonl: Buffer;
  try {
    jsonl = gunzipSync(frame.payload, { maxOutputLength: LIMITS.maxPayloadBytes });
  } catch (e) {
    throw malformed(
      `payload does not decompress within ${LIMITS.maxPayloadBytes} bytes: ${(e as Error).message}`,
    );
  }
  if (jsonl.length !== frame.header.payload_bytes) {
    throw malformed(
      `payload is ${jsonl.length} bytes decompressed, envelope says ${frame.header.payload_bytes}`,
    );
  }
  const lines = jsonl.toString('utf8').split('\n');
  if (lines.length !== frame.header.record_count) {
    throw malformed(`payload holds ${lines.length} records, envelope says ${frame.header.record_count}`);
  }
  const records: PofrRecord[] = new Array(lines.length);
  for (let i = 0; i < lines.length; i++) {
    let raw: unknown;
    try {
      raw = JSON.parse(lines[i]);
    } catch (e) {
      throw malformed(`record ${i} is not JSON: ${(e as Error).message}`);
    }
    const parsed = recordSchema.safeParse(raw);
    if (!parsed.success) throw malformed(`record ${i}: ${formatIssues(parsed.error)}`);
    records[i] = parsed.data;
  }
  return Object.freeze(records);
}

export interface OpenedBatch {
  readonly header: BatchHeader;
  readonly hash: string;
  readonly records: readonly PofrRecord[];
}

/** Frame, signature, payload hash, records: everything a batch can prove about itself. */
export function openBatch(bytes: Uint8Array, publicKey: KeyObject): OpenedBatch {
  const frame = readBatchFrame(bytes);
  verifyBatchFrame(frame, publicKey);
  return Object.freeze({ header: frame.header, hash: frame.hash, records: decodeRecords(frame) });
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function malformed(why: string): PofrError {
  return new PofrError('POFR_BATCH_MALFORMED', `malformed batch: ${why}`);
}

function formatIssues(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    .join('; ');
}
