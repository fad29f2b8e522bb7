import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { PofrError } from '../../errors.js';
import type { Database, Store } from '../../store/index.js';
import { checkRegistrationPassword } from './registration-password.js';

/**
 * Enrollment and client administration on the server: tokens, host registration, approval.
 * Tokens are stored only as sha256 hashes, so a copy of the database cannot enroll anyone.
 */

const nowMicros = () => Date.now() * 1000;

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export interface TokenOptions {
  readonly ttlMs: number;
  readonly uses: number;
  /** Clients enrolling with this token are approved at once (otherwise they wait for `approve`). */
  readonly approve: boolean;
}

/** Creates a one-time (or N-time) enrollment token and returns it; only its hash is kept. */
export async function createToken(store: Store, opts: TokenOptions, now = nowMicros()): Promise<string> {
  if (!Number.isInteger(opts.uses) || opts.uses < 1) {
    throw new PofrError('POFR_USAGE', `--uses must be a whole number of at least 1, got ${opts.uses}`);
  }
  const token = `pofr_${randomBytes(24).toString('base64url')}`;
  await store.db
    .insertInto('enrollment_tokens')
    .values({
      token_hash: hashToken(token),
      created_at: now,
      expires_at: now + Math.round(opts.ttlMs * 1000),
      uses_left: opts.uses,
      approve: opts.approve ? 1 : 0,
    })
    .execute();
  return token;
}

export interface EnrollmentInput {
  readonly name: string;
  readonly signingKey: string;
  readonly sshKey: string;
  readonly sshFingerprint: string;
  readonly remote: string;
  /** pofr version the client announced, if it did. */
  readonly clientVersion?: string | null;
}

export type EnrollmentOutcome =
  | {
      readonly ok: true;
      readonly host_id: string;
      readonly name: string;
      readonly status: 'approved' | 'pending';
    }
  | {
      readonly ok: false;
      readonly code: 'POFR_ENROLL_TOKEN' | 'POFR_ENROLL_FAILED';
      readonly message: string;
    };

/** What entitles a client to register: a valid token, or the right registration password. */
type Grant =
  | { readonly ok: true; readonly approve: boolean; consume(): Promise<void> }
  | {
      readonly ok: false;
      readonly code: 'POFR_ENROLL_TOKEN' | 'POFR_ENROLL_FAILED';
      readonly message: string;
    };

/**
 * Registers a client's keys with a token. Enrolling the same SSH key again returns the same host
 * (a client retrying after a lost reply must not create a second host), without using the token.
 */
export async function enrollWithToken(
  store: Store,
  input: EnrollmentInput & { readonly token: string },
  now = nowMicros(),
): Promise<EnrollmentOutcome> {
  const tokenHash = hashToken(input.token);
  return enroll(store, input, 'token', tokenHash, now, async (db) => {
    const token = await db
      .selectFrom('enrollment_tokens')
      .selectAll()
      .where('token_hash', '=', tokenHash)
      .executeTakeFirst();
    if (!token || token.expires_at < now || token.uses_left < 1) {
      const why = !token ? 'unknown' : token.expires_at < now ? 'expired' : 'used up';
      return {
        ok: false,
        code: 'POFR_ENROLL_TOKEN',
        message: `enrollment token is ${why}; create a new one on the server with: pofr server token`,
      };
    }
    return {
      ok: true,
      approve: token.approve === 1,
      consume: async () => {
        await db
          .updateTable('enrollment_tokens')
          .set({ uses_left: token.uses_left - 1 })
          .where('token_hash', '=', tokenHash)
          .execute();
      },
    };
  });
}

/** Registers a client's keys with the server's registration password (`pofr server password`). */
export async function enrollWithPassword(
  store: Store,
  input: EnrollmentInput & { readonly password: string },
  now = nowMicros(),
): Promise<EnrollmentOutcome> {
  // Checked before the transaction: scrypt takes tens of milliseconds and must not hold a lock.
  const check = await checkRegistrationPassword(store, input.password);
  return enroll(store, input, 'password', null, now, async () =>
    check.ok
      ? { ok: true, approve: check.approve, consume: async () => {} }
      : { ok: false, code: 'POFR_ENROLL_FAILED', message: check.reason },
  );
}

async function enroll(
  store: Store,
  input: EnrollmentInput,
  method: 'token' | 'password',
  tokenHash: string | null,
  now: number,
  grant: (db: Kysely<Database>) => Promise<Grant>,
): Promise<EnrollmentOutcome> {
  const outcome = await store.db.transaction().execute(async (trx): Promise<EnrollmentOutcome> => {
    const existing = await trx
      .selectFrom('hosts')
      .select(['host_id', 'name', 'status', 'signing_key'])
      .where('ssh_fingerprint', '=', input.sshFingerprint)
      .executeTakeFirst();
    if (existing) {
      if (existing.signing_key !== input.signingKey) {
        return {
          ok: false,
          code: 'POFR_ENROLL_FAILED',
          message: `SSH key ${input.sshFingerprint} is already enrolled with another signing key; deregister the client and enroll anew`,
        };
      }
      if (existing.status === 'revoked') {
        return {
          ok: false,
          code: 'POFR_ENROLL_FAILED',
          message: `host ${existing.name} (${existing.host_id}) is revoked`,
        };
      }
      if (input.clientVersion) {
        await trx
          .updateTable('hosts')
          .set({ client_version: input.clientVersion })
          .where('host_id', '=', existing.host_id)
          .execute();
      }
      return {
        ok: true,
        host_id: existing.host_id,
        name: existing.name,
        status: existing.status as 'approved' | 'pending',
      };
    }
    const g = await grant(trx);
    if (!g.ok) return g;
    await g.consume();
    const hostId = randomUUID();
    const status = g.approve ? 'approved' : 'pending';
    await trx
      .insertInto('hosts')
      .values({
        host_id: hostId,
        name: input.name,
        status,
        ssh_key: input.sshKey,
        ssh_fingerprint: input.sshFingerprint,
        signing_key: input.signingKey,
        enrolled_at: now,
        approved_at: g.approve ? now : null,
        client_version: input.clientVersion ?? null,
      })
      .execute();
    return { ok: true, host_id: hostId, name: input.name, status };
  });
  // The audit row is written whatever the outcome: refused enrollments are what an analyst wants to see.
  await store.db
    .insertInto('enrollments')
    .values({
      host_id: outcome.ok ? outcome.host_id : null,
      at: now,
      method,
      token_hash: tokenHash,
      remote: input.remote,
      outcome: outcome.ok ? outcome.status : 'refused',
      reason: outcome.ok ? null : outcome.message,
    })
    .execute();
  return outcome;
}

export type KeyDecision =
  | { readonly ok: true; readonly hostId: string }
  | { readonly ok: false; readonly reason: string };

/** May this SSH key write as this host? Only its own approved host, never a revoked one. */
export async function authorizeHostKey(
  store: Store,
  hostId: string,
  fingerprint: string,
): Promise<KeyDecision> {
  const host = await store.db
    .selectFrom('hosts')
    .select(['host_id', 'name', 'status', 'ssh_fingerprint'])
    .where('host_id', '=', hostId)
    .executeTakeFirst();
  if (!host) return { ok: false, reason: `no enrolled host ${hostId}` };
  if (host.ssh_fingerprint !== fingerprint)
    return { ok: false, reason: `key ${fingerprint} is not the key of host ${hostId}` };
  if (host.status === 'revoked') return { ok: false, reason: `host ${host.name} (${hostId}) is revoked` };
  if (host.status !== 'approved') {
    return {
      ok: false,
      reason: `host ${host.name} (${hostId}) awaits approval: pofr server approve ${host.name}`,
    };
  }
  return { ok: true, hostId };
}

export interface ClientRow {
  readonly host_id: string;
  readonly client_version: string | null;
  readonly name: string;
  readonly status: string;
  readonly enrolled_at: number;
  readonly last_batch_at: number | null;
  readonly last_seq: number | null;
  readonly ssh_fingerprint: string;
}

export async function listClients(store: Store): Promise<ClientRow[]> {
  return store.db
    .selectFrom('hosts')
    .select([
      'host_id',
      'name',
      'status',
      'enrolled_at',
      'last_batch_at',
      'last_seq',
      'ssh_fingerprint',
      'client_version',
    ])
    .orderBy('enrolled_at')
    .execute();
}

/** Remembers the pofr version a host's client announced on connecting. */
export async function recordClientVersion(store: Store, hostId: string, version: string): Promise<void> {
  await store.db
    .updateTable('hosts')
    .set({ client_version: version })
    .where('host_id', '=', hostId)
    .execute();
}

/** Finds exactly one host by id or name; a name shared by several hosts must be given as an id. */
export async function findHost(
  store: Store,
  ref: string,
): Promise<{ host_id: string; name: string; status: string }> {
  const rows = await store.db
    .selectFrom('hosts')
    .select(['host_id', 'name', 'status'])
    .where((eb) => eb.or([eb('host_id', '=', ref), eb('name', '=', ref)]))
    .execute();
  const exact = rows.find((r) => r.host_id === ref);
  if (exact) return exact;
  if (rows.length === 0) {
    throw new PofrError(
      'POFR_HOST_UNKNOWN',
      `no host named or with id "${ref}"; list them with: pofr server clients`,
    );
  }
  if (rows.length > 1) {
    throw new PofrError('POFR_USAGE', `${rows.length} hosts are named "${ref}"; give the host id instead`);
  }
  return rows[0];
}

export async function setHostStatus(
  store: Store,
  ref: string,
  status: 'approved' | 'revoked',
  now = nowMicros(),
) {
  const host = await findHost(store, ref);
  await store.db
    .updateTable('hosts')
    .set(status === 'approved' ? { status, approved_at: now, revoked_at: null } : { status, revoked_at: now })
    .where('host_id', '=', host.host_id)
    .execute();
  return { ...host, status };
}

/** Deletes a host and everything recorded for it (rows cascade from hosts). */
export async function removeHost(store: Store, ref: string) {
  const host = await findHost(store, ref);
  await store.db.transaction().execute(async (trx) => {
    // Evidence and batches first: their foreign keys cascade, but explicit deletes keep PostgreSQL
    // and SQLite behaviour identical even where a foreign key was not declared.
    for (const table of [
      'file_opens',
      'endpoint_states',
      'endpoints',
      'processes',
      'batch_evidence',
      'batches',
    ] as const) {
      await trx.deleteFrom(table).where('host_id', '=', host.host_id).execute();
    }
    await trx.deleteFrom('hosts').where('host_id', '=', host.host_id).execute();
  });
  return host;
}
