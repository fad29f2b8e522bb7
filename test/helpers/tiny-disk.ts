import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Why a full-disk test cannot run here, or false: mounting a tmpfs needs root (CI runs as root). */
export const TINY_DISK_SKIP =
  process.getuid?.() !== 0 ? 'needs root to mount a small tmpfs as a full disk' : false;

/**
 * Runs `body` on a real, small file system (a tmpfs of `size`, e.g. '256k') that fills up for
 * real, then unmounts and removes it, also when `body` throws.
 */
export async function withTinyDisk<T>(size: string, body: (dir: string) => T | Promise<T>): Promise<T> {
  const base = mkdtempSync(join(tmpdir(), 'pofr-fulldisk-'));
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'pofr-test-full', mnt]);
    try {
      return await body(mnt);
    } finally {
      execFileSync('umount', [mnt]);
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
