import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PofrError } from '../errors.js';
import {
  CONFIG_ASSET,
  PACKAGED_CONFIG_PATH,
  type PackagedClientConfig,
} from '../roles/client/packaged-config.js';
import { CLIENT_BUNDLE } from './client-bundle.js';
import { CLIENT_UNIT, clientDebScripts, clientTarballScripts, clientUnit } from './client-host-files.js';
import { buildDeb } from './deb-archive.js';
import { buildSeaExecutable } from './sea-executable.js';

export interface ClientPackageOptions {
  readonly outDir: string;
  readonly config: PackagedClientConfig;
  readonly version: string;
  readonly log?: (msg: string) => void;
}

export interface ClientPackages {
  readonly executable: string;
  readonly deb: string;
  readonly tarball: string;
  /** Bytes of each file, by path. */
  readonly sizes: Readonly<Record<string, number>>;
}

/** Debian's version syntax allows no '-' outside the revision; pofr's own versions have none. */
function debVersion(v: string): string {
  return v.replace(/-/g, '~');
}

/**
 * Writes the three client artefacts of CLI.md into `outDir`: `pofr-client` (one executable with the
 * configuration inside), `pofr-client_<version>_amd64.deb` and `pofr-client-<version>-linux-x64.tar.gz`.
 * All three carry the same executable; the .deb and the tarball also install the configuration as
 * /etc/pofr/client.json (mode 0600: it may hold the token), a systemd unit and scripts that enroll
 * and start the recorder on install.
 */
export async function buildClientPackages(opts: ClientPackageOptions): Promise<ClientPackages> {
  const log = opts.log ?? (() => {});
  if (!existsSync(CLIENT_BUNDLE)) {
    throw new PofrError('POFR_PACKAGE', `the client bundle ${CLIENT_BUNDLE} is missing; run: npm run build`);
  }
  mkdirSync(opts.outDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'pofr-package-'));
  try {
    const configText = `${JSON.stringify(opts.config, null, 2)}\n`;
    const configFile = join(work, 'client.json');
    writeFileSync(configFile, configText, { mode: 0o600 });
    const executable = join(opts.outDir, 'pofr-client');
    log(`building the single-file client ${executable}`);
    await buildSeaExecutable({
      bundle: CLIENT_BUNDLE,
      assets: { [CONFIG_ASSET]: configFile },
      out: executable,
      log,
    });

    log('building the .deb');
    const debExe = '/usr/bin/pofr-client';
    const deb = buildDeb(
      {
        name: 'pofr-client',
        version: debVersion(opts.version),
        architecture: 'amd64',
        // What Node.js 20's own executable links against; nothing of Node or npm is needed.
        depends: ['libc6 (>= 2.28)', 'libstdc++6 (>= 10)', 'libgcc-s1'],
        summary: `pofr forensic flight recorder, enrolled with ${opts.config.server}`,
        description: `Records every process, the files it holds open and its network endpoints, and
sends them as signed, hash-chained batches over SSH to the pofr server ${opts.config.server}
(host key ${opts.config.fingerprint}). Installing it enrolls this host and starts recording.`,
        files: [
          { path: debExe, mode: 0o700, copyFrom: executable },
          { path: `/lib/systemd/system/${CLIENT_UNIT}`, mode: 0o644, content: clientUnit(debExe) },
          { path: PACKAGED_CONFIG_PATH, mode: 0o600, content: configText },
        ],
        conffiles: [PACKAGED_CONFIG_PATH],
        scripts: clientDebScripts(debExe),
      },
      opts.outDir,
    );

    log('building the .tar.gz');
    const base = `pofr-client-${opts.version}-linux-x64`;
    const tarExe = '/usr/local/bin/pofr-client';
    const tree = join(work, base);
    mkdirSync(tree);
    const scripts = clientTarballScripts(tarExe);
    writeFileSync(join(tree, 'install.sh'), scripts.install, { mode: 0o755 });
    writeFileSync(join(tree, 'uninstall.sh'), scripts.uninstall, { mode: 0o755 });
    writeFileSync(join(tree, CLIENT_UNIT), clientUnit(tarExe), { mode: 0o644 });
    writeFileSync(join(tree, 'client.json'), configText, { mode: 0o600 });
    spawnSync('cp', ['-p', executable, join(tree, 'pofr-client')]);
    const tarball = join(opts.outDir, `${base}.tar.gz`);
    const r = spawnSync('tar', ['-czf', tarball, '--owner=0', '--group=0', '-C', work, base], {
      encoding: 'utf8',
    });
    if (r.error || r.status !== 0) {
      throw new PofrError(
        'POFR_PACKAGE',
        `tar -czf ${tarball} failed: ${r.error?.message ?? r.stderr.trim()}`,
      );
    }
    // They carry the token (when packaged): readable by the server's operator only, like the executable.
    for (const p of [deb, tarball]) chmodSync(p, 0o600);
    const sizes = Object.fromEntries([executable, deb, tarball].map((p) => [p, statSync(p).size]));
    return { executable, deb, tarball, sizes };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
