import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  constants,
  mkdirSync,
  mkdtempSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout (the folder holding dist/, node_modules/ and package.json). */
const CHECKOUT = fileURLToPath(new URL('../../../', import.meta.url));
const NOBODY = 65534;

/** What the built CLI needs at run time: its code, its dependencies, its version. */
const NEEDED = ['dist', 'node_modules', 'package.json'] as const;

/** Why `nobody` cannot run the checkout's pofr even through the bind mounts, or null when it can. */
function unreachableReason(): string | null {
  for (const name of NEEDED) {
    const st = statSync(join(CHECKOUT, name));
    const bits = st.isDirectory() ? 0o005 : 0o004;
    if ((st.mode & bits) !== bits) {
      return `${join(CHECKOUT, name)} has mode ${(st.mode & 0o777).toString(8)}: other users cannot read it, so an unprivileged pofr cannot run from this checkout`;
    }
  }
  return null;
}

/** Whether `nobody` can read the built CLI where it is (false when a parent is 0700, e.g. /root). */
function reachableAsIs(): boolean {
  const r = spawnSync(
    'setpriv',
    [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      '--clear-groups',
      'test',
      '-r',
      join(CHECKOUT, 'dist/src/cli/main.js'),
    ],
    { stdio: 'ignore' },
  );
  return r.status === 0;
}

/** A reason to skip tests that run pofr as `nobody`, or false when they can run. */
export function cannotRunAsNobody(): string | false {
  if (process.getuid?.() !== 0) return 'needs root to switch to an unprivileged user';
  try {
    accessSync(join(CHECKOUT, 'dist/src/cli/main.js'), constants.R_OK);
  } catch {
    return 'the CLI is not built (npm run build)';
  }
  if (reachableAsIs()) return false;
  const why = unreachableReason();
  if (why !== null) return why;
  const probe = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true'], { stdio: 'ignore' });
  if (probe.status !== 0) {
    return `the checkout ${CHECKOUT} is not reachable by other users and this machine cannot create a mount namespace (unshare --mount) to bind it elsewhere`;
  }
  return false;
}

/**
 * Runs the built pofr CLI as `nobody` (uid and gid 65534, no groups). A checkout cloned where other
 * users cannot enter (root's home is 0700 on Debian) is made reachable without touching it: its
 * dist/, node_modules/ and package.json are bind-mounted into a world-readable temporary folder
 * inside a private mount namespace, which ends with the process (nothing to unmount).
 */
export function runPofrAsNobody(
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs: number },
): SpawnSyncReturns<string> {
  return runNodeAsNobody('dist/src/cli/main.js', args, opts);
}

/** Runs a built script of the checkout (`entry`, relative to it) with node as `nobody`, as above. */
export function runNodeAsNobody(
  entry: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs: number },
): SpawnSyncReturns<string> {
  const asNobody = [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath];
  const common = { env: opts.env, encoding: 'utf8' as const, timeout: opts.timeoutMs };
  if (reachableAsIs()) {
    return spawnSync('setpriv', [...asNobody, join(CHECKOUT, entry), ...args], common);
  }
  const root = mkdtempSync(join(tmpdir(), 'pofr-checkout-'));
  try {
    chmodSync(root, 0o755);
    for (const name of NEEDED) {
      if (name === 'package.json') writeFileSync(join(root, name), '');
      else mkdirSync(join(root, name));
    }
    // sh binds each part, then execs setpriv: the mounts live exactly as long as pofr does.
    const script = `for p in ${NEEDED.join(' ')}; do mount --bind "$1/$p" "$2/$p" || exit 97; done; shift 2; exec "$@"`;
    return spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        script,
        'sh',
        CHECKOUT,
        root,
        'setpriv',
        ...asNobody,
        join(root, entry),
        ...args,
      ],
      common,
    );
  } finally {
    // Never recursive: were a bind mount still there, that would delete the checkout's own files.
    for (const name of NEEDED) {
      if (name === 'package.json') rmSync(join(root, name), { force: true });
      else rmdirSafe(join(root, name));
    }
    rmdirSafe(root);
  }
}

function rmdirSafe(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
