import type { Readable, Writable } from 'node:stream';
import type { CompiledRule } from '../../detect/index.js';
import { openStore, readConfiguredRules, readStoreConfig, type Store } from '../../store/index.js';
import {
  type AuthKey,
  ENROLL_COMMAND,
  INGEST_COMMAND,
  type PeerContext,
  publicKeyBlob,
  serveEnrollChannel,
  serveIngestChannel,
  sshFingerprint,
  stdioByteChannel,
} from '../../transport/index.js';
import { AuditTrail } from './audit-trail.js';
import { remoteOfConnection } from './authorized-keys.js';
import { loadLiveRules } from './live-rules.js';
import { createServerHandlers, type Log } from './server-handlers.js';

/**
 * The two channels of OpenSSH mode, as the forced commands that `pofr server authorized-keys`
 * hands to sshd: the same protocols as the embedded server, over stdin/stdout. sshd has checked the
 * key; the command checks what the client asked to run ($SSH_ORIGINAL_COMMAND: a shell has none,
 * sftp is its subsystem's command) and refuses everything but its own channel, with an audit row.
 */
export interface StdioChannelOptions {
  readonly dataDir: string;
  readonly log: Log;
  /** Where $SSH_ORIGINAL_COMMAND and $SSH_CONNECTION come from (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  /** How often an ingest channel looks whether its host was revoked meanwhile; default 500 ms. */
  readonly revocationPollMs?: number;
}

interface Io {
  readonly store: Store;
  readonly audit: AuditTrail;
  readonly peer: PeerContext;
  readonly asked: string | undefined;
  /** What the client announced, when sshd passes it on (`AcceptEnv POFR_CLIENT_VERSION`). */
  readonly clientVersion: string | null;
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

async function openIo(opts: StdioChannelOptions, fingerprint: string | null): Promise<Io> {
  const env = opts.env ?? process.env;
  const remote = remoteOfConnection(env.SSH_CONNECTION) ?? 'unknown';
  const store = await openStore(readStoreConfig(opts.dataDir));
  return {
    store,
    audit: AuditTrail.shared(store, opts.log),
    peer: {
      remote,
      source: remote.replace(/^\[?([^\]]*?)\]?:\d+$/, '$1'),
      fingerprint,
      user: env.USER ?? null,
    },
    asked: env.SSH_ORIGINAL_COMMAND,
    clientVersion: env.POFR_CLIENT_VERSION?.slice(0, 64) ?? null,
    stdin: opts.stdin ?? process.stdin,
    stdout: opts.stdout ?? process.stdout,
    stderr: opts.stderr ?? process.stderr,
  };
}

async function closeIo(io: Io): Promise<void> {
  await io.audit.close();
  await io.store.close();
}

/** Refuses what the client asked for instead of `expected`, with a row and a line on its stderr. */
function refuseRequest(io: Io, expected: string, hostId: string | null, told: string): number {
  const asked = io.asked?.trim();
  const kind = asked === undefined || asked === '' || /sftp/.test(asked) ? 'channel_refused' : 'exec_refused';
  const what =
    asked === undefined || asked === ''
      ? 'a shell'
      : /sftp/.test(asked)
        ? 'sftp'
        : `exec ${JSON.stringify(asked.slice(0, 200))}`;
  io.audit.record({
    kind,
    reason: `${what} is not offered through sshd to this key, only ${expected}`,
    remote: io.peer.remote,
    source: io.peer.source,
    fingerprint: io.peer.fingerprint,
    hostId,
    user: io.peer.user,
  });
  io.stderr.write(`pofr: ${what} refused: ${told}\n`);
  return 1;
}

/** Runs until the channel ends; resolves with the exit status for the process. */
function serveUntilDone(
  start: (onFinished: (status: number) => void) => { cut?: (s: number, m: string) => void },
) {
  let resolveDone: (status: number) => void = () => {};
  const done = new Promise<number>((r) => {
    resolveDone = r;
  });
  const handle = start((status) => resolveDone(status));
  return { done, handle };
}

/** `pofr server ingest-stdio`: the ingest channel of one approved host, cut as soon as it is revoked. */
export async function runIngestStdio(
  opts: StdioChannelOptions & { readonly hostId: string },
): Promise<number> {
  const io = await openIo(opts, null);
  try {
    const host = await io.store.db
      .selectFrom('hosts')
      .select(['status', 'ssh_fingerprint'])
      .where('host_id', '=', opts.hostId)
      .executeTakeFirst();
    const peer: PeerContext = { ...io.peer, fingerprint: host?.ssh_fingerprint ?? null };
    const ioWithKey = { ...io, peer };
    if (io.asked?.trim() !== INGEST_COMMAND) {
      return refuseRequest(
        ioWithKey,
        `\`${INGEST_COMMAND}\``,
        opts.hostId,
        "this key may only send its own host's batches",
      );
    }
    // sshd asked authorized-keys a moment ago; the host may have been revoked since.
    if (host?.status !== 'approved') {
      const why = host ? `host ${opts.hostId} is ${host.status}` : `host ${opts.hostId} is not enrolled`;
      io.audit.record({
        kind: host?.status === 'pending' ? 'pending_key' : 'revoked_key',
        reason: why,
        remote: peer.remote,
        fingerprint: peer.fingerprint,
        hostId: opts.hostId,
        user: peer.user,
      });
      io.stderr.write(`pofr: ${why}\n`);
      return 1;
    }
    // The rules `server init --rules` recorded, as `server run` would evaluate them: an invalid
    // rule set refuses the channel (the client keeps its batches) rather than ingest unwatched.
    let rules: CompiledRule[];
    try {
      rules = loadLiveRules(readConfiguredRules(opts.dataDir), io.store.caps, opts.log);
    } catch (e) {
      opts.log('detection rules refused: ingest channel closed', { error: (e as Error).message });
      io.stderr.write(
        `pofr: the server's detection rules are invalid; ask its operator (${(e as Error).message})\n`,
      );
      return 1;
    }
    const handlers = createServerHandlers({ store: io.store, audit: io.audit, log: opts.log, rules });
    const { done, handle } = serveUntilDone((onFinished) =>
      serveIngestChannel(stdioByteChannel(io.stdin, io.stdout, io.stderr, onFinished), {
        principal: opts.hostId,
        peer,
        ingest: (p, b, c) => handlers.ingest(p, b, { ...c, clientVersion: io.clientVersion }),
        refused: handlers.refused,
        log: opts.log,
      }),
    );
    // The revocation of a host on any node reaches this process through the shared store.
    const poll = setInterval(() => {
      void io.store.db
        .selectFrom('hosts')
        .select('status')
        .where('host_id', '=', opts.hostId)
        .executeTakeFirst()
        .then((h) => {
          if (h?.status === 'approved') return;
          const why = h
            ? `host ${opts.hostId} was ${h.status}: connection cut`
            : `host ${opts.hostId} was removed: connection cut`;
          io.audit.record({
            kind: 'revoked_cut',
            reason: why,
            remote: peer.remote,
            fingerprint: peer.fingerprint,
            hostId: opts.hostId,
          });
          handle.cut?.(1, why);
        })
        .catch((e: unknown) => opts.log('revocation check failed', { error: (e as Error).message }));
    }, opts.revocationPollMs ?? 500);
    try {
      return await done;
    } finally {
      clearInterval(poll);
    }
  } finally {
    await closeIo(io);
  }
}

/** `pofr server enroll-stdio`: the enrollment channel for a key sshd does not know as an approved host's. */
export async function runEnrollStdio(opts: StdioChannelOptions & { readonly key: string }): Promise<number> {
  const blob = publicKeyBlob(opts.key);
  const [algo, b64] = opts.key.trim().split(/\s+/);
  const key: AuthKey = { algo, blob, openssh: `${algo} ${b64}`, fingerprint: sshFingerprint(blob) };
  const io = await openIo(opts, key.fingerprint);
  try {
    if (io.asked?.trim() !== ENROLL_COMMAND) {
      const host = await io.store.db
        .selectFrom('hosts')
        .select(['host_id', 'status'])
        .where('ssh_fingerprint', '=', key.fingerprint)
        .executeTakeFirst();
      const told =
        io.asked?.trim() === INGEST_COMMAND
          ? host
            ? `host ${host.host_id} is ${host.status}, not approved: it may only enroll until \`pofr server approve\``
            : 'this key is not enrolled: enroll first (`pofr client enroll`)'
          : 'this key may only enroll';
      return refuseRequest(io, `\`${ENROLL_COMMAND}\``, host?.host_id ?? null, told);
    }
    const handlers = createServerHandlers({ store: io.store, audit: io.audit, log: opts.log });
    const { done } = serveUntilDone((onFinished) => {
      serveEnrollChannel(stdioByteChannel(io.stdin, io.stdout, io.stderr, onFinished), {
        peer: io.peer,
        key,
        enroll: (req, ctx) => handlers.enroll(req, { ...ctx, clientVersion: io.clientVersion }),
        refused: handlers.refused,
        log: opts.log,
      });
      return {};
    });
    return await done;
  } finally {
    await closeIo(io);
  }
}
