import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The committed fixture tree; tests run from dist/test/recorder. */
export const FIXTURE_PROC = fileURLToPath(new URL('../../../test/fixtures/proc', import.meta.url));

/**
 * Copies a proc fixture tree, symlink targets as raw bytes (fs.cpSync would decode them as
 * UTF-8 and lose the invalid ones the fixtures are about).
 */
export function copyProcTree(src: string, dst: string): void {
  mkdirSync(dst, { recursive: true });
  for (const name of readdirSync(src)) {
    const from = join(src, name);
    const to = join(dst, name);
    const st = lstatSync(from);
    if (st.isSymbolicLink()) symlinkSync(readlinkSync(from, { encoding: 'buffer' }), to);
    else if (st.isDirectory()) copyProcTree(from, to);
    else writeFileSync(to, readFileSync(from));
  }
}
