import { join } from 'node:path';
import type { Command } from 'commander';
import { AuditTrail } from '../roles/server/audit-trail.js';
import { authorizedKeysLine } from '../roles/server/authorized-keys.js';
import { runEnrollStdio, runIngestStdio } from '../roles/server/stdio-channels.js';
import type { Store } from '../store/index.js';
import { createLog } from './log.js';

/** The log of the forced commands: their stderr is the client's, so they write to the data dir. */
const channelLog = (data: string) =>
  createLog({ name: 'pofr-openssh', file: join(data, 'openssh-channels.log') });

/**
 * OpenSSH mode (CLI.md "Added for the second wave"; docs/deployment.md "The site's own sshd"):
 * `authorized-keys` answers sshd's AuthorizedKeysCommand, the two `-stdio` commands are the forced
 * commands it hands out.
 */
export function registerOpensshCommands(
  server: Command,
  withStore: <T>(dataDir: string, fn: (store: Store) => Promise<T>) => Promise<T>,
  dataOpt: (c: Command) => Command,
): void {
  dataOpt(server.command('authorized-keys'))
    .description(
      "for sshd's AuthorizedKeysCommand (… authorized-keys --data DIR %t %k): the authorized_keys line of an offered key, with restrict and pofr's forced command; nothing for a revoked key",
    )
    .argument('<keytype>', "sshd's %t")
    .argument('<key>', "sshd's %k (base64)")
    .option('--connection <conn>', "sshd's %C, for the audit trail")
    .option('--user <user>', "sshd's %u, for the audit trail")
    .option('--exec <path>', 'the pofr executable sshd should run (default: this node and this pofr)')
    .action(
      async (
        keyType: string,
        key: string,
        o: { data: string; connection?: string; user?: string; exec?: string },
      ) => {
        const pofr = o.exec !== undefined ? [o.exec] : [process.execPath, process.argv[1]];
        const answer = await withStore(o.data, async (store) => {
          const audit = AuditTrail.shared(store, channelLog(o.data));
          try {
            return await authorizedKeysLine(store, audit, {
              dataDir: o.data,
              keyType,
              key,
              pofr,
              connection: o.connection,
              user: o.user,
            });
          } finally {
            await audit.close();
          }
        });
        if (answer.line !== null) process.stdout.write(`${answer.line}\n`);
      },
    );

  dataOpt(server.command('ingest-stdio'))
    .description('(forced command of OpenSSH mode) the ingest channel of one approved host over stdin/stdout')
    .requiredOption('--host <id>', 'the host whose key sshd accepted')
    .action(async (o: { data: string; host: string }) => {
      process.exitCode = await runIngestStdio({ dataDir: o.data, hostId: o.host, log: channelLog(o.data) });
    });

  dataOpt(server.command('enroll-stdio'))
    .description('(forced command of OpenSSH mode) the enrollment channel over stdin/stdout')
    .requiredOption('--key <key>', 'the key sshd accepted, "ssh-ed25519 AAAA…"')
    .action(async (o: { data: string; key: string }) => {
      process.exitCode = await runEnrollStdio({ dataDir: o.data, key: o.key, log: channelLog(o.data) });
    });
}
