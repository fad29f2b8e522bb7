import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PofrError } from '../errors.js';

/** One entry of a package's file tree, at its absolute installed path. */
export type DebEntry =
  | { readonly path: string; readonly mode: number; readonly content: string | Buffer }
  | { readonly path: string; readonly mode: number; readonly copyFrom: string }
  | { readonly path: string; readonly symlinkTo: string }
  | { readonly path: string; readonly mode: number; readonly tree: string };

export interface DebSpec {
  readonly name: string;
  readonly version: string;
  readonly architecture: 'amd64' | 'all';
  readonly depends?: readonly string[];
  readonly recommends?: readonly string[];
  readonly summary: string;
  readonly description: string;
  readonly files: readonly DebEntry[];
  /** Installed paths under /etc that dpkg keeps as the operator's (never overwritten silently). */
  readonly conffiles?: readonly string[];
  /** postinst, prerm, postrm… as shell scripts. */
  readonly scripts: Readonly<Partial<Record<'preinst' | 'postinst' | 'prerm' | 'postrm', string>>>;
}

function check(r: ReturnType<typeof spawnSync>, what: string): void {
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : String(r.stderr).trim().split('\n').slice(-3).join('; ');
    throw new PofrError('POFR_PACKAGE', `${what}: ${why}`);
  }
}

function duKiB(dir: string): number {
  const r = spawnSync('du', ['-sk', '--apparent-size', dir], { encoding: 'utf8' });
  return Number.parseInt(r.stdout, 10) || 0;
}

/**
 * Builds a .deb with dpkg-deb from a file tree described in code: files owned by root
 * (--root-owner-group, no fakeroot), modes exactly as given, xz-compressed (what every dpkg reads).
 * Returns the path of the package written into `outDir`.
 */
export function buildDeb(spec: DebSpec, outDir: string): string {
  const stage = mkdtempSync(join(tmpdir(), `${spec.name}-deb-`));
  try {
    for (const f of spec.files) {
      const at = join(stage, f.path);
      mkdirSync(dirname(at), { recursive: true, mode: 0o755 });
      if ('symlinkTo' in f) symlinkSync(f.symlinkTo, at);
      else if ('tree' in f)
        check(spawnSync('cp', ['-a', f.tree, at], { encoding: 'utf8' }), `copying ${f.tree}`);
      else if ('copyFrom' in f) copyFileSync(f.copyFrom, at);
      else writeFileSync(at, f.content);
      if (!('symlinkTo' in f)) chmodSync(at, f.mode);
    }
    // A staging dir from mkdtemp is 0700, and dpkg-deb records the modes of directories too.
    check(spawnSync('chmod', ['-R', 'u+rwX,go+rX,go-w', stage]), 'setting directory modes');
    for (const f of spec.files)
      if (!('symlinkTo' in f) && !('tree' in f)) chmodSync(join(stage, f.path), f.mode);
    const control = join(stage, 'DEBIAN');
    mkdirSync(control, { mode: 0o755 });
    const fields = [
      `Package: ${spec.name}`,
      `Version: ${spec.version}`,
      `Architecture: ${spec.architecture}`,
      'Maintainer: pofr <pofr@localhost>',
      `Installed-Size: ${duKiB(stage)}`,
      ...(spec.depends?.length ? [`Depends: ${spec.depends.join(', ')}`] : []),
      ...(spec.recommends?.length ? [`Recommends: ${spec.recommends.join(', ')}`] : []),
      'Section: admin',
      'Priority: optional',
      `Description: ${spec.summary}`,
      ...spec.description.split('\n').map((l) => (l.trim() === '' ? ' .' : ` ${l}`)),
    ];
    writeFileSync(join(control, 'control'), `${fields.join('\n')}\n`, { mode: 0o644 });
    if (spec.conffiles?.length)
      writeFileSync(join(control, 'conffiles'), `${spec.conffiles.join('\n')}\n`, { mode: 0o644 });
    for (const [name, text] of Object.entries(spec.scripts)) {
      writeFileSync(join(control, name), text, { mode: 0o755 });
    }
    mkdirSync(outDir, { recursive: true });
    const deb = join(outDir, `${spec.name}_${spec.version}_${spec.architecture}.deb`);
    check(
      spawnSync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], { encoding: 'utf8' }),
      `dpkg-deb --build ${spec.name} (on Debian: apt-get install dpkg)`,
    );
    statSync(deb);
    return deb;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}
