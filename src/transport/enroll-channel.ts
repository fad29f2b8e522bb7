import { isPofrError } from '../errors.js';
import type { ByteChannel } from './byte-channel.js';
import { encodeFrame, FrameDecoder } from './framing.js';
import {
  type EnrollReply,
  type EnrollRequest,
  enrollReplySchema,
  enrollRequestSchema,
  parseMessage,
} from './messages.js';
import type { PeerContext, TransportLog } from './peer.js';
import { channelRefusal, type RefusalSink } from './refusals.js';

const ENROLL_MAX_FRAME_BYTES = 64 * 1024;
/** An enrollment is one small frame: a client that has not sent it by then is holding a slot. */
const ENROLL_REQUEST_TIMEOUT_MS = 60_000;

/** The client key that authenticated a connection. */
export interface AuthKey {
  readonly algo: string;
  readonly blob: Buffer;
  /** "ssh-ed25519 AAAA…" (no comment): the form to store and compare. */
  readonly openssh: string;
  readonly fingerprint: string;
}

export interface EnrollChannelOptions {
  readonly peer: PeerContext;
  readonly key: AuthKey;
  /** Registers a client. A thrown PofrError is sent to the client as `{ ok: false, code, message }`. */
  readonly enroll: (req: EnrollRequest, ctx: { remote: string; key: AuthKey }) => Promise<EnrollReply>;
  readonly refused?: RefusalSink;
  readonly log: TransportLog;
  readonly track?: <T>(p: Promise<T>) => Promise<T>;
}

/** The enrollment protocol on one channel: one request frame in, one reply frame out, then exit. */
export function serveEnrollChannel(channel: ByteChannel, opts: EnrollChannelOptions): void {
  const { peer, key, log } = opts;
  const track = opts.track ?? (<T>(p: Promise<T>) => p);
  const decoder = new FrameDecoder(ENROLL_MAX_FRAME_BYTES);
  let started = false;
  const timer = setTimeout(() => {
    if (started) return;
    started = true;
    channel.finish(1, `no enrollment request within ${ENROLL_REQUEST_TIMEOUT_MS} ms`);
  }, ENROLL_REQUEST_TIMEOUT_MS);
  timer.unref();
  const refuse = (kind: 'frame_malformed' | 'frame_too_large', reason: string, code?: string) =>
    opts.refused?.(channelRefusal({ ...peer, fingerprint: key.fingerprint }, kind, reason, { code }));

  channel.onError((e) => log('ssh enroll channel error', { remote: peer.remote, error: e.message }));
  channel.onClose(() => clearTimeout(timer));
  channel.onData((chunk) => {
    if (started) return;
    let frames: Buffer[];
    try {
      frames = decoder.push(chunk);
    } catch (e) {
      started = true;
      const code = isPofrError(e) ? e.code : undefined;
      refuse(
        code === 'POFR_BATCH_TOO_LARGE' ? 'frame_too_large' : 'frame_malformed',
        (e as Error).message,
        code,
      );
      reply({ ok: false, code: 'POFR_ENROLL_FAILED', message: (e as Error).message });
      return;
    }
    if (frames.length === 0) return;
    started = true;
    void track(answer(frames[0])).then(reply);
  });

  async function answer(frame: Buffer): Promise<EnrollReply> {
    let req: EnrollRequest;
    try {
      req = parseMessage(enrollRequestSchema, frame, 'enrollment request');
    } catch (e) {
      refuse('frame_malformed', (e as Error).message);
      return { ok: false, code: 'POFR_ENROLL_FAILED', message: (e as Error).message };
    }
    try {
      const result = enrollReplySchema.parse(await opts.enroll(req, { remote: peer.remote, key }));
      log('ssh enrollment', {
        remote: peer.remote,
        name: req.name,
        fingerprint: key.fingerprint,
        ok: result.ok,
      });
      return result;
    } catch (e) {
      if (isPofrError(e)) {
        log('ssh enrollment refused', {
          remote: peer.remote,
          name: req.name,
          code: e.code,
          reason: e.message,
        });
        return { ok: false, code: e.code, message: e.message };
      }
      log('ssh enrollment failed', {
        remote: peer.remote,
        name: req.name,
        error: (e as Error).stack ?? String(e),
      });
      return {
        ok: false,
        code: 'POFR_ENROLL_FAILED',
        message: 'the server failed while enrolling; see its log',
      };
    }
  }

  function reply(r: EnrollReply): void {
    clearTimeout(timer);
    if (channel.finished) return;
    channel.write(encodeFrame(Buffer.from(JSON.stringify(r), 'utf8')));
    channel.finish(0);
  }
}
