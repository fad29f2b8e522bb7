import type { Client, ClientChannel } from 'ssh2';
import ssh2 from 'ssh2';
import { isPofrError, PofrError } from '../errors.js';
import { PROTOCOL_VERSION } from '../protocol/index.js';
import { encodeFrame, FrameDecoder } from './framing.js';
import {
  type BatchAck,
  batchAckSchema,
  CLIENT_VERSION_ENV,
  ENROLL_COMMAND,
  ENROLL_USER,
  type EnrollReply,
  type EnrollRequest,
  enrollReplySchema,
  enrollRequestSchema,
  INGEST_COMMAND,
  PROTOCOL_ENV,
  parseMessage,
} from './messages.js';
import { normalizeFingerprint, sshFingerprint } from './ssh-keys.js';
import type { TransportLog } from './ssh-server.js';

/** What the uploader needs from the spool (Spool satisfies it). */
export interface UploadQueue {
  pending(): readonly { seq: number; read(): Buffer }[];
  ack(seq: number): void;
  quarantine(seq: number, reason: string): void;
}

export interface EnrollOverSshOptions {
  readonly host: string;
  readonly port: number;
  readonly sshPrivateKey: string;
  /** The server fingerprint the operator gave (`--fingerprint`); a different key aborts. */
  readonly pinnedFingerprint?: string;
  /** Without a pinned fingerprint: asked once with the server's fingerprint (`--yes` answers true). */
  readonly confirmFingerprint?: (fingerprint: string) => Promise<boolean>;
  readonly request: EnrollRequest;
  /** pofr's version on this client, announced to the server (shown by `pofr server clients`). */
  readonly clientVersion?: string;
  /** The protocol announced; only tests say anything but this build's. */
  readonly protocol?: number;
  /** For each network step (connect, reply); default 30 s. A confirmation prompt is not timed. */
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const ACK_MAX_FRAME_BYTES = 64 * 1024;
const MAX_STDERR_CHARS = 2000;

/**
 * Registers this client with the server over SSH (user 'enroll', `exec pofr-enroll`). The server's
 * host key must match `pinnedFingerprint`, or be confirmed by `confirmFingerprint` before anything
 * is sent; the fingerprint returned is the one to pin for uploads.
 *
 * @example
 * const { reply, serverFingerprint } = await enrollOverSsh({ host, port, sshPrivateKey,
 *   pinnedFingerprint: 'SHA256:…', request: { method: 'token', token, name, signing_key, facts } });
 */
export async function enrollOverSsh(
  opts: EnrollOverSshOptions,
): Promise<{ reply: EnrollReply; serverFingerprint: string }> {
  const checked = enrollRequestSchema.safeParse(opts.request);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new PofrError(
      'POFR_USAGE',
      `enrollment request: ${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let pinned: string;
  if (opts.pinnedFingerprint !== undefined) {
    pinned = normalizeFingerprint(opts.pinnedFingerprint);
  } else if (opts.confirmFingerprint) {
    // Learn the key first and ask with no connection open, so a slow answer times nothing out; the
    // real connection then insists on the very key that was confirmed.
    const seen = await probeFingerprint(opts.host, opts.port, opts.sshPrivateKey, timeoutMs);
    if (!(await opts.confirmFingerprint(seen))) {
      throw new PofrError(
        'POFR_ENROLL_FAILED',
        `the server key ${seen} of ${opts.host}:${opts.port} was not confirmed; nothing was sent`,
      );
    }
    pinned = seen;
  } else {
    throw new PofrError(
      'POFR_USAGE',
      'enrollment needs the server fingerprint (`--fingerprint SHA256:…`, from `pofr server fingerprint`) or a confirmation',
    );
  }

  const client = new ssh2.Client();
  try {
    await connectSsh(client, {
      host: opts.host,
      port: opts.port,
      username: ENROLL_USER,
      privateKey: opts.sshPrivateKey,
      timeoutMs,
      checkHost: (fp) => (fp === pinned ? null : hostKeyChanged(pinned, fp)),
    });
    const channel = await openExec(client, ENROLL_COMMAND, opts, announceEnv(opts));
    channel.write(encodeFrame(Buffer.from(JSON.stringify(checked.data), 'utf8')));
    const frame = await readOneFrame(channel, timeoutMs, opts);
    const reply = parseMessage(enrollReplySchema, frame, 'enrollment reply');
    return { reply, serverFingerprint: pinned };
  } catch (e) {
    if (isPofrError(e)) throw e;
    throw new PofrError(
      'POFR_ENROLL_FAILED',
      `enrollment with ${opts.host}:${opts.port} failed: ${(e as Error).message}`,
    );
  } finally {
    client.end();
  }
}

export interface BatchUploaderOptions {
  readonly host: string;
  readonly port: number;
  /** The host id the server gave at enrollment. */
  readonly username: string;
  readonly sshPrivateKey: string;
  readonly pinnedFingerprint: string;
  readonly queue: UploadQueue;
  /** pofr's version on this client, announced to the server (shown by `pofr server clients`). */
  readonly clientVersion?: string;
  /** The protocol announced; only tests say anything but this build's. */
  readonly protocol?: number;
  readonly log?: TransportLog;
  /** Batches sent ahead of their ACKs; default 8. */
  readonly window?: number;
  /** Reconnect delay bounds; default 1 s … 60 s. */
  readonly backoff?: { readonly minMs: number; readonly maxMs: number };
  /** How often an idle connection looks at the queue without notify(); default 1 s. */
  readonly pollMs?: number;
  /** Bytes sent ahead of their ACKs (at least one batch always goes); default 16 MiB. */
  readonly windowBytes?: number;
}

export interface UploaderStatus {
  readonly connected: boolean;
  readonly lastAckAt: number | null;
  readonly lastError: string | null;
  readonly acked: number;
}

/**
 * Sends the spool's batches to the server, in order, over one SSH connection, and removes each
 * only when the server acknowledged it (accepted or duplicate). Any failure closes the connection
 * and retries with exponential backoff and jitter; nothing leaves the queue unacknowledged.
 *
 * @example
 * const up = new BatchUploader({ host, port, username: hostId, sshPrivateKey, pinnedFingerprint, queue: spool });
 * up.start();
 * spool.append(batch); up.notify();
 * await up.flush(10_000); await up.stop();
 */
export class BatchUploader {
  readonly #opts: BatchUploaderOptions;
  readonly #pinned: string;
  readonly #log: TransportLog;
  readonly #flushWaiters = new Set<() => void>();
  #running = false;
  #loop: Promise<void> | null = null;
  #client: Client | null = null;
  #wake: (() => void) | null = null;
  #failures = 0;
  #connected = false;
  #lastAckAt: number | null = null;
  #lastError: string | null = null;
  #acked = 0;

  constructor(opts: BatchUploaderOptions) {
    this.#opts = opts;
    this.#pinned = normalizeFingerprint(opts.pinnedFingerprint);
    this.#log = opts.log ?? (() => {});
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  notify(): void {
    this.#wake?.();
  }

  /** Resolves true once the queue is empty (every batch acknowledged or quarantined), false on timeout. */
  flush(timeoutMs: number): Promise<boolean> {
    this.notify();
    if (this.#opts.queue.pending().length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#flushWaiters.delete(check);
        resolve(ok);
      };
      const check = () => {
        if (this.#opts.queue.pending().length === 0) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#flushWaiters.add(check);
    });
  }

  /** Closes the connection; unacknowledged batches stay queued for the next start. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    this.#client?.destroy();
    await this.#loop;
    this.#loop = null;
  }

  status(): UploaderStatus {
    return {
      connected: this.#connected,
      lastAckAt: this.#lastAckAt,
      lastError: this.#lastError,
      acked: this.#acked,
    };
  }

  async #run(): Promise<void> {
    while (this.#running) {
      try {
        await this.#session();
      } catch (e) {
        if (!this.#running) break;
        this.#failures++;
        const delay = this.#backoffMs();
        const err = e as Error;
        this.#lastError = err.message;
        this.#log('upload connection failed; retrying', {
          code: isPofrError(err) ? err.code : undefined,
          error: err.message,
          retryInMs: delay,
        });
        await this.#sleep(delay);
      }
    }
  }

  async #session(): Promise<void> {
    const client = new ssh2.Client();
    this.#client = client;
    try {
      await connectSsh(client, {
        host: this.#opts.host,
        port: this.#opts.port,
        username: this.#opts.username,
        privateKey: this.#opts.sshPrivateKey,
        timeoutMs: DEFAULT_TIMEOUT_MS,
        checkHost: (fp) => (fp === this.#pinned ? null : hostKeyChanged(this.#pinned, fp)),
      });
      if (!this.#running) return;
      const channel = await openExec(client, INGEST_COMMAND, this.#opts, announceEnv(this.#opts));
      this.#connected = true;
      this.#log('upload connected', { host: this.#opts.host, port: this.#opts.port });
      await this.#pump(client, channel);
    } finally {
      this.#connected = false;
      this.#client = null;
      client.end();
    }
  }

  /** Streams pending batches (up to the window ahead) and applies ACKs until failure or stop(). */
  #pump(client: Client, channel: ClientChannel): Promise<void> {
    const queue = this.#opts.queue;
    const window = Math.max(1, this.#opts.window ?? 8);
    const windowBytes = this.#opts.windowBytes ?? 16 * 1024 * 1024;
    const pollMs = this.#opts.pollMs ?? 1000;
    return new Promise<void>((resolve, reject) => {
      const decoder = new FrameDecoder(ACK_MAX_FRAME_BYTES);
      const inflight: { seq: number; size: number }[] = [];
      let inflightBytes = 0;
      let lastSent = 0;
      let blocked = false;
      let finished = false;
      let stderr = '';

      const finish = (err: Error | null) => {
        if (finished) return;
        finished = true;
        clearInterval(poll);
        this.#wake = null;
        client.removeListener('close', onClientClose);
        channel.destroy();
        if (err && this.#running) reject(err);
        else resolve();
      };
      const fill = () => {
        if (finished || blocked || !this.#running) return;
        for (const item of queue.pending()) {
          if (item.seq <= lastSent) continue;
          if (inflight.length >= window || (inflight.length > 0 && inflightBytes >= windowBytes)) break;
          let bytes: Buffer;
          try {
            bytes = item.read();
          } catch (e) {
            this.#log('spooled batch unreadable; quarantined', {
              seq: item.seq,
              error: (e as Error).message,
            });
            queue.quarantine(item.seq, `unreadable in the spool: ${(e as Error).message}`);
            continue;
          }
          inflight.push({ seq: item.seq, size: bytes.length });
          inflightBytes += bytes.length;
          lastSent = item.seq;
          if (!channel.write(encodeFrame(bytes))) {
            blocked = true;
            break;
          }
        }
      };
      const onAck = (ack: BatchAck) => {
        const sent = inflight.shift();
        if (!sent) throw new Error(`server sent an ACK (seq ${ack.seq}) for no batch in flight`);
        if (ack.seq !== null && ack.seq !== sent.seq) {
          throw new Error(`server acknowledged seq ${ack.seq} where seq ${sent.seq} was next`);
        }
        inflightBytes -= sent.size;
        if (ack.status === 'refused') {
          const why = `${ack.code ?? 'refused'}: ${ack.reason ?? 'no reason given'}`;
          this.#log('BATCH REFUSED by the server; moved to the spool rejected/ folder', {
            seq: sent.seq,
            code: ack.code,
            reason: ack.reason,
          });
          queue.quarantine(sent.seq, why);
        } else {
          queue.ack(sent.seq);
          this.#acked++;
        }
        this.#lastAckAt = Date.now();
        this.#lastError = null;
        this.#failures = 0;
        for (const check of [...this.#flushWaiters]) check();
      };
      const onClientClose = () =>
        finish(new PofrError('POFR_TRANSPORT', `connection to ${this.#opts.host}:${this.#opts.port} closed`));

      channel.on('data', (chunk: Buffer) => {
        try {
          for (const frame of decoder.push(chunk)) onAck(parseMessage(batchAckSchema, frame, 'batch ACK'));
          fill();
        } catch (e) {
          finish(new PofrError('POFR_TRANSPORT', `ingest protocol error: ${(e as Error).message}`));
        }
      });
      channel.stderr.on('data', (chunk: Buffer) => {
        if (stderr.length < MAX_STDERR_CHARS) stderr += chunk.toString('utf8');
      });
      channel.on('drain', () => {
        blocked = false;
        fill();
      });
      channel.on('close', () => {
        const said = stderr.trim();
        finish(
          new PofrError(
            'POFR_TRANSPORT',
            `the server closed the ingest channel with ${inflight.length} batch(es) unacknowledged${said ? `: ${said}` : ''}`,
          ),
        );
      });
      client.on('close', onClientClose);
      const poll = setInterval(fill, pollMs);
      this.#wake = fill;
      fill();
    });
  }

  #backoffMs(): number {
    const { minMs, maxMs } = this.#opts.backoff ?? { minMs: 1000, maxMs: 60_000 };
    const exp = Math.min(maxMs, minMs * 2 ** Math.min(this.#failures - 1, 30));
    // Equal jitter: clients cut off by the same server outage do not all come back at once.
    return Math.round(exp / 2 + (Math.random() * exp) / 2);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, ms);
      // Only stop() cuts a backoff short; notify() during an outage must not turn it into a hot loop.
      this.#wake = () => {
        if (this.#running) return;
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
    });
  }
}

function hostKeyChanged(pinned: string, seen: string): PofrError {
  return new PofrError(
    'POFR_HOSTKEY_CHANGED',
    `server key changed from ${pinned} to ${seen}; if expected, re-pin with \`pofr client enroll --fingerprint ${seen}\``,
    { pinned, seen },
  );
}

interface ConnectOptions {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly privateKey: string;
  readonly timeoutMs: number;
  /** Returns the error to abort with, or null to go on; runs before anything is sent. */
  readonly checkHost: (fingerprint: string) => PofrError | null;
}

function connectSsh(client: Client, o: ConnectOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let hostError: PofrError | null = null;
    const cleanup = () => {
      client.removeListener('ready', onReady);
      client.removeListener('error', onError);
      client.removeListener('close', onClose);
    };
    const onReady = () => {
      cleanup();
      resolve();
    };
    const onError = (e: Error & { level?: string }) => {
      cleanup();
      client.destroy();
      reject(hostError ?? describeConnectError(e, o));
    };
    const onClose = () => {
      cleanup();
      reject(
        hostError ??
          new PofrError(
            'POFR_TRANSPORT',
            `connection to ${o.host}:${o.port} closed during the SSH handshake`,
          ),
      );
    };
    client.on('ready', onReady).on('error', onError).on('close', onClose);
    // ssh2 may report errors after the handshake too; the channel's close reports those to us.
    client.on('error', () => {});
    try {
      client.connect({
        host: o.host,
        port: o.port,
        username: o.username,
        privateKey: o.privateKey,
        readyTimeout: o.timeoutMs,
        keepaliveInterval: 15_000,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer) => {
          hostError = o.checkHost(sshFingerprint(key));
          return hostError === null;
        },
      });
    } catch (e) {
      cleanup();
      reject(new PofrError('POFR_TRANSPORT', `cannot use the client SSH key: ${(e as Error).message}`));
    }
  });
}

function describeConnectError(e: Error & { level?: string }, o: ConnectOptions): PofrError {
  const where = `${o.host}:${o.port}`;
  if (e.level === 'client-authentication') {
    const keyFp = clientKeyFingerprint(o.privateKey);
    const why =
      o.username === ENROLL_USER
        ? 'the server does not accept enrollment connections with this key'
        : `host id ${o.username} is unknown to the server, waiting for approval, or its key was revoked; see \`pofr server clients\` on the server`;
    return new PofrError('POFR_TRANSPORT', `server ${where} refused this client's SSH key ${keyFp}: ${why}`, {
      reason: 'auth',
    });
  }
  if (e.level === 'client-timeout') {
    return new PofrError('POFR_TRANSPORT', `no SSH handshake with ${where} within ${o.timeoutMs} ms`, {
      reason: 'timeout',
    });
  }
  return new PofrError('POFR_TRANSPORT', `cannot connect to ${where}: ${e.message}`, { reason: 'network' });
}

function clientKeyFingerprint(privateKey: string): string {
  const parsed = ssh2.utils.parseKey(privateKey);
  return parsed instanceof Error ? '(unparseable key)' : sshFingerprint(parsed.getPublicSSH());
}

/** Connects only to read the server's key fingerprint, aborting before authentication. */
async function probeFingerprint(
  host: string,
  port: number,
  privateKey: string,
  timeoutMs: number,
): Promise<string> {
  let seen: string | null = null;
  const probe = new PofrError('POFR_TRANSPORT', 'fingerprint probe');
  const client = new ssh2.Client();
  try {
    await connectSsh(client, {
      host,
      port,
      username: ENROLL_USER,
      privateKey,
      timeoutMs,
      checkHost: (fp) => {
        seen = fp;
        return probe;
      },
    });
  } catch (e) {
    if (e !== probe || seen === null) throw e;
  } finally {
    client.destroy();
  }
  if (seen === null) throw new PofrError('POFR_TRANSPORT', `${host}:${port} presented no host key`);
  return seen;
}

/** The environment requests that tell the server which protocol and version this client speaks. */
function announceEnv(o: { clientVersion?: string; protocol?: number }): Record<string, string> {
  return {
    [PROTOCOL_ENV]: String(o.protocol ?? PROTOCOL_VERSION),
    ...(o.clientVersion === undefined ? {} : { [CLIENT_VERSION_ENV]: o.clientVersion }),
  };
}

function openExec(
  client: Client,
  command: string,
  where: { host: string; port: number },
  env: Record<string, string>,
): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    client.exec(command, { env }, (err, channel) => {
      if (err) {
        reject(
          new PofrError(
            'POFR_TRANSPORT',
            `server ${where.host}:${where.port} refused \`${command}\`: ${err.message}`,
          ),
        );
      } else {
        resolve(channel);
      }
    });
  });
}

function readOneFrame(
  channel: ClientChannel,
  timeoutMs: number,
  where: { host: string; port: number },
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const decoder = new FrameDecoder(ACK_MAX_FRAME_BYTES);
    let stderr = '';
    let done = false;
    const finish = (err: Error | null, frame?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(frame!);
    };
    const timer = setTimeout(
      () =>
        finish(
          new PofrError('POFR_TRANSPORT', `no reply from ${where.host}:${where.port} within ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    channel.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_STDERR_CHARS) stderr += chunk.toString('utf8');
    });
    channel.on('data', (chunk: Buffer) => {
      try {
        const frames = decoder.push(chunk);
        if (frames.length > 0) finish(null, frames[0]);
      } catch (e) {
        finish(e as Error);
      }
    });
    channel.on('close', () => {
      const said = stderr.trim();
      finish(
        new PofrError(
          'POFR_TRANSPORT',
          `the server closed the channel without a reply${said ? `: ${said}` : ''}`,
        ),
      );
    });
  });
}
