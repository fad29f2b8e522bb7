import { readFileSync } from 'node:fs';
import { hostname, release } from 'node:os';
import { PofrError } from '../../errors.js';
import { generateSigningKeyPair } from '../../protocol/index.js';
import { enrollOverSsh, generateSshKeyPair } from '../../transport/index.js';
import { pofrVersion } from '../../version.js';
import {
  type ClientEnrollment,
  ensureStateDir,
  readStateFile,
  STATE_FILES,
  saveEnrollment,
  writeStateFile,
} from './client-state.js';

export interface EnrollOptions {
  readonly stateDir: string;
  readonly server: string;
  /** Exactly one of token and password. */
  readonly token?: string;
  readonly password?: string;
  readonly name?: string;
  readonly fingerprint?: string;
  /** Asked when no fingerprint was given: shows the server's and returns whether to trust it. */
  readonly confirm?: (fingerprint: string) => Promise<boolean>;
}

export function parseServerAddress(s: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535)
    throw new PofrError('POFR_USAGE', `--server ${s} is not HOST:PORT (e.g. pofr.example.org:2222)`);
  return { host: m[1], port: Number(m[2]) };
}

function readFirstLine(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n')[0].trim() || fallback;
  } catch {
    return fallback;
  }
}

function osName(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'));
    return m ? m[1] : 'Linux';
  } catch {
    return 'Linux';
  }
}

/**
 * Creates the client's key pairs (kept across retries), pins the server's host key and registers
 * with a token or the registration password. Re-running with the same state directory is safe: the server recognises the key.
 */
export async function enrollClient(opts: EnrollOptions): Promise<ClientEnrollment> {
  const { host, port } = parseServerAddress(opts.server);
  ensureStateDir(opts.stateDir);
  if (readStateFile(opts.stateDir, STATE_FILES.sshKey) === null) {
    const ssh = generateSshKeyPair();
    writeStateFile(opts.stateDir, STATE_FILES.sshKey, ssh.privateKey);
    writeStateFile(opts.stateDir, `${STATE_FILES.sshKey}.pub`, `${ssh.publicKey}\n`, 0o644);
  }
  if (readStateFile(opts.stateDir, STATE_FILES.signingKey) === null) {
    const signing = generateSigningKeyPair();
    writeStateFile(opts.stateDir, STATE_FILES.signingKey, signing.privatePem);
    writeStateFile(opts.stateDir, STATE_FILES.signingPub, signing.publicPem, 0o644);
  }
  const sshPrivateKey = readStateFile(opts.stateDir, STATE_FILES.sshKey)!;
  const signingPub = readStateFile(opts.stateDir, STATE_FILES.signingPub)!;
  const name = opts.name ?? hostname();
  const { reply, serverFingerprint } = await enrollOverSsh({
    host,
    port,
    sshPrivateKey,
    clientVersion: pofrVersion(),
    pinnedFingerprint: opts.fingerprint,
    confirmFingerprint: opts.confirm,
    request: {
      ...(opts.password !== undefined
        ? { method: 'password' as const, password: opts.password }
        : { method: 'token' as const, token: opts.token }),
      name,
      signing_key: signingPub,
      facts: {
        hostname: hostname(),
        machine_id: readFirstLine('/etc/machine-id', ''),
        os: osName(),
        kernel: release(),
      },
    },
  });
  if (!reply.ok) {
    const code = reply.code === 'POFR_ENROLL_TOKEN' ? 'POFR_ENROLL_TOKEN' : 'POFR_ENROLL_FAILED';
    throw new PofrError(code, `enrollment refused by ${opts.server}: ${reply.message}`);
  }
  const enrollment: ClientEnrollment = {
    host_id: reply.host_id,
    name: reply.name,
    server_host: host,
    server_port: port,
    server_fingerprint: serverFingerprint,
    status: reply.status,
    enrolled_at: new Date().toISOString(),
  };
  saveEnrollment(opts.stateDir, enrollment);
  return enrollment;
}
