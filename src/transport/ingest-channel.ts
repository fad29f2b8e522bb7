import { isPofrError } from '../errors.js';
import type { ByteChannel } from './byte-channel.js';
import { encodeFrame, FrameDecoder } from './framing.js';
import { type BatchAck, batchAckSchema } from './messages.js';
import type { PeerContext, TransportLog } from './peer.js';
import { channelRefusal, type RefusalSink, type TransportRefusalKind } from './refusals.js';

export interface IngestChannelLimits {
  /** Frames waiting for the store before the channel stops reading (one always may wait). */
  readonly maxQueuedFrames: number;
  /** Bytes of waiting frames before the channel stops reading (one frame always may wait). */
  readonly maxQueuedBytes: number;
  /** A frame begun and not continued for this long is dropped with its connection's channel. */
  readonly stallMs: number;
}

export const DEFAULT_INGEST_LIMITS: IngestChannelLimits = Object.freeze({
  maxQueuedFrames: 16,
  maxQueuedBytes: 48 * 1024 * 1024,
  stallMs: 120_000,
});

export interface IngestChannelOptions {
  readonly principal: string;
  readonly peer: PeerContext;
  /**
   * Stores one batch and resolves with its ACK once it is durable. A rejection is a transient
   * server fault: the channel is closed unacknowledged and the client sends the batch again later.
   */
  readonly ingest: (principal: string, batch: Buffer, peer: PeerContext) => Promise<BatchAck>;
  readonly refused?: RefusalSink;
  readonly log: TransportLog;
  /** Registers a handler call, so a closing server can wait for it. */
  readonly track?: <T>(p: Promise<T>) => Promise<T>;
  readonly limits?: Partial<IngestChannelLimits>;
}

export interface IngestChannelHandle {
  /** Ends the channel now (revocation, shutdown); batches queued and not stored are not ACKed. */
  cut(status: number, message: string): void;
}

/**
 * The ingest protocol on one channel: frames in, one JSON ACK frame out per batch, in order, each
 * only after the handler stored the batch. Reading pauses while too much waits for the store, so a
 * client sending faster than the store commits waits in SSH flow control instead of in memory.
 */
export function serveIngestChannel(channel: ByteChannel, opts: IngestChannelOptions): IngestChannelHandle {
  const limits = { ...DEFAULT_INGEST_LIMITS, ...opts.limits };
  const { principal, peer, log } = opts;
  const track = opts.track ?? (<T>(p: Promise<T>) => p);
  const decoder = new FrameDecoder();
  const queue: Buffer[] = [];
  let queuedBytes = 0;
  let busy = false;
  let closed = false;
  let eof = false;
  let paused = false;
  const stall = setTimeout(onStall, limits.stallMs);
  stall.unref();

  const refuse = (kind: TransportRefusalKind, reason: string, code?: string) =>
    opts.refused?.(channelRefusal(peer, kind, reason, { code, hostId: principal }));

  channel.onError((e) =>
    log('ssh ingest channel error', { remote: peer.remote, principal, error: e.message }),
  );
  channel.onClose(() => stop());
  channel.onEnd(() => {
    eof = true;
    void drain();
  });
  channel.onData((chunk) => {
    if (closed) return;
    let frames: Buffer[];
    try {
      frames = decoder.push(chunk);
    } catch (e) {
      const code = isPofrError(e) ? e.code : undefined;
      const reason = `protocol error: ${(e as Error).message}`;
      refuse(code === 'POFR_BATCH_TOO_LARGE' ? 'frame_too_large' : 'frame_malformed', reason, code);
      abort(reason);
      return;
    }
    for (const frame of frames) {
      queue.push(frame);
      queuedBytes += frame.length;
    }
    // Only a frame in progress can stall; a channel between frames may idle as long as it likes.
    if (decoder.buffered > 0) stall.refresh();
    if (!paused && (queue.length >= limits.maxQueuedFrames || queuedBytes >= limits.maxQueuedBytes)) {
      paused = true;
      channel.pause();
    }
    void drain();
  });

  // One batch at a time, in arrival order: batch N+1 links to N, and its ACK must follow N's.
  async function drain(): Promise<void> {
    if (busy) return;
    busy = true;
    try {
      while (queue.length > 0 && !closed) {
        const frame = queue.shift()!;
        queuedBytes -= frame.length;
        if (paused && queue.length < limits.maxQueuedFrames / 2 && queuedBytes < limits.maxQueuedBytes / 2) {
          paused = false;
          channel.resume();
        }
        let ack: BatchAck;
        try {
          ack = batchAckSchema.parse(await track(opts.ingest(principal, frame, peer)));
        } catch (e) {
          log('ssh ingest failed; closing the channel unacknowledged so the client retries', {
            remote: peer.remote,
            principal,
            error: (e as Error).stack ?? String(e),
          });
          abort('transient server error; the batch was not stored, retry later');
          return;
        }
        if (closed) return;
        if (ack.status === 'refused') {
          log('ssh batch refused', {
            remote: peer.remote,
            principal,
            seq: ack.seq,
            code: ack.code,
            reason: ack.reason,
          });
        }
        channel.write(encodeFrame(Buffer.from(JSON.stringify(ack), 'utf8')));
      }
      if (eof && !closed && queue.length === 0) {
        stop();
        channel.finish(0);
      }
    } finally {
      busy = false;
    }
  }

  function onStall(): void {
    if (closed) return;
    if (decoder.buffered === 0) {
      stall.refresh();
      return;
    }
    const reason = `a frame stalled: ${decoder.buffered} bytes of it arrived, then nothing for ${limits.stallMs} ms`;
    refuse('frame_stalled', reason);
    abort(reason);
  }

  function stop(): void {
    closed = true;
    queue.length = 0;
    queuedBytes = 0;
    clearTimeout(stall);
  }

  function abort(why: string): void {
    if (closed) return;
    stop();
    channel.finish(1, why);
  }

  return {
    cut(status, message) {
      if (closed) return;
      stop();
      channel.finish(status, message);
    },
  };
}
