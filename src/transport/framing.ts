import { PofrError } from '../errors.js';
import { LIMITS } from '../protocol/index.js';

/** The largest frame either side accepts: one batch plus room for its envelope. */
export const MAX_FRAME_BYTES = LIMITS.maxBatchBytes + 64 * 1024;

/** u32be length, then the bytes. */
export function encodeFrame(payload: Uint8Array): Buffer {
  if (payload.length > MAX_FRAME_BYTES) {
    throw new PofrError(
      'POFR_BATCH_TOO_LARGE',
      `frame of ${payload.length} bytes exceeds ${MAX_FRAME_BYTES}`,
    );
  }
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  return Buffer.concat([len, payload]);
}

/**
 * Splits a byte stream into length-prefixed frames. Chunks are kept as a list and joined once per
 * frame, so a large frame arriving in many small SSH packets costs one copy, not one per packet.
 * An oversize length is refused as soon as its 4 bytes arrive, before anything is buffered for it.
 *
 * @example
 * const dec = new FrameDecoder();
 * stream.on('data', (chunk) => { for (const frame of dec.push(chunk)) handle(frame); });
 */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #need = -1;

  constructor(maxFrameBytes = MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received that do not yet make a whole frame. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): Buffer[] {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    const frames: Buffer[] = [];
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < 4) break;
        const len = this.#take(4).readUInt32BE(0);
        if (len > this.maxFrameBytes) {
          throw new PofrError(
            'POFR_BATCH_TOO_LARGE',
            `peer announced a frame of ${len} bytes, over the ${this.maxFrameBytes}-byte limit`,
          );
        }
        this.#need = len;
      }
      if (this.#buffered < this.#need) break;
      frames.push(this.#take(this.#need));
      this.#need = -1;
    }
    return frames;
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks, this.#buffered);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return out;
  }
}
