import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { PofrError } from '../../errors.js';

/**
 * The client's state directory: its two key pairs (SSH for transport, ed25519 for signing batches:
 * separate so the transport key can be rotated without invalidating stored evidence), the pinned
 * server fingerprint, its host id and the spool.
 */
export const STATE_FILES = {
  enrollment: 'client.json',
  sshKey: 'ssh_ed25519_key',
  signingKey: 'signing_ed25519_key.pem',
  signingPub: 'signing_ed25519_key.pub.pem',
  spool: 'spool',
  status: 'status.json',
  pid: 'client.pid',
  log: 'client.log',
  /** What the recorder holds unsealed, written every cycle (spool/journal.ts). */
  journal: 'journal',
  /** Written by `client deregister` before its SIGTERM, so the recorder's stop record says why. */
  stopReason: 'stop-reason',
} as const;

const enrollmentSchema = z.object({
  host_id: z.string(),
  name: z.string(),
  server_host: z.string(),
  server_port: z.number().int(),
  server_fingerprint: z.string(),
  status: z.enum(['approved', 'pending']),
  enrolled_at: z.string(),
});
export type ClientEnrollment = z.infer<typeof enrollmentSchema>;

export function ensureStateDir(stateDir: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
}

/** Writes a file atomically (tmp + rename) so a crash never leaves a half-written key or config. */
export function writeStateFile(stateDir: string, name: string, content: string, mode = 0o600): void {
  const path = join(stateDir, name);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, content, { mode });
  renameSync(tmp, path);
}

export function readStateFile(stateDir: string, name: string): string | null {
  const path = join(stateDir, name);
  return existsSync(path) ? readFileSync(path, 'utf8') : null;
}

export function saveEnrollment(stateDir: string, e: ClientEnrollment): void {
  writeStateFile(stateDir, STATE_FILES.enrollment, `${JSON.stringify(e, null, 2)}\n`);
}

export function loadEnrollment(stateDir: string): ClientEnrollment {
  const text = readStateFile(stateDir, STATE_FILES.enrollment);
  if (text === null) {
    throw new PofrError(
      'POFR_NOT_ENROLLED',
      `${stateDir} holds no enrollment; run: pofr client enroll --state ${stateDir} --server HOST:PORT --token T`,
    );
  }
  const parsed = enrollmentSchema.safeParse(JSON.parse(text));
  if (!parsed.success) {
    throw new PofrError(
      'POFR_NOT_ENROLLED',
      `${join(stateDir, STATE_FILES.enrollment)} is damaged; enroll again`,
    );
  }
  return parsed.data;
}

export function loadKeys(stateDir: string): { sshPrivateKey: string; signingPrivatePem: string } {
  const ssh = readStateFile(stateDir, STATE_FILES.sshKey);
  const signing = readStateFile(stateDir, STATE_FILES.signingKey);
  if (ssh === null || signing === null) {
    throw new PofrError(
      'POFR_NOT_ENROLLED',
      `${stateDir} lacks its key pair; enroll again with pofr client enroll`,
    );
  }
  return { sshPrivateKey: ssh, signingPrivatePem: signing };
}

/** Removes keys, enrollment and spool: what `client deregister` promises. */
export function wipeState(stateDir: string): void {
  for (const name of Object.values(STATE_FILES))
    rmSync(join(stateDir, name), { recursive: true, force: true });
  for (const pub of [`${STATE_FILES.sshKey}.pub`]) rmSync(join(stateDir, pub), { force: true });
}
