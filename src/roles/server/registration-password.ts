import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { z } from 'zod';
import { PofrError } from '../../errors.js';
import type { Store } from '../../store/index.js';

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

const SETTING = 'registration_password';
// scrypt at N=2^15 costs ~50 ms per guess: cheap for an enrollment, expensive for a brute force.
const PARAMS = { N: 1 << 15, r: 8, p: 1, keylen: 32 } as const;

const storedSchema = z.object({
  salt: z.string(),
  hash: z.string(),
  N: z.number().int(),
  r: z.number().int(),
  p: z.number().int(),
  approve: z.boolean(),
});

async function derive(
  password: string,
  salt: Buffer,
  p: { N: number; r: number; p: number },
): Promise<Buffer> {
  return scryptAsync(password, salt, PARAMS.keylen, { N: p.N, r: p.r, p: p.p, maxmem: 128 * p.N * p.r * 2 });
}

/**
 * Sets the registration password clients may enroll with (`pofr client enroll --password`), as a
 * salted scrypt hash. `approve`: such clients are approved at once; otherwise they wait in pending.
 */
export async function setRegistrationPassword(
  store: Store,
  password: string,
  approve: boolean,
  now = Date.now() * 1000,
) {
  if (password.length < 12) {
    throw new PofrError('POFR_USAGE', 'the registration password must have at least 12 characters');
  }
  const salt = randomBytes(16);
  const hash = await derive(password, salt, PARAMS);
  const value = JSON.stringify({
    salt: salt.toString('base64'),
    hash: hash.toString('base64'),
    N: PARAMS.N,
    r: PARAMS.r,
    p: PARAMS.p,
    approve,
  });
  await store.db
    .insertInto('server_settings')
    .values({ name: SETTING, value, updated_at: now })
    .onConflict((oc) => oc.column('name').doUpdateSet({ value, updated_at: now }))
    .execute();
}

export async function clearRegistrationPassword(store: Store): Promise<void> {
  await store.db.deleteFrom('server_settings').where('name', '=', SETTING).execute();
}

export type PasswordCheck =
  | { readonly ok: true; readonly approve: boolean }
  | { readonly ok: false; readonly reason: string };

/** Checks a password in constant time against the stored hash. */
export async function checkRegistrationPassword(store: Store, password: string): Promise<PasswordCheck> {
  const row = await store.db
    .selectFrom('server_settings')
    .select('value')
    .where('name', '=', SETTING)
    .executeTakeFirst();
  if (!row)
    return {
      ok: false,
      reason: 'this server has no registration password; enroll with a token from `pofr server token`',
    };
  const stored = storedSchema.parse(JSON.parse(row.value));
  const expected = Buffer.from(stored.hash, 'base64');
  const actual = await derive(password, Buffer.from(stored.salt, 'base64'), stored);
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    return { ok: false, reason: 'wrong registration password' };
  }
  return { ok: true, approve: stored.approve };
}
