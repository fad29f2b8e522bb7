import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PofrError } from '../errors.js';
import { buildDeb } from './deb-archive.js';
import {
  SERVER_DEFAULTS,
  SERVER_UNIT,
  serverDebScripts,
  serverDefaults,
  serverUnit,
} from './server-host-files.js';

/** The checkout (or installed tree) this pofr runs from: package.json, bin/, dist/, node_modules/. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const INSTALL_DIR = '/usr/lib/pofr';

/** Parts of an installed npm package nothing loads at run time: compiler output, sources of addons (source maps go too). */
const BUILD_LEFTOVERS =
  /\/build\/(Release|Debug)\/(obj|obj\.target|\.deps)(\/|$)|\/build\/(Makefile|config\.gypi|[^/]+\.mk)$|\/(deps|src)\/.*\.(c|cc|cpp|h|hpp|gyp)$/;

/** The production dependency tree, as npm resolved it (dev dependencies left out). */
function productionPackages(): string[] {
  const r = spawnSync('npm', ['ls', '--omit=dev', '--parseable', '--all'], { cwd: ROOT, encoding: 'utf8' });
  if (r.error || (r.status !== 0 && !r.stdout)) {
    throw new PofrError(
      'POFR_PACKAGE',
      `npm ls --omit=dev in ${ROOT} failed (${r.error?.message ?? r.stderr.trim()}): package-server runs from a checkout after npm ci`,
    );
  }
  return r.stdout.split('\n').filter((p) => p.startsWith(join(ROOT, 'node_modules') + sep));
}

export interface ServerPackage {
  readonly deb: string;
  readonly bytes: number;
}

/**
 * Builds `pofr-server_<version>_amd64.deb`: pofr with its production dependencies under
 * /usr/lib/pofr (the SQLite addon compiled for this Node.js, hence the nodejs version range),
 * /usr/bin/pofr, a hardened unit running as the `pofr` system user on /var/lib/pofr-server, and
 * the client bundle, so `pofr server package-client` works on the installed server.
 */
export function buildServerPackage(opts: { outDir: string; version: string }): ServerPackage {
  for (const p of ['dist/src/cli/main.js', 'dist/client/pofr-client.cjs', 'node_modules']) {
    if (!existsSync(join(ROOT, p)))
      throw new PofrError('POFR_PACKAGE', `${join(ROOT, p)} is missing; run: npm ci`);
  }
  const stage = mkdtempSync(join(tmpdir(), 'pofr-server-tree-'));
  try {
    const lib = join(stage, 'lib');
    cpSync(join(ROOT, 'package.json'), join(lib, 'package.json'));
    cpSync(join(ROOT, 'bin'), join(lib, 'bin'), { recursive: true });
    // The bundled Sigma rules (`pofr hunt --rules bundled`), with their licences.
    cpSync(join(ROOT, 'rules'), join(lib, 'rules'), { recursive: true });
    for (const d of ['dist/src', 'dist/client']) {
      cpSync(join(ROOT, d), join(lib, d), { recursive: true, filter: (src) => !src.endsWith('.map') });
    }
    for (const pkg of productionPackages()) {
      cpSync(pkg, join(lib, relative(ROOT, pkg)), {
        recursive: true,
        filter: (src) => !src.endsWith('.map') && !BUILD_LEFTOVERS.test(src.slice(pkg.length)),
      });
    }
    const major = Number(process.versions.node.split('.')[0]);
    const deb = buildDeb(
      {
        name: 'pofr-server',
        version: opts.version.replace(/-/g, '~'),
        architecture: 'amd64',
        depends: [`nodejs (>= ${major})`, `nodejs (<< ${major + 1})`, 'adduser | passwd', 'util-linux'],
        recommends: ['binutils', 'dpkg'],
        summary: 'pofr server: receives, verifies and stores what pofr clients record',
        description: `The pofr server: an SSH listener that accepts signed, hash-chained batches from
pofr clients, verifies them and stores them in SQLite (or PostgreSQL), and the analyst
commands (pofr timeline, procs, files, net, verify). \`pofr server package-client\` builds the
client packages for the hosts to monitor.`,
        files: [
          { path: INSTALL_DIR, mode: 0o755, tree: lib },
          { path: '/usr/bin/pofr', symlinkTo: `${INSTALL_DIR}/bin/pofr` },
          { path: `/lib/systemd/system/${SERVER_UNIT}`, mode: 0o644, content: serverUnit() },
          { path: SERVER_DEFAULTS, mode: 0o644, content: serverDefaults() },
        ],
        conffiles: [SERVER_DEFAULTS],
        scripts: serverDebScripts(),
      },
      opts.outDir,
    );
    return { deb, bytes: statSync(deb).size };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}
