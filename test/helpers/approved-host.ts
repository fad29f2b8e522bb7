import { randomBytes } from 'node:crypto';
import { generateSigningKeyPair, type SigningKeyPair } from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';
import { generateSshKeyPair, type SshKeyPair, sshFingerprint } from '../../src/transport/index.js';

/** A host enrolled straight into the store with a real SSH key, so it can log in to a real server. */
export interface EnrolledHost {
  readonly hostId: string;
  readonly ssh: SshKeyPair;
  readonly signing: SigningKeyPair;
}

export async function enrollDirectly(
  store: Store,
  opts: { status?: string; name?: string } = {},
): Promise<EnrolledHost> {
  const ssh = generateSshKeyPair();
  const signing = generateSigningKeyPair();
  const hostId = `h-${randomBytes(4).toString('hex')}`;
  await store.db
    .insertInto('hosts')
    .values({
      host_id: hostId,
      name: opts.name ?? `${hostId}.example`,
      status: opts.status ?? 'approved',
      ssh_key: ssh.publicKey,
      ssh_fingerprint: sshFingerprint(ssh.publicKey),
      signing_key: signing.publicPem,
      enrolled_at: Date.now() * 1000,
    })
    .execute();
  return { hostId, ssh, signing };
}
