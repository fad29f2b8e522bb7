/**
 * Every pofr error, defined once with a stable code (documented in docs/errors.md; a test checks
 * that the two agree). Expected refusals travel as data (e.g. IngestResult); a PofrError is thrown
 * when an operation cannot go on, and the CLI prints its message on one line.
 */
export const ERROR_CODES = {
  POFR_USAGE: 'bad command-line usage',
  POFR_BATCH_MALFORMED: 'a batch could not be decoded (framing, compression, JSON or schema)',
  POFR_BATCH_TOO_LARGE: 'a batch exceeds a protocol size limit',
  POFR_BATCH_VERSION: 'a batch uses a protocol version this build does not speak',
  POFR_BATCH_PAYLOAD_HASH: 'the payload does not match the payload hash in the envelope',
  POFR_BATCH_SIGNATURE: 'the ed25519 signature does not verify with the host key on record',
  POFR_BATCH_SEAL: "the forward-secure seal is missing or does not verify with the host's seal seed",
  POFR_BATCH_HOST: 'a batch names a host other than the one whose key sent it',
  POFR_BATCH_CHAIN: 'a batch does not link to the previous batch of its host (gap or fork)',
  POFR_BATCH_REPLAY: 'a batch with this sequence number was already stored with other content',
  POFR_HOST_UNKNOWN: 'no enrolled host matches the given name or id',
  POFR_HOST_PENDING: 'the host is enrolled but not approved yet',
  POFR_HOST_REVOKED: 'the host key was revoked',
  POFR_HOSTKEY_CHANGED: 'the server presented a host key other than the pinned one',
  POFR_ENROLL_TOKEN: 'the enrollment token is unknown, expired or used up',
  POFR_ENROLL_FAILED: 'enrollment did not complete',
  POFR_NOT_ENROLLED: 'the client state directory has no enrollment',
  POFR_SPOOL_FULL: 'the client spool reached its size bound',
  POFR_SPOOL_CORRUPT: 'a spooled batch file is unreadable',
  POFR_TRANSPORT: 'the SSH connection to the server failed',
  POFR_STORE_INIT: 'the data directory has no initialised store',
  POFR_STORE_CONFIG: 'the store configuration is invalid',
  POFR_STORE_MIGRATION: 'a schema migration failed',
  POFR_SQL_READONLY: 'pofr sql accepts read-only statements only',
  POFR_TIME_FORMAT: 'a time argument is neither ISO 8601 nor relative (-15m, -2h, -7d)',
  POFR_VERIFY_FAILED: 'stored evidence failed re-verification',
  POFR_PERMISSION: 'an operation needs privileges this process does not have',
  POFR_PACKAGE: 'a client or server package could not be built',
  POFR_RULE_INVALID: 'a detection rule file could not be read or is not a valid Sigma rule',
  POFR_PROTOCOL_VERSION: 'the client speaks a protocol version this server does not',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class PofrError extends Error {
  readonly code: ErrorCode;
  readonly detail: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, detail?: Record<string, unknown>) {
    super(message);
    this.name = 'PofrError';
    this.code = code;
    this.detail = detail;
  }
}

export function isPofrError(e: unknown): e is PofrError {
  return e instanceof PofrError;
}
