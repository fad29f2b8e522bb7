import { createServer, type Socket } from 'node:net';
import type { AuthContext, Connection, ServerChannel, Session } from 'ssh2';
import ssh2 from 'ssh2';
import { isPofrError, PofrError } from '../errors.js';
import { PROTOCOL_VERSION } from '../protocol/index.js';
import { encodeFrame, FrameDecoder } from './framing.js';
import {
  type BatchAck,
  batchAckSchema,
  CLIENT_VERSION_ENV,
  type ClientAnnounce,
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
import { sshFingerprint } from './ssh-keys.js';

/** The client key that authenticated a connection. */
export interface AuthKey {
  readonly algo: string;
  readonly blob: Buffer;
  /** "ssh-ed25519 AAAA…" (no comment): the form to store and compare. */
  readonly openssh: string;
  readonly fingerprint: string;
}

export type AuthDecision = { ok: true; principal: string } | { ok: false; reason: string };

/**
 * What the server does with what arrives; the transport knows nothing of the store.
 *
 * @example
 * startSshServer({ hostKey, host: '0.0.0.0', port: 2222, handlers: {
 *   authorize: (hostId, key) => hosts.authorize(hostId, key.openssh),
 *   enroll: (req, ctx) => enrollments.enroll(req, ctx.key),
 *   ingest: (hostId, batch) => ingestBatch(store, hostId, batch), // resolves after COMMIT
 * } });
 */
export interface ServerHandlers {
  /**
   * Decides whether `key` may act as host `username`. Never called for the user name 'enroll':
   * enrollment accepts any ed25519 key the client proves it holds, and enroll() decides. The
   * principal returned must not be 'enroll'.
   */
  authorize(username: string, key: AuthKey): Promise<AuthDecision>;
  /** Registers a client. A thrown PofrError is sent to the client as `{ ok: false, code, message }`. */
  enroll(req: EnrollRequest, ctx: { remote: string; key: AuthKey } & ClientAnnounce): Promise<EnrollReply>;
  /**
   * Stores one batch. Resolve only once it is durably stored: the ACK is sent when this resolves.
   * A rejection is a transient server fault: the channel is closed unacknowledged and the client
   * sends the batch again later, so it must be idempotent (answer 'duplicate' the second time).
   */
  ingest(principal: string, batch: Buffer, ctx: { remote: string } & ClientAnnounce): Promise<BatchAck>;
}

export type TransportLog = (msg: string, fields?: object) => void;

export interface SshServerOptions {
  /** OpenSSH private key text of the server's host key. */
  readonly hostKey: string;
  readonly host: string;
  /** 0 picks a free port; the result tells which. */
  readonly port: number;
  readonly handlers: ServerHandlers;
  readonly log?: TransportLog;
  /** A connection that has not authenticated within this time is dropped; default 30 s. */
  readonly authTimeoutMs?: number;
  /** Refuse sockets beyond this many open at once (default DEFAULT_MAX_CONNECTIONS). */
  readonly maxConnections?: number;
}

export interface SshServer {
  readonly port: number;
  /** Stops listening, ends every connection and waits for handler calls still running. */
  close(): Promise<void>;
}

/** Batches a client may have in the server's queue before the server stops reading its channel. */
const MAX_QUEUED_FRAMES = 16;
const MAX_SESSIONS_PER_CONNECTION = 4;
const ENROLL_MAX_FRAME_BYTES = 64 * 1024;
const CLOSE_GRACE_MS = 500;
/** Each key is tried twice (query, then signature); a client offering more than this is probing. */
const MAX_AUTH_ATTEMPTS = 20;
/** Sockets open at once (authenticated or not): a flood of idle connections cannot exhaust fds. */
export const DEFAULT_MAX_CONNECTIONS = 2048;

/**
 * The embedded SSH listener: publickey (ed25519) auth, then exactly two things a client may do,
 * `exec pofr-enroll` and `exec pofr-ingest`. Shells, ptys, sftp, forwarding and any other command
 * are refused.
 */
export async function startSshServer(opts: SshServerOptions): Promise<SshServer> {
  const parsedHostKey = ssh2.utils.parseKey(opts.hostKey);
  if (parsedHostKey instanceof Error || !parsedHostKey.isPrivateKey()) {
    const why = parsedHostKey instanceof Error ? parsedHostKey.message : 'it holds no private key';
    throw new PofrError(
      'POFR_TRANSPORT',
      `the SSH host key is not usable: ${why}; recreate it with \`pofr server init\``,
    );
  }
  const log: TransportLog = opts.log ?? (() => {});
  const authTimeoutMs = opts.authTimeoutMs ?? 30_000;
  const sockets = new Set<Socket>();
  const connections = new Set<Connection>();
  const running = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    running.add(p);
    const forget = () => running.delete(p);
    p.then(forget, forget);
    return p;
  };

  const ssh = new ssh2.Server(
    // Keepalives find clients that vanished without a FIN (power loss, NAT timeout).
    { hostKeys: [opts.hostKey], ident: 'pofr', keepaliveInterval: 30_000, keepaliveCountMax: 3 },
    (conn, info) => {
      const remote = `${info.ip}:${info.port}`;
      connections.add(conn);
      conn.on('close', () => connections.delete(conn));
      serveConnection(conn, remote, opts.handlers, log, authTimeoutMs, track);
    },
  );
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const listener = createServer((socket) => {
    if (sockets.size >= maxConnections) {
      log('ssh connection refused: too many open connections', {
        remote: socket.remoteAddress,
        max: maxConnections,
      });
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // A reset from the peer must not crash the server; ssh2 reports it on the connection.
    socket.on('error', () => {});
    ssh.injectSocket(socket);
  });

  await new Promise<void>((resolve, reject) => {
    listener.once('error', (e) =>
      reject(new PofrError('POFR_TRANSPORT', `cannot listen on ${opts.host}:${opts.port}: ${e.message}`)),
    );
    listener.listen(opts.port, opts.host, () => resolve());
  });
  const address = listener.address();
  const port = typeof address === 'object' && address !== null ? address.port : opts.port;
  log('ssh listening', { host: opts.host, port, fingerprint: sshFingerprint(parsedHostKey.getPublicSSH()) });

  let closing: Promise<void> | null = null;
  return {
    port,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
        for (const conn of connections) conn.end();
        if (sockets.size > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, CLOSE_GRACE_MS);
            const check = setInterval(() => {
              if (sockets.size === 0) {
                clearTimeout(timer);
                clearInterval(check);
                resolve();
              }
            }, 10);
            timer.unref();
            setTimeout(() => clearInterval(check), CLOSE_GRACE_MS).unref();
          });
        }
        for (const socket of sockets) socket.destroy();
        await closed;
        // The caller closes the store next; let handler calls already running finish first.
        await Promise.allSettled([...running]);
      })();
      return closing;
    },
  };
}

function serveConnection(
  conn: Connection,
  remote: string,
  handlers: ServerHandlers,
  log: TransportLog,
  authTimeoutMs: number,
  track: <T>(p: Promise<T>) => Promise<T>,
): void {
  let principal: string | null = null;
  let authKey: AuthKey | null = null;
  let sessions = 0;
  const refusalsLogged = new Set<string>();
  let authAttempts = 0;
  // ssh2 does not always emit 'close' on a channel whose connection died; its handlers must stop
  // anyway, or a queued batch would reach the store after the client gave up on it.
  const onConnectionGone = new Set<() => void>();
  const authTimer = setTimeout(() => {
    log('ssh connection dropped: no authentication in time', { remote, timeoutMs: authTimeoutMs });
    conn.end();
  }, authTimeoutMs);
  authTimer.unref();

  conn.on('error', (e: Error) => log('ssh connection error', { remote, error: e.message }));
  conn.on('close', () => {
    clearTimeout(authTimer);
    for (const stop of onConnectionGone) stop();
  });
  conn.on('authentication', (ctx: AuthContext) => {
    void authenticate(ctx).catch((e: unknown) => {
      log('ssh auth error', { remote, error: (e as Error).message });
      ctx.reject(['publickey']);
    });
  });
  conn.on('ready', () => {
    clearTimeout(authTimer);
    log('ssh client authenticated', { remote, principal, fingerprint: authKey?.fingerprint });
  });
  conn.on('session', (accept: () => Session, reject: () => void) => {
    if (sessions >= MAX_SESSIONS_PER_CONNECTION) return reject();
    sessions++;
    const session = accept();
    session.on('close', () => sessions--);
    const env = new Map<string, string>();
    session.on(
      'env',
      (acceptEnv: (() => void) | undefined, _reject: unknown, info: { key: string; val: string }) => {
        if (env.size < 16) env.set(info.key, info.val.slice(0, 64));
        acceptEnv?.();
      },
    );
    session.on(
      'exec',
      (acceptExec: () => ServerChannel, rejectExec: (() => void) | undefined, info: { command: string }) => {
        const command = info.command.trim();
        const known =
          (command === ENROLL_COMMAND && principal === ENROLL_USER && authKey) ||
          (command === INGEST_COMMAND && principal !== null && principal !== ENROLL_USER);
        const announce: ClientAnnounce = { clientVersion: env.get(CLIENT_VERSION_ENV) ?? null };
        const protocol = env.get(PROTOCOL_ENV) ?? String(PROTOCOL_VERSION);
        if (known && protocol !== String(PROTOCOL_VERSION)) {
          refuseProtocol(acceptExec(), protocol, announce, remote, principal, log);
        } else if (command === ENROLL_COMMAND && principal === ENROLL_USER && authKey) {
          serveEnroll(acceptExec(), remote, authKey, handlers, log, track, announce);
        } else if (command === INGEST_COMMAND && principal !== null && principal !== ENROLL_USER) {
          onConnectionGone.add(serveIngest(acceptExec(), principal, remote, handlers, log, track, announce));
        } else {
          log('ssh exec refused', { remote, principal, command: command.slice(0, 200) });
          // Without want-reply ssh2 passes no reject function: there is nothing to answer then.
          rejectExec?.();
        }
      },
    );
  });

  async function authenticate(ctx: AuthContext): Promise<void> {
    if (++authAttempts > MAX_AUTH_ATTEMPTS) {
      log('ssh connection dropped: too many authentication attempts', { remote, user: ctx.username });
      ctx.reject();
      conn.end();
      return;
    }
    if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
    if (ctx.key.algo !== 'ssh-ed25519') {
      log('ssh auth refused', {
        remote,
        user: ctx.username,
        reason: `key type ${ctx.key.algo} is not ssh-ed25519`,
      });
      return ctx.reject(['publickey']);
    }
    const key = toAuthKey(ctx.key.algo, ctx.key.data);
    if (ctx.signature) {
      const parsed = ssh2.utils.parseKey(ctx.key.data);
      if (parsed instanceof Error || !ctx.blob || !parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) {
        log('ssh auth refused', {
          remote,
          user: ctx.username,
          fingerprint: key.fingerprint,
          reason: 'bad signature',
        });
        return ctx.reject(['publickey']);
      }
    }
    let decision: AuthDecision;
    if (ctx.username === ENROLL_USER) {
      decision = { ok: true, principal: ENROLL_USER };
    } else {
      decision = await handlers.authorize(ctx.username, key);
      if (decision.ok && decision.principal === ENROLL_USER) {
        decision = { ok: false, reason: `authorize() returned the reserved principal '${ENROLL_USER}'` };
      }
    }
    if (!decision.ok) {
      // A client asks first without a signature and then with one: say it once per key and user.
      const said = `${ctx.username}\n${key.fingerprint}`;
      if (!refusalsLogged.has(said)) {
        refusalsLogged.add(said);
        log('ssh auth refused', {
          remote,
          user: ctx.username,
          fingerprint: key.fingerprint,
          reason: decision.reason,
        });
      }
      return ctx.reject(['publickey']);
    }
    if (ctx.signature) {
      principal = decision.principal;
      authKey = key;
    }
    ctx.accept();
  }
}

/**
 * A client speaking another protocol gets the reason on the channel's stderr (its error message
 * shows it) and exit status 3, before anything is read: its spool keeps every batch meanwhile.
 */
function refuseProtocol(
  channel: ServerChannel,
  protocol: string,
  announce: ClientAnnounce,
  remote: string,
  principal: string | null,
  log: TransportLog,
): void {
  const client = announce.clientVersion === null ? 'this client' : `pofr ${announce.clientVersion}`;
  const message = `POFR_PROTOCOL_VERSION: ${client} speaks protocol ${protocol}; this server speaks protocol ${PROTOCOL_VERSION}. Install a client built by this server (pofr server package-client) or upgrade the server.`;
  log('refused client protocol', { remote, principal, protocol, client_version: announce.clientVersion });
  channel.on('error', () => {});
  channel.stderr.write(`${message}\n`);
  channel.exit(3);
  channel.end();
}

function serveEnroll(
  channel: ServerChannel,
  remote: string,
  key: AuthKey,
  handlers: ServerHandlers,
  log: TransportLog,
  track: <T>(p: Promise<T>) => Promise<T>,
  announce: ClientAnnounce,
): void {
  const decoder = new FrameDecoder(ENROLL_MAX_FRAME_BYTES);
  let started = false;
  channel.on('error', (e: Error) => log('ssh enroll channel error', { remote, error: e.message }));
  channel.on('data', (chunk: Buffer) => {
    if (started) return;
    let frames: Buffer[];
    try {
      frames = decoder.push(chunk);
    } catch (e) {
      started = true;
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
      return { ok: false, code: 'POFR_ENROLL_FAILED', message: (e as Error).message };
    }
    try {
      const result = enrollReplySchema.parse(await handlers.enroll(req, { remote, key, ...announce }));
      log('ssh enrollment', { remote, name: req.name, fingerprint: key.fingerprint, ok: result.ok });
      return result;
    } catch (e) {
      if (isPofrError(e)) {
        log('ssh enrollment refused', { remote, name: req.name, code: e.code, reason: e.message });
        return { ok: false, code: e.code, message: e.message };
      }
      log('ssh enrollment failed', { remote, name: req.name, error: (e as Error).stack ?? String(e) });
      return {
        ok: false,
        code: 'POFR_ENROLL_FAILED',
        message: 'the server failed while enrolling; see its log',
      };
    }
  }

  function reply(r: EnrollReply): void {
    if (channel.destroyed) return;
    channel.write(encodeFrame(Buffer.from(JSON.stringify(r), 'utf8')));
    channel.exit(0);
    channel.end();
  }
}

function serveIngest(
  channel: ServerChannel,
  principal: string,
  remote: string,
  handlers: ServerHandlers,
  log: TransportLog,
  track: <T>(p: Promise<T>) => Promise<T>,
  announce: ClientAnnounce,
): () => void {
  const decoder = new FrameDecoder();
  const queue: Buffer[] = [];
  let busy = false;
  let closed = false;
  let eof = false;

  channel.on('error', (e: Error) => log('ssh ingest channel error', { remote, principal, error: e.message }));
  channel.on('close', () => {
    closed = true;
    queue.length = 0;
  });
  channel.on('end', () => {
    eof = true;
    void drain();
  });
  channel.on('data', (chunk: Buffer) => {
    if (closed) return;
    try {
      for (const frame of decoder.push(chunk)) queue.push(frame);
    } catch (e) {
      abort(`protocol error: ${(e as Error).message}`);
      return;
    }
    // Backpressure: a client that pipelines faster than the store commits waits in SSH flow control.
    if (queue.length >= MAX_QUEUED_FRAMES) channel.pause();
    void drain();
  });

  // One batch at a time, in arrival order: batch N+1 links to N, and its ACK must follow N's.
  async function drain(): Promise<void> {
    if (busy) return;
    busy = true;
    try {
      while (queue.length > 0 && !closed) {
        const frame = queue.shift()!;
        if (queue.length < MAX_QUEUED_FRAMES / 2) channel.resume();
        let ack: BatchAck;
        try {
          ack = batchAckSchema.parse(await track(handlers.ingest(principal, frame, { remote, ...announce })));
        } catch (e) {
          log('ssh ingest failed; closing the channel unacknowledged so the client retries', {
            remote,
            principal,
            error: (e as Error).stack ?? String(e),
          });
          abort('transient server error; the batch was not stored, retry later');
          return;
        }
        if (closed) return;
        if (ack.status === 'refused') {
          log('ssh batch refused', { remote, principal, seq: ack.seq, code: ack.code, reason: ack.reason });
        }
        channel.write(encodeFrame(Buffer.from(JSON.stringify(ack), 'utf8')));
      }
      if (eof && !closed && queue.length === 0) {
        closed = true;
        channel.exit(0);
        channel.end();
      }
    } finally {
      busy = false;
    }
  }

  return () => {
    closed = true;
    queue.length = 0;
  };

  function abort(why: string): void {
    if (closed) return;
    closed = true;
    queue.length = 0;
    channel.stderr.write(`pofr: ${why}\n`);
    channel.exit(1);
    channel.end();
  }
}

function toAuthKey(algo: string, blob: Buffer): AuthKey {
  return Object.freeze({
    algo,
    blob: Buffer.from(blob),
    openssh: `${algo} ${blob.toString('base64')}`,
    fingerprint: sshFingerprint(blob),
  });
}
