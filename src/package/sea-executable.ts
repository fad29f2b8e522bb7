import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PofrError } from '../errors.js';

/** The fuse Node's single executable applications flip once a blob is injected (Node's docs). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

export interface SeaOptions {
  /** The CommonJS bundle to run (client-bundle.ts). */
  readonly bundle: string;
  /** Files the program reads with `node:sea` getAsset, by asset name. */
  readonly assets: Readonly<Record<string, string>>;
  /** The executable to write (mode 0700: it may carry an enrollment token). */
  readonly out: string;
  /** The Node.js executable to copy: the one running, so the blob is made by the same version. */
  readonly node?: string;
  readonly log?: (msg: string) => void;
}

interface Postject {
  inject(file: string, name: string, data: Buffer, opts: { sentinelFuse: string }): Promise<void>;
}

function run(cmd: string, args: readonly string[], what: string): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').slice(-3).join('; ');
    throw new PofrError('POFR_PACKAGE', `${what} failed (${cmd} ${args.join(' ')}): ${why}`);
  }
}

/** A Node.js build whose own file has the SEA fuse (a distribution's node linked to a shared libnode has not). */
function checkNodeCanEmbed(node: string): void {
  const bin = readFileSync(node);
  const at = bin.indexOf(SEA_FUSE);
  if (at < 0) {
    throw new PofrError(
      'POFR_PACKAGE',
      `${node} cannot make single executables (no SEA fuse in it: a Node.js built against a shared libnode?); run the server with Node.js 20 from nodejs.org or NodeSource`,
    );
  }
  if (bin.subarray(at + SEA_FUSE.length, at + SEA_FUSE.length + 2).toString() === ':1') {
    throw new PofrError('POFR_PACKAGE', `${node} is itself a single executable application, not Node.js`);
  }
}

/** Whether a program is on PATH (strip is optional: binutils may not be installed). */
function hasProgram(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes one executable of Node.js and the bundle (Node 20's single executable applications: a
 * preparation blob from `node --experimental-sea-config`, injected into a copy of node by postject),
 * with the V8 code cache so start-up skips compiling the bundle. Debug symbols are stripped when
 * `strip` exists (about 12 MiB less); nothing else is needed on the host that runs it.
 */
export async function buildSeaExecutable(opts: SeaOptions): Promise<void> {
  const node = opts.node ?? process.execPath;
  const log = opts.log ?? (() => {});
  checkNodeCanEmbed(node);
  const work = mkdtempSync(join(tmpdir(), 'pofr-sea-'));
  try {
    const blob = join(work, 'sea.blob');
    const config = join(work, 'sea-config.json');
    writeFileSync(
      config,
      JSON.stringify({
        main: opts.bundle,
        output: blob,
        disableExperimentalSEAWarning: true,
        useCodeCache: true,
        assets: opts.assets,
      }),
    );
    log('preparation blob');
    run(node, ['--experimental-sea-config', config], 'making the single-executable blob');
    const exe = join(work, 'exe');
    copyFileSync(node, exe);
    chmodSync(exe, 0o700);
    if (hasProgram('strip')) {
      log('stripping debug symbols');
      run('strip', ['--strip-all', exe], 'stripping the executable');
    }
    log('injecting');
    // postject ships no types and is CommonJS: loaded by require, and only when a package is built.
    const postject = createRequire(import.meta.url)('postject') as Postject;
    // LIEF (inside postject) warns about note sections it cannot name, and postject prints
    // progress: both would land in pofr's output. Failures still arrive as the thrown error.
    const [out, err] = [process.stdout.write, process.stderr.write];
    try {
      process.stdout.write = process.stderr.write = (() => true) as typeof process.stdout.write;
      await postject.inject(exe, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: SEA_FUSE });
    } finally {
      [process.stdout.write, process.stderr.write] = [out, err];
    }
    copyFileSync(exe, opts.out);
    chmodSync(opts.out, 0o700);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
