import type { ErrorCode } from '../../errors.js';
import type { TransportRefusalKind } from '../../transport/index.js';

/**
 * Every kind of audit row (docs/schema.md "Audit" lists them; a test keeps the two in step). The
 * transport's refusals keep their kind; a refused batch gets the kind of its error code.
 */
export const AUDIT_KINDS = {
  unknown_key: 'the key is enrolled for no host, or not for the host id it logged in as',
  wrong_user: 'the key belongs to a host but logged in under another user name',
  revoked_key: 'the key of a revoked host',
  pending_key: 'the key of a host that awaits approval',
  auth_method: 'an authentication method other than publickey (password, keyboard-interactive, …)',
  key_type: 'a public key that is not ssh-ed25519',
  auth_signature: 'the key signature of the authentication does not verify',
  auth_attempts: 'too many authentication attempts on one connection',
  auth_timeout: 'connected but did not authenticate in time (half-open socket, stalled handshake)',
  channel_refused: 'a shell, pty, subsystem (sftp), X11 or agent request, or a session beyond the cap',
  forward_refused: 'TCP or socket forwarding, in either direction',
  exec_refused: 'an exec command other than the one channel this key may use',
  frame_malformed: 'bytes on a channel that are not a frame of the protocol',
  frame_too_large: 'a frame announced over the size limit',
  frame_stalled: 'a frame begun and not continued in time',
  rate_limit: 'a cap per address or per host (connections still authenticating, connections of one host)',
  connection_limit: "the server's cap of open or authenticating connections",
  revoked_cut: 'an open connection cut because its host was revoked or removed',
  enroll_refused: 'an enrollment refused (unknown, expired or used-up token, wrong password, revoked key)',
  batch_malformed: 'a batch that does not decode (framing, compression, JSON, schema)',
  batch_too_large: 'a batch over a protocol size limit',
  batch_version: 'a batch of a protocol version this server does not speak',
  batch_payload_hash: 'a batch whose payload does not match its hash',
  batch_signature: "a batch whose signature does not verify with the host's key",
  batch_seal: 'a batch whose forward-secure seal is missing or does not verify',
  batch_host: 'a batch naming another host than the key that sent it',
  batch_replay: 'a batch reusing a sequence number already stored with other content',
  host_unknown: 'a batch from a host that is not enrolled',
  host_pending: 'a batch from a host not approved yet',
  host_revoked: 'a batch from a revoked host',
  suppressed:
    'refusals from one address over the audit rate limit: counted in `suppressed`, not written one by one',
} as const satisfies Record<TransportRefusalKind, string> & Record<string, string>;

export type AuditKind = keyof typeof AUDIT_KINDS;

const BATCH_KINDS: Partial<Record<ErrorCode, AuditKind>> = {
  POFR_BATCH_MALFORMED: 'batch_malformed',
  POFR_BATCH_TOO_LARGE: 'batch_too_large',
  POFR_BATCH_VERSION: 'batch_version',
  POFR_BATCH_PAYLOAD_HASH: 'batch_payload_hash',
  POFR_BATCH_SIGNATURE: 'batch_signature',
  POFR_BATCH_SEAL: 'batch_seal',
  POFR_BATCH_HOST: 'batch_host',
  POFR_BATCH_REPLAY: 'batch_replay',
  POFR_HOST_UNKNOWN: 'host_unknown',
  POFR_HOST_PENDING: 'host_pending',
  POFR_HOST_REVOKED: 'host_revoked',
};

/** The audit kind of a batch refused with `code`. */
export function batchRefusalKind(code: ErrorCode): AuditKind {
  return BATCH_KINDS[code] ?? 'batch_malformed';
}
