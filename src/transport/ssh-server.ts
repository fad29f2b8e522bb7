import { createServer, type Socket } from 'node:net';
import type { AuthContext, Connection, ServerChannel, Session } from 'ssh2';
import ssh2 from 'ssh2';
import { PofrError } from '../errors.js';
import { PROTOCOL_VERSION, READ_PROTOCOL_VERSIONS } from '../protocol/index.js';
import { sshByteChannel } from './byte-channel.js';
import { type AuthKey, serveEnrollChannel } from './enroll-channel.js';
import { type IngestChannelHandle, type IngestChannelLimits, serveIngestChannel } from './ingest-channel.js';
import {
  type BatchAck,
  CLIENT_VERSION_ENV,
  type ClientAnnounce,
  ENROLL_COMMAND,
  ENROLL_USER,
  type EnrollReply,
  type EnrollRequest,
  INGEST_COMMAND,
  PROTOCOL_ENV,
} from './messages.js';
import type { PeerContext, TransportLog } from './peer.js';
import {
  formatRemote,
  type RefusalSink,
  type TransportRefusal,
  type TransportRefusalKind,
} from './refusals.js';
import { sshFingerprint } from './ssh-keys.js';

export type { AuthKey } from './enroll-channel.js';

export type AuthDecision =
  | { ok: true; principal: string }
  | {
      ok: false;
      reason: string;
      /** What kind of refusal, for the audit trail; default 'unknown_key'. */
      kind?: 'unknown_key' | 'wrong_user' | 'revoked_key' | 'pending_key';
    };

/**
 * What the server does with what arrives; the transport knows nothing of the store.
 *
 * @example
 * startSshServer({ hostKey, host: '0.0.0.0', port: 2222, handlers: {
 *   authorize: (hostId, key) => hosts.authorize(hostId, key.openssh),
 *   enroll: (req, ctx) => enrollments.enroll(req, ctx.key),
 *   ingest: (hostId, batch) => ingestBatch(store, hostId, batch), // resolves after COMMIT
 *   refused: (r) => audit.record(r),
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
  ingest(principal: string, batch: Buffer, ctx: PeerContext & ClientAnnounce): Promise<BatchAck>;
  /** Told of every attempt the transport refuses (for the audit trail); must not throw. */
  refused?: RefusalSink;
}

export type { TransportLog } from './peer.js';

/** Caps that keep idle, half-open, slow and greedy clients from starving the others. */
export interface ConnectionLimits {
  /** Sockets open at once, authenticated or not. */
  readonly maxConnections: number;
  /** Sockets not yet authenticated, server-wide: a handshake flood cannot take every slot. */
  readonly maxUnauthenticated: number;
  /** Sockets not yet authenticated from one address. */
  readonly maxUnauthenticatedPerSource: number;
  /** Connections of one host at once; a new one closes the oldest (a client back after a dead NAT entry). */
  readonly maxPerHost: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = Object.freeze({
  maxConnections: 2048,
  maxUnauthenticated: 512,
  maxUnauthenticatedPerSource: 128,
  maxPerHost: 2,
});

/** Kept for callers of the first version. */
export const DEFAULT_MAX_CONNECTIONS = DEFAULT_CONNECTION_LIMITS.maxConnections;

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
  /** Refuse sockets beyond this many open at once (default DEFAULT_CONNECTION_LIMITS.maxConnections). */
  readonly maxConnections?: number;
  readonly limits?: Partial<ConnectionLimits>;
  readonly ingestLimits?: Partial<IngestChannelLimits>;
}

export interface SshServer {
  readonly port: number;
  /** Host ids with at least one authenticated connection open. */
  connectedHosts(): string[];
  /**
   * Cuts every connection of this host now (revocation): an ingest channel is ended with `reason`
   * on its stderr; a batch whose transaction is running still commits, nothing after it is read.
   * Returns the connections cut.
   */
  disconnect(hostId: string, reason: string): readonly { remote: string; fingerprint: string | null }[];
  /** Stops listening, ends every connection and waits for handler calls still running. */
  close(): Promise<void>;
}

/**
 * The protocols this server speaks, as clients announce them (`POFR_PROTOCOL`): 3 (sealed batches
 * that may hold `process_fork` records), 2 (sealed batches) and 1 (clients from before sealing,
 * whose unsealed batches are still accepted).
 */
const SPOKEN_PROTOCOLS = READ_PROTOCOL_VERSIONS.map(String);

const MAX_SESSIONS_PER_CONNECTION = 4;
const CLOSE_GRACE_MS = 500;
/** Each key is tried twice (query, then signature); a client offering more than this is probing. */
const MAX_AUTH_ATTEMPTS = 20;

/** One socket's SSH connection, as the server tracks it. */
interface Peer {
  readonly conn: Connection;
  readonly remote: string;
  readonly source: string;
  readonly openedAt: number;
  authenticated: boolean;
  principal: string | null;
  key: AuthKey | null;
  user: string | null;
  readonly ingest: Set<IngestChannelHandle>;
}

/**
 * The embedded SSH listener: publickey (ed25519) auth, then exactly two things a client may do,
 * `exec pofr-enroll` and `exec pofr-ingest`. Shells, ptys, sftp, forwarding and any other command
 * are refused, and every refusal is told to `handlers.refused`.
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
  const limits: ConnectionLimits = {
    ...DEFAULT_CONNECTION_LIMITS,
    ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
    ...opts.limits,
  };
  const refused: RefusalSink = (r) => {
    try {
      opts.handlers.refused?.(r);
    } catch (e) {
      log('refusal sink failed', { error: (e as Error).message });
    }
  };
  const authTimeoutMs = opts.authTimeoutMs ?? 30_000;
  const sockets = new Set<Socket>();
  const peers = new Set<Peer>();
  const byHost = new Map<string, Set<Peer>>();
  const unauthBySource = new Map<string, number>();
  let unauthenticated = 0;
  const running = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    running.add(p);
    const forget = () => running.delete(p);
    p.then(forget, forget);
    return p;
  };

  /** Sockets not authenticated yet, by "ip:port": ssh2 names a connection only by its peer address. */
  const pending = new Map<string, { timer: NodeJS.Timeout; release(): void }>();
  const ctx: ConnectionContext = {
    handlers: opts.handlers,
    log,
    refused,
    track,
    ingestLimits: opts.ingestLimits,
    onAuthenticated(peer) {
      const slot = pending.get(peer.remote);
      if (slot) {
        clearTimeout(slot.timer);
        slot.release();
      }
      if (peer.principal === null || peer.principal === ENROLL_USER) return;
      const mine = byHost.get(peer.principal) ?? new Set<Peer>();
      byHost.set(peer.principal, mine);
      mine.add(peer);
      while (mine.size > limits.maxPerHost) {
        const oldest = [...mine].reduce((a, b) => (a.openedAt <= b.openedAt ? a : b));
        mine.delete(oldest);
        const reason = `host ${peer.principal} has more than ${limits.maxPerHost} connections open; closing its oldest from ${oldest.remote}`;
        log('ssh connection closed: per-host cap', { remote: oldest.remote, principal: peer.principal });
        refused(refusalOf(oldest, 'rate_limit', reason));
        endPeer(oldest, reason);
      }
    },
  };

  const ssh = new ssh2.Server(
    // Keepalives find clients that vanished without a FIN (power loss, NAT timeout).
    { hostKeys: [opts.hostKey], ident: 'pofr', keepaliveInterval: 30_000, keepaliveCountMax: 3 },
    (conn, info) => {
      const peer: Peer = {
        conn,
        remote: formatRemote(info.ip, info.port),
        source: info.ip,
        openedAt: Date.now(),
        authenticated: false,
        principal: null,
        key: null,
        user: null,
        ingest: new Set(),
      };
      peers.add(peer);
      conn.on('close', () => {
        peers.delete(peer);
        if (peer.authenticated && peer.principal !== null) byHost.get(peer.principal)?.delete(peer);
        if (peer.principal !== null && byHost.get(peer.principal)?.size === 0) byHost.delete(peer.principal);
      });
      serveConnection(peer, ctx);
    },
  );
  const listener = createServer((socket) => {
    const source = socket.remoteAddress ?? 'unknown';
    const remote = formatRemote(source, socket.remotePort ?? 0);
    let why: { kind: TransportRefusalKind; reason: string } | null = null;
    if (sockets.size >= limits.maxConnections) {
      why = {
        kind: 'connection_limit',
        reason: `${limits.maxConnections} connections are open, the server's cap`,
      };
    } else if (unauthenticated >= limits.maxUnauthenticated) {
      why = {
        kind: 'connection_limit',
        reason: `${limits.maxUnauthenticated} connections are still authenticating, the server's cap`,
      };
    } else if ((unauthBySource.get(source) ?? 0) >= limits.maxUnauthenticatedPerSource) {
      why = {
        kind: 'rate_limit',
        reason: `${limits.maxUnauthenticatedPerSource} connections from ${source} are still authenticating, the cap per address`,
      };
    }
    if (why !== null) {
      log(`ssh connection refused: ${why.reason}`, { remote });
      refused({ kind: why.kind, reason: why.reason, remote, source });
      socket.destroy();
      return;
    }
    unauthenticated++;
    unauthBySource.set(source, (unauthBySource.get(source) ?? 0) + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      pending.delete(remote);
      unauthenticated--;
      const n = (unauthBySource.get(source) ?? 1) - 1;
      if (n <= 0) unauthBySource.delete(source);
      else unauthBySource.set(source, n);
    };
    // On the socket, not the SSH connection: ssh2 makes a connection only once the peer sent its
    // version line, so a socket that says nothing (half-open, slowloris) would otherwise stay forever.
    const timer = setTimeout(() => {
      log('ssh connection dropped: no authentication in time', { remote, timeoutMs: authTimeoutMs });
      refused({
        kind: 'auth_timeout',
        reason: `no authentication within ${authTimeoutMs} ms`,
        remote,
        source,
      });
      socket.destroy();
    }, authTimeoutMs);
    timer.unref();
    pending.set(remote, { timer, release });
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      clearTimeout(timer);
      release();
    });
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
    connectedHosts: () => [...byHost.keys()],
    disconnect(hostId, reason) {
      const mine = byHost.get(hostId);
      if (!mine) return [];
      const cut = [...mine];
      byHost.delete(hostId);
      for (const peer of cut) endPeer(peer, reason);
      return cut.map((p) => ({ remote: p.remote, fingerprint: p.key?.fingerprint ?? null }));
    },
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
        for (const peer of peers) peer.conn.end();
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

/** Ends a connection: its ingest channels first, with the reason on their stderr, then the socket. */
function endPeer(peer: Peer, reason: string): void {
  for (const ch of peer.ingest) ch.cut(1, reason);
  peer.ingest.clear();
  // Give the channel close a moment to reach the client before the connection goes.
  setTimeout(() => peer.conn.end(), 20).unref();
}

function refusalOf(peer: Peer, kind: TransportRefusalKind, reason: string): TransportRefusal {
  return {
    kind,
    reason,
    remote: peer.remote,
    source: peer.source,
    user: peer.user,
    fingerprint: peer.key?.fingerprint ?? null,
    hostId: peer.principal !== ENROLL_USER ? peer.principal : null,
  };
}

interface ConnectionContext {
  readonly handlers: ServerHandlers;
  readonly log: TransportLog;
  readonly refused: RefusalSink;
  readonly track: <T>(p: Promise<T>) => Promise<T>;
  readonly ingestLimits: Partial<IngestChannelLimits> | undefined;
  onAuthenticated(peer: Peer): void;
}

function serveConnection(peer: Peer, ctx: ConnectionContext): void {
  const { conn, remote } = peer;
  const { handlers, log } = ctx;
  let sessions = 0;
  let authAttempts = 0;
  // A client asks first without a signature and then with one: say each refusal once per connection.
  const said = new Set<string>();
  const refuse = (kind: TransportRefusalKind, reason: string, extra: Partial<TransportRefusal> = {}) => {
    const key = `${kind}\n${extra.user ?? peer.user}\n${extra.fingerprint ?? peer.key?.fingerprint}\n${reason}`;
    if (said.has(key)) return;
    said.add(key);
    ctx.refused({ ...refusalOf(peer, kind, reason), ...extra });
  };
  conn.on('error', (e: Error) => log('ssh connection error', { remote, error: e.message }));
  // ssh2 does not always emit 'close' on a channel whose connection died; its handlers must stop
  // anyway, or a queued batch would reach the store after the client gave up on it.
  conn.on('close', () => {
    for (const ch of peer.ingest) ch.cut(1, 'connection closed');
    peer.ingest.clear();
  });
  conn.on('authentication', (auth: AuthContext) => {
    void authenticate(auth).catch((e: unknown) => {
      log('ssh auth error', { remote, error: (e as Error).message });
      auth.reject(['publickey']);
    });
  });
  conn.on('ready', () => {
    peer.authenticated = true;
    ctx.onAuthenticated(peer);
    log('ssh client authenticated', {
      remote,
      principal: peer.principal,
      fingerprint: peer.key?.fingerprint,
    });
  });
  // Forwarding of any kind: refused (the listeners exist only so each attempt is audited).
  conn.on('tcpip', (_accept: unknown, reject: () => void, info: { destIP: string; destPort: number }) => {
    refuse('forward_refused', `TCP forwarding to ${formatRemote(info.destIP, info.destPort)} is not offered`);
    reject();
  });
  conn.on('openssh.streamlocal', (_accept: unknown, reject: () => void, info: { socketPath: string }) => {
    refuse(
      'forward_refused',
      `socket forwarding to ${JSON.stringify(info.socketPath).slice(0, 200)} is not offered`,
    );
    reject();
  });
  conn.on('request', (accept: (() => void) | undefined, reject: (() => void) | undefined, name: string) => {
    if (name.startsWith('cancel-')) return accept?.();
    refuse('forward_refused', `global request ${name} (remote forwarding) is not offered`);
    reject?.();
  });
  conn.on('session', (accept: () => Session, reject: () => void) => {
    if (sessions >= MAX_SESSIONS_PER_CONNECTION) {
      refuse('channel_refused', `more than ${MAX_SESSIONS_PER_CONNECTION} sessions on one connection`);
      return reject();
    }
    sessions++;
    const session = accept();
    session.on('close', () => sessions--);
    const refuseRequest =
      (what: string) =>
      (_accept: unknown, rejectReq: (() => void) | undefined): void => {
        refuse('channel_refused', `${what} is not offered`);
        rejectReq?.();
      };
    session.on('pty', refuseRequest('a pseudo-terminal'));
    session.on('shell', refuseRequest('a shell'));
    session.on('x11', refuseRequest('X11 forwarding'));
    session.on('auth-agent', refuseRequest('agent forwarding'));
    session.on('sftp', refuseRequest('sftp'));
    // The client's announcements (protocol, version) come as environment requests before exec.
    const env = new Map<string, string>();
    session.on(
      'env',
      (acceptEnv: (() => void) | undefined, _reject: unknown, info: { key: string; val: string }) => {
        if (env.size < 16) env.set(info.key, info.val.slice(0, 64));
        acceptEnv?.();
      },
    );
    session.on('subsystem', (_a: unknown, rejectReq: (() => void) | undefined, info: { name: string }) =>
      refuseRequest(`the subsystem ${JSON.stringify(info.name).slice(0, 100)}`)(_a, rejectReq),
    );
    session.on(
      'exec',
      (acceptExec: () => ServerChannel, rejectExec: (() => void) | undefined, info: { command: string }) => {
        const command = info.command.trim();
        const principal = peer.principal;
        const known =
          (command === ENROLL_COMMAND && principal === ENROLL_USER && peer.key !== null) ||
          (command === INGEST_COMMAND && principal !== null && principal !== ENROLL_USER);
        const announce: ClientAnnounce = { clientVersion: env.get(CLIENT_VERSION_ENV) ?? null };
        const protocol = env.get(PROTOCOL_ENV) ?? String(PROTOCOL_VERSION);
        const peerCtx: PeerContext = {
          remote,
          source: peer.source,
          fingerprint: peer.key?.fingerprint ?? null,
          user: peer.user,
        };
        if (known && !SPOKEN_PROTOCOLS.includes(protocol)) {
          const why = refuseProtocol(acceptExec(), protocol, announce, remote, principal, log);
          refuse('exec_refused', why, { code: 'POFR_PROTOCOL_VERSION' });
        } else if (command === ENROLL_COMMAND && principal === ENROLL_USER && peer.key) {
          serveEnrollChannel(sshByteChannel(acceptExec()), {
            peer: peerCtx,
            key: peer.key,
            enroll: (req, c) => handlers.enroll(req, { ...c, ...announce }),
            refused: ctx.refused,
            log,
            track: ctx.track,
          });
        } else if (command === INGEST_COMMAND && principal !== null && principal !== ENROLL_USER) {
          const handle = serveIngestChannel(sshByteChannel(acceptExec()), {
            principal,
            peer: peerCtx,
            ingest: (p, batch, c) => handlers.ingest(p, batch, { ...c, ...announce }),
            refused: ctx.refused,
            log,
            track: ctx.track,
            limits: ctx.ingestLimits,
          });
          peer.ingest.add(handle);
        } else {
          log('ssh exec refused', { remote, principal, command: command.slice(0, 200) });
          refuse(
            'exec_refused',
            `exec ${JSON.stringify(command.slice(0, 200))} is not offered to user ${peer.user}`,
          );
          // Without want-reply ssh2 passes no reject function: there is nothing to answer then.
          rejectExec?.();
        }
      },
    );
  });

  async function authenticate(auth: AuthContext): Promise<void> {
    const user = auth.username;
    if (++authAttempts > MAX_AUTH_ATTEMPTS) {
      log('ssh connection dropped: too many authentication attempts', { remote, user });
      refuse('auth_attempts', `more than ${MAX_AUTH_ATTEMPTS} authentication attempts`, { user });
      auth.reject();
      conn.end();
      return;
    }
    // Every client starts with 'none' to learn the methods: that is no attempt worth a row.
    if (auth.method === 'none') return auth.reject(['publickey']);
    if (auth.method !== 'publickey') {
      refuse('auth_method', `authentication method ${auth.method} is not offered (publickey only)`, { user });
      return auth.reject(['publickey']);
    }
    const key = toAuthKey(auth.key.algo, auth.key.data);
    if (auth.key.algo !== 'ssh-ed25519') {
      const reason = `key type ${auth.key.algo} is not ssh-ed25519`;
      log('ssh auth refused', { remote, user, reason });
      refuse('key_type', reason, { user, fingerprint: key.fingerprint });
      return auth.reject(['publickey']);
    }
    if (auth.signature) {
      const parsed = ssh2.utils.parseKey(auth.key.data);
      if (parsed instanceof Error || !auth.blob || !parsed.verify(auth.blob, auth.signature, auth.hashAlgo)) {
        log('ssh auth refused', { remote, user, fingerprint: key.fingerprint, reason: 'bad signature' });
        refuse('auth_signature', 'the key signature does not verify', { user, fingerprint: key.fingerprint });
        return auth.reject(['publickey']);
      }
    }
    let decision: AuthDecision;
    if (user === ENROLL_USER) {
      decision = { ok: true, principal: ENROLL_USER };
    } else {
      decision = await handlers.authorize(user, key);
      if (decision.ok && decision.principal === ENROLL_USER) {
        decision = { ok: false, reason: `authorize() returned the reserved principal '${ENROLL_USER}'` };
      }
    }
    if (!decision.ok) {
      const kind = decision.kind ?? 'unknown_key';
      if (!said.has(`logged\n${user}\n${key.fingerprint}`)) {
        said.add(`logged\n${user}\n${key.fingerprint}`);
        log('ssh auth refused', { remote, user, fingerprint: key.fingerprint, reason: decision.reason });
      }
      refuse(kind, decision.reason, { user, fingerprint: key.fingerprint });
      return auth.reject(['publickey']);
    }
    if (auth.signature) {
      peer.principal = decision.principal;
      peer.key = key;
      peer.user = user;
    }
    auth.accept();
  }
}

/**
 * A client speaking another protocol gets the reason on the channel's stderr (its error message
 * shows it) and exit status 3, before anything is read: its spool keeps every batch meanwhile.
 * Returns the reason.
 */
function refuseProtocol(
  channel: ServerChannel,
  protocol: string,
  announce: ClientAnnounce,
  remote: string,
  principal: string | null,
  log: TransportLog,
): string {
  const client = announce.clientVersion === null ? 'this client' : `pofr ${announce.clientVersion}`;
  const message = `POFR_PROTOCOL_VERSION: ${client} speaks protocol ${protocol}; this server speaks protocols ${SPOKEN_PROTOCOLS.join(', ')}. Install a client built by this server (pofr server package-client) or upgrade the server.`;
  log('refused client protocol', { remote, principal, protocol, client_version: announce.clientVersion });
  channel.on('error', () => {});
  channel.stderr.write(`${message}\n`);
  channel.exit(3);
  channel.end();
  return message;
}

function toAuthKey(algo: string, blob: Buffer): AuthKey {
  return Object.freeze({
    algo,
    blob: Buffer.from(blob),
    openssh: `${algo} ${blob.toString('base64')}`,
    fingerprint: sshFingerprint(blob),
  });
}
