import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import { PofrError } from '../errors.js';

/** An SSH identity: the private key in OpenSSH format, the public key as an authorized_keys line. */
export interface SshKeyPair {
  readonly privateKey: string;
  /** "ssh-ed25519 AAAA… pofr" */
  readonly publicKey: string;
}

export function generateSshKeyPair(): SshKeyPair {
  const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'pofr' });
  return { privateKey: pair.private, publicKey: pair.public };
}

/**
 * The OpenSSH fingerprint of a public key, as `ssh-keygen -lf` prints it.
 *
 * @param publicKey an authorized_keys line ("ssh-ed25519 AAAA… comment") or the raw key blob
 * @example sshFingerprint('ssh-ed25519 AAAAC3Nza… pofr') // => 'SHA256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg'
 */
export function sshFingerprint(publicKey: string | Buffer): string {
  const blob = typeof publicKey === 'string' ? publicKeyBlob(publicKey) : publicKey;
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key blob of an authorized_keys line, checked to name the same algorithm it encodes. */
export function publicKeyBlob(line: string): Buffer {
  const [algo, b64] = line.trim().split(/\s+/);
  if (!algo || !b64 || !/^[A-Za-z0-9+/]+=*$/.test(b64)) {
    throw new PofrError('POFR_USAGE', `not an OpenSSH public key line: ${JSON.stringify(line.slice(0, 80))}`);
  }
  const blob = Buffer.from(b64, 'base64');
  const nameLen = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (nameLen < 0 || 4 + nameLen > blob.length || blob.subarray(4, 4 + nameLen).toString('latin1') !== algo) {
    throw new PofrError('POFR_USAGE', `OpenSSH public key line: the key data is not a ${algo} key`);
  }
  return blob;
}

/** Normalises a pinned fingerprint as users paste it (with or without the "SHA256:" prefix). */
export function normalizeFingerprint(fp: string): string {
  const t = fp.trim();
  const body = t.startsWith('SHA256:') ? t.slice(7) : t;
  if (!/^[A-Za-z0-9+/]{43}$/.test(body)) {
    throw new PofrError(
      'POFR_USAGE',
      `not an SSH SHA256 fingerprint: ${JSON.stringify(fp)} (expected SHA256:<43 base64 chars>)`,
    );
  }
  return `SHA256:${body}`;
}
