import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

/** An ed25519 key pair for signing batches, as PEM text (PKCS#8 private, SPKI public). */
export interface SigningKeyPair {
  readonly privatePem: string;
  readonly publicPem: string;
}

export function generateSigningKeyPair(): SigningKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

export function loadPrivateKey(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`signing key is ${key.asymmetricKeyType}, not ed25519`);
  return key;
}

/**
 * Parsed public keys by PEM text: the server checks every batch against its host's key, and parsing
 * it anew was a sixteenth of a small batch's ingest. Key objects are immutable; the bound keeps a
 * fleet's worth.
 */
const publicKeys = new Map<string, KeyObject>();
const MAX_PUBLIC_KEYS = 16_384;

export function loadPublicKey(pem: string): KeyObject {
  const cached = publicKeys.get(pem);
  if (cached !== undefined) return cached;
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`public key is ${key.asymmetricKeyType}, not ed25519`);
  if (publicKeys.size >= MAX_PUBLIC_KEYS) publicKeys.delete(publicKeys.keys().next().value as string);
  publicKeys.set(pem, key);
  return key;
}
