import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Store } from '../../store/index.js';

const SETTING = 'web_access_tokens';
const storedSchema = z.array(
  z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), created_at: z.number() }),
);

/**
 * Access tokens for the web UI on an address other than loopback (`pofr server token --web`). Only
 * their sha256 is kept, in the database's server settings, so every server node accepts the same
 * tokens and a copy of the database opens nothing. Tokens are 32 random bytes: a hash is enough,
 * there is nothing to brute-force.
 */
export async function createWebToken(store: Store, now = Date.now() * 1000): Promise<string> {
  const token = `pofr_web_${randomBytes(32).toString('base64url')}`;
  const list = await readTokens(store);
  list.push({ sha256: sha256(token), created_at: now });
  const value = JSON.stringify(list);
  await store.db
    .insertInto('server_settings')
    .values({ name: SETTING, value, updated_at: now })
    .onConflict((oc) => oc.column('name').doUpdateSet({ value, updated_at: now }))
    .execute();
  return token;
}

/** True when at least one web access token exists (a non-loopback web UI refuses to start without). */
export async function hasWebTokens(store: Store): Promise<boolean> {
  return (await readTokens(store)).length > 0;
}

export async function checkWebToken(store: Store, token: string): Promise<boolean> {
  const digest = Buffer.from(sha256(token), 'hex');
  let ok = false;
  for (const t of await readTokens(store)) ok = timingSafeEqual(Buffer.from(t.sha256, 'hex'), digest) || ok;
  return ok;
}

async function readTokens(store: Store): Promise<{ sha256: string; created_at: number }[]> {
  const row = await store.db
    .selectFrom('server_settings')
    .select('value')
    .where('name', '=', SETTING)
    .executeTakeFirst();
  if (!row) return [];
  const parsed = storedSchema.safeParse(JSON.parse(row.value));
  return parsed.success ? parsed.data : [];
}

function sha256(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}
