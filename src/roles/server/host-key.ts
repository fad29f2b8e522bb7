import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PofrError } from '../../errors.js';
import type { Store } from '../../store/index.js';
import { generateSshKeyPair, sshFingerprint } from '../../transport/index.js';

export interface HostKey {
  readonly privateKey: string;
  readonly publicKey: string;
  readonly fingerprint: string;
}

const KEY_FILE = 'ssh_host_ed25519_key';

/** Loads the server's SSH host key from the data directory, creating it on first use. */
export function ensureHostKey(dataDir: string): HostKey {
  const priv = join(dataDir, KEY_FILE);
  const pub = `${priv}.pub`;
  if (!existsSync(priv)) {
    const pair = generateSshKeyPair();
    writeFileSync(priv, pair.privateKey, { mode: 0o600, flag: 'wx' });
    writeFileSync(pub, `${pair.publicKey}\n`, { mode: 0o644 });
  }
  const publicKey = readFileSync(pub, 'utf8').trim();
  return { privateKey: readFileSync(priv, 'utf8'), publicKey, fingerprint: sshFingerprint(publicKey) };
}

const SETTING = 'ssh_host_key';

/**
 * The host key every node of one store serves. SQLite: the data directory's. PostgreSQL: the one
 * in `server_settings`, so nodes on several machines need only the database URL and clients pin one
 * fingerprint whichever node they reach. The first node puts its key there (its file's, or a new
 * one); every later node takes it and writes it into its data directory. A data directory whose
 * own key differs is refused, rather than silently serving two identities.
 */
export async function ensureSharedHostKey(store: Store, dataDir: string): Promise<HostKey> {
  if (!store.caps.concurrentWriters) return ensureHostKey(dataDir);
  const read = async () => {
    const row = await store.db
      .selectFrom('server_settings')
      .select('value')
      .where('name', '=', SETTING)
      .executeTakeFirst();
    return row ? (JSON.parse(row.value) as { private_key: string; public_key: string }) : undefined;
  };
  const priv = join(dataDir, KEY_FILE);
  let shared = await read();
  if (shared === undefined) {
    const local = ensureHostKey(dataDir);
    const value = JSON.stringify({ private_key: local.privateKey, public_key: local.publicKey });
    // Two first nodes at once: one insert wins, and both serve the winner's key.
    await store.db
      .insertInto('server_settings')
      .values({ name: SETTING, value, updated_at: Date.now() * 1000 })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    shared = await read();
  }
  if (shared === undefined) throw new Error('the shared host key vanished from server_settings');
  if (existsSync(priv)) {
    const mine = readFileSync(`${priv}.pub`, 'utf8').trim();
    if (mine !== shared.public_key) {
      throw new PofrError(
        'POFR_STORE_CONFIG',
        `${priv} is another SSH host key (${sshFingerprint(mine)}) than the one this database's nodes serve (${sshFingerprint(shared.public_key)}); remove ${priv} and ${priv}.pub to take the shared one`,
      );
    }
  } else {
    writeFileSync(priv, shared.private_key, { mode: 0o600, flag: 'wx' });
    writeFileSync(`${priv}.pub`, `${shared.public_key}\n`, { mode: 0o644 });
  }
  return {
    privateKey: shared.private_key,
    publicKey: shared.public_key,
    fingerprint: sshFingerprint(shared.public_key),
  };
}
