import { statSync } from 'node:fs';

/**
 * A file's identity (device and inode), null when it cannot be reached: the same library or ld.so
 * reached by two paths (a container's through /proc/PID/root) is one file, and is probed once.
 */
export function fileId(path: string): string | null {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}
