/**
 * What the transport refuses, as data for the server's audit trail (the transport knows no store:
 * the server composes a sink that writes rows). Batch refusals come from ingest, not from here.
 */
export type TransportRefusalKind =
  /** The key is enrolled for no host, or not for the host id it logs in as. */
  | 'unknown_key'
  /** The key belongs to a host, but it logged in under another user name. */
  | 'wrong_user'
  | 'revoked_key'
  | 'pending_key'
  /** An authentication method other than publickey (password, keyboard-interactive, …). */
  | 'auth_method'
  /** A public key that is not ssh-ed25519. */
  | 'key_type'
  | 'auth_signature'
  | 'auth_attempts'
  /** Connected but did not authenticate in time (half-open or stalled handshakes). */
  | 'auth_timeout'
  /** shell, pty, subsystem (sftp), X11, agent forwarding, or a session beyond the cap. */
  | 'channel_refused'
  /** TCP or socket forwarding in either direction. */
  | 'forward_refused'
  /** An exec command other than the channel this key may use. */
  | 'exec_refused'
  | 'frame_malformed'
  | 'frame_too_large'
  /** A frame begun and not continued in time (a slow or stuck client holding buffers). */
  | 'frame_stalled'
  /** A per-source or per-host cap (connections before authentication, connections of one host). */
  | 'rate_limit'
  /** The server-wide cap of open sockets. */
  | 'connection_limit'
  /** An open connection cut because its host was revoked or removed. */
  | 'revoked_cut';

export interface TransportRefusal {
  readonly kind: TransportRefusalKind;
  readonly reason: string;
  /** "ip:port" ("[v6]:port") of the peer. */
  readonly remote: string | null;
  /** The peer's address alone. */
  readonly source: string | null;
  readonly user?: string | null;
  readonly fingerprint?: string | null;
  /** The host id, once authentication named one. */
  readonly hostId?: string | null;
  readonly code?: string | null;
}

export type RefusalSink = (refusal: TransportRefusal) => void;

/** A refusal on a channel of `peer` (whose host is `hostId` once authentication named one). */
export function channelRefusal(
  peer: { remote: string; source: string; user: string | null; fingerprint: string | null },
  kind: TransportRefusalKind,
  reason: string,
  extra: { code?: string; hostId?: string | null } = {},
): TransportRefusal {
  return {
    kind,
    reason,
    code: extra.code ?? null,
    remote: peer.remote,
    source: peer.source,
    user: peer.user,
    fingerprint: peer.fingerprint,
    hostId: extra.hostId ?? null,
  };
}

/** "ip:port", with brackets around an IPv6 address so the port stays readable. */
export function formatRemote(ip: string, port: number | string): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
