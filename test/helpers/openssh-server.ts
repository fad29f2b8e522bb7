import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { POFR_MAIN } from './pofr-cli.js';

const SSHD = '/usr/sbin/sshd';

/** Why the OpenSSH tests cannot run here, or false. */
export const OPENSSH_SKIP =
  process.getuid?.() !== 0
    ? 'needs root: sshd runs as root, and its AuthorizedKeysCommand must be owned by root'
    : !existsSync(SSHD)
      ? `needs Debian's openssh-server (${SSHD}); .ci/run installs it`
      : false;

export interface OpensshServer {
  readonly port: number;
  /** SHA256 fingerprint of its ed25519 host key, as clients pin it. */
  readonly fingerprint: string;
  readonly dir: string;
  log(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * A real OpenSSH sshd on a loopback port with a config and a host key of its own, answering
 * `AuthorizedKeysCommand` with `pofr server authorized-keys` for the pofr data directory `data`.
 * Logins as root are for forced commands only (as a site's dedicated pofr account would be).
 * stop() ends it and removes everything it created.
 */
export async function startOpensshServer(data: string): Promise<OpensshServer> {
  // sshd refuses an AuthorizedKeysCommand under any group- or world-writable directory (/tmp is):
  // this one lives under /run, root's own.
  const dir = mkdtempSync('/run/pofr-sshd-test-');
  const createdPrivsep = !existsSync('/run/sshd');
  if (createdPrivsep) mkdirSync('/run/sshd', { mode: 0o755 });
  const hostKey = join(dir, 'ssh_host_ed25519_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  const fingerprint = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`])
    .toString()
    .split(' ')[1];
  const akc = join(dir, 'pofr-authorized-keys');
  writeFileSync(
    akc,
    `#!/bin/sh\nexec ${process.execPath} ${POFR_MAIN} server authorized-keys --data '${data}' --user "$3" "$1" "$2"\n`,
  );
  chmodSync(akc, 0o755);
  let child: ChildProcess | null = null;
  let log = '';
  for (let attempt = 0; attempt < 5 && child === null; attempt++) {
    const port = await freePort();
    const config = join(dir, 'sshd_config');
    writeFileSync(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        'AuthorizedKeysFile none',
        // OpenSSH 9.2 (Debian 12) offers no %C to this command: the address is audited by the channel.
        `AuthorizedKeysCommand ${akc} %t %k %u`,
        'AuthorizedKeysCommandUser root',
        'PermitRootLogin forced-commands-only',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        // Allowed here on purpose: the `restrict` of pofr's keys must be what refuses it.
        'AllowTcpForwarding yes',
        'Subsystem sftp internal-sftp',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    const proc = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
    });
    const up = await waitForPort(port, proc);
    if (up) child = Object.assign(proc, { port });
    else proc.kill('SIGKILL');
  }
  if (child === null) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`sshd did not start:\n${log}`);
  }
  const port = (child as ChildProcess & { port: number }).port;
  return {
    port,
    fingerprint,
    dir,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
      if (createdPrivsep) rmSync('/run/sshd', { recursive: true, force: true });
    },
  };
}

async function waitForPort(port: number, proc: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) return false;
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return true;
    await sleep(100);
  }
  return false;
}

/** The text of a file, or '' when it does not exist. */
export function readIfExists(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}
