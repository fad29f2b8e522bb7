import { resolve } from 'node:path';
import { shellQuote } from '../../query/index.js';
import type { Store } from '../../store/index.js';
import { sshFingerprint } from '../../transport/index.js';
import type { AuditTrail } from './audit-trail.js';

/**
 * OpenSSH mode (docs/deployment.md "The site's own sshd"): the answer to sshd's
 * `AuthorizedKeysCommand … %t %k` for one offered key. An approved host's key gets the ingest
 * channel, any other ed25519 key the enrollment channel (which still needs a token or the
 * password), a revoked key nothing. Each line starts with `restrict` (no pty, no forwarding of any
 * kind, no agent, no X11, no ~/.ssh/rc) and a forced command: whatever the client asks to run, sshd
 * runs pofr's channel, which itself refuses any other request (a shell, sftp, another command).
 */
export interface AuthorizedKeysRequest {
  readonly dataDir: string;
  /** `%t`: the key type sshd was offered. */
  readonly keyType: string;
  /** `%k`: the key, base64. */
  readonly key: string;
  /** The command sshd should run for pofr, as argv (default: this node and this CLI). */
  readonly pofr: readonly string[];
  /** `%C` ("client-ip client-port server-ip server-port"), for the audit trail. */
  readonly connection?: string;
  /** `%u`, for the audit trail. */
  readonly user?: string;
}

export interface AuthorizedKeysAnswer {
  /** The authorized_keys line to print, or null to print nothing (the key is refused). */
  readonly line: string | null;
  readonly why: string;
}

export async function authorizedKeysLine(
  store: Store,
  audit: AuditTrail,
  req: AuthorizedKeysRequest,
): Promise<AuthorizedKeysAnswer> {
  const remote = remoteOfConnection(req.connection);
  const keyText = `${req.keyType} ${req.key}`;
  let fingerprint: string | null = null;
  try {
    fingerprint = sshFingerprint(keyText);
  } catch {
    fingerprint = null;
  }
  const refuse = (kind: 'key_type' | 'revoked_key', why: string): AuthorizedKeysAnswer => {
    audit.record({ kind, reason: why, remote, fingerprint, user: req.user ?? null });
    return { line: null, why };
  };
  if (req.keyType !== 'ssh-ed25519' || fingerprint === null) {
    return refuse('key_type', `key type ${req.keyType} is not ssh-ed25519 (or the key does not parse)`);
  }
  const host = await store.db
    .selectFrom('hosts')
    .select(['host_id', 'name', 'status'])
    .where('ssh_fingerprint', '=', fingerprint)
    .executeTakeFirst();
  if (host?.status === 'revoked') {
    const why = `host ${host.name} (${host.host_id}) is revoked`;
    audit.record({
      kind: 'revoked_key',
      reason: why,
      remote,
      fingerprint,
      hostId: host.host_id,
      user: req.user ?? null,
    });
    return { line: null, why };
  }
  const data = resolve(req.dataDir);
  const command =
    host?.status === 'approved'
      ? [...req.pofr, 'server', 'ingest-stdio', '--data', data, '--host', host.host_id]
      : [...req.pofr, 'server', 'enroll-stdio', '--data', data, '--key', keyText];
  const forced = command.map(shellQuote).join(' ');
  // Inside command="…" only a backslash and a double quote need escaping (sshd's auth-options.c).
  const option = forced.replaceAll('\\', '\\\\').replaceAll('"', '\\"');
  return {
    line: `restrict,command="${option}" ${keyText}`,
    why: host?.status === 'approved' ? `ingest for host ${host.host_id}` : 'enrollment',
  };
}

/** "ip port ip port" (sshd's %C and $SSH_CONNECTION) as the "ip:port" of the client. */
export function remoteOfConnection(connection: string | undefined): string | null {
  const parts = connection?.trim().split(/\s+/) ?? [];
  if (parts.length < 2) return null;
  return parts[0].includes(':') ? `[${parts[0]}]:${parts[1]}` : `${parts[0]}:${parts[1]}`;
}
