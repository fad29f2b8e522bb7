import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/** The version package.json gives: the one in package file names. */
export const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** Runs a command to its end (dpkg, dpkg-deb, tar, the installed programs), never throwing. */
export function runCommand(cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv, cwd = '/') {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, timeout: 180_000, cwd });
  return {
    code: r.status,
    stdout: r.stdout ?? '',
    stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`,
  };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why the package `name` cannot be installed on this machine for real by a test, or false: it
 * needs root and dpkg, no systemd (the test drives the recorder or server by hand, as on containers
 * and CI), and nothing of a real installation in the way (`taken` paths), which it would replace.
 */
export function cannotInstall(name: string, taken: readonly string[]): string | false {
  if (process.getuid?.() !== 0) return 'installing a package needs root';
  if (runCommand('sh', ['-c', 'command -v dpkg']).code !== 0) return 'dpkg is not installed';
  if (existsSync('/run/systemd/system')) {
    return 'systemd runs here: its unit would own what the test runs by hand';
  }
  if (runCommand('dpkg-query', ['-W', name]).code === 0) return `a ${name} package is installed here already`;
  const there = taken.filter((p) => existsSync(p));
  return there.length > 0 ? `${there.join(', ')} exist here already (the test would delete them)` : false;
}
