import { isPofrError } from '../errors.js';

/**
 * Whether an error raised while applying a batch is about the batch's content (refuse it, keep the
 * bytes) rather than about the server (rethrow: nothing was committed, so nothing may be ACKed, and
 * the client keeps the batch to resend). Only data and constraint errors qualify: a NUL character
 * PostgreSQL text refuses, a value out of a column's range. Connection loss, disk full, lock
 * timeouts and our own bugs are not the batch's fault.
 */
export function isBatchContentError(e: unknown): boolean {
  if (isPofrError(e)) return e.code === 'POFR_BATCH_MALFORMED';
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  // PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation).
  if (/^2[23][0-9A-Z]{3}$/.test(code)) return true;
  // SQLite (better-sqlite3 extended result codes).
  return code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG';
}
