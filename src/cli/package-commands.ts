import type { Command } from 'commander';
import { PofrError } from '../errors.js';
import { buildClientPackages, buildServerPackage } from '../package/index.js';
import { parseServerAddress } from '../roles/client/enroll-client.js';
import { createToken } from '../roles/server/enrollment.js';
import { ensureHostKey } from '../roles/server/host-key.js';
import { openStore, readStoreConfig } from '../store/index.js';
import { pofrVersion } from '../version.js';
import { parseDuration, parsePositiveInt } from './duration.js';

interface PackageClientFlags {
  readonly data: string;
  readonly server: string;
  readonly token?: string | false;
  readonly uses?: string;
  readonly ttl?: string;
  readonly approve?: boolean;
  readonly sshUser?: string;
  readonly out: string;
}

/** The token to package: the one given, none (--no-token), or a new one made with --uses/--ttl/--approve. */
async function packagedToken(o: PackageClientFlags): Promise<string | undefined> {
  const makesOne = o.uses !== undefined || o.ttl !== undefined || o.approve === true;
  if (typeof o.token === 'string' || o.token === false) {
    if (makesOne) {
      throw new PofrError(
        'POFR_USAGE',
        '--uses, --ttl and --approve make a new token: give them without --token/--no-token',
      );
    }
    return o.token === false ? undefined : o.token;
  }
  const store = await openStore(readStoreConfig(o.data));
  try {
    return await createToken(store, {
      ttlMs: parseDuration(o.ttl ?? '24h', '--ttl'),
      uses: parsePositiveInt(o.uses ?? '1', '--uses'),
      approve: o.approve === true,
    });
  } finally {
    await store.close();
  }
}

/** `pofr server package-client`: what one command on a host installs, enrolled and recording. */
export function registerPackageCommands(server: Command, dataOpt: (c: Command) => Command): void {
  dataOpt(server.command('package-client'))
    .description(
      'write pofr-client (one executable), its .deb and its .tar.gz, with this server and its key inside',
    )
    .requiredOption('--server <host:port>', 'the address the hosts reach this server at')
    .requiredOption('--out <dir>', 'where to write the three files')
    .option('--token <token>', 'package this enrollment token (default: make a new one)')
    .option('--no-token', 'package no token: hosts enroll with `pofr-client enroll --token T` or --password')
    .option('--uses <n>', 'new token: how many hosts may enroll with it (default 1)')
    .option('--ttl <duration>', 'new token: validity (default 24h)')
    .option('--approve', 'new token: approve hosts that use it at once (default: pending until approved)')
    .option('--ssh-user <user>', "the account on the server's sshd (OpenSSH mode)")
    .action(async (o: PackageClientFlags) => {
      parseServerAddress(o.server);
      // The store must exist: a mistyped --data must not get a fresh host key no server presents.
      readStoreConfig(o.data);
      const fingerprint = ensureHostKey(o.data).fingerprint;
      const token = await packagedToken(o);
      const built = await buildClientPackages({
        outDir: o.out,
        version: pofrVersion(),
        config: {
          server: o.server,
          fingerprint,
          ...(token === undefined ? {} : { token }),
          ...(o.sshUser === undefined ? {} : { ssh_user: o.sshUser }),
          packaged_by: pofrVersion(),
        },
        log: (msg) => process.stderr.write(`pofr: ${msg}\n`),
      });
      for (const [path, bytes] of Object.entries(built.sizes)) {
        process.stdout.write(`${path}\t${bytes}\n`);
      }
      if (token !== undefined) {
        process.stderr.write(
          'pofr: the files carry an enrollment token: hand them only to the hosts it is meant for\n',
        );
      }
    });

  server
    .command('package-server')
    .description(
      'write pofr-server_<version>_amd64.deb: this pofr with its dependencies, a systemd unit, a pofr user',
    )
    .requiredOption('--out <dir>', 'where to write the package')
    .action((o: { out: string }) => {
      process.stderr.write('pofr: building the server .deb\n');
      const built = buildServerPackage({ outDir: o.out, version: pofrVersion() });
      process.stdout.write(`${built.deb}\t${built.bytes}\n`);
    });
}
