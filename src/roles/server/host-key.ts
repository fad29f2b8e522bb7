import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
