import { readFileSync } from 'node:fs';

/** Set by esbuild when the client is bundled into one file, where package.json is not beside the code. */
declare const POFR_BUNDLED_VERSION: string | undefined;

let cached: string | undefined;

/** pofr's version: package.json's, or the one baked into a single-file build. */
export function pofrVersion(): string {
  if (cached !== undefined) return cached;
  if (typeof POFR_BUNDLED_VERSION === 'string') {
    cached = POFR_BUNDLED_VERSION;
    return cached;
  }
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    cached = pkg.version;
  } catch {
    cached = 'unknown';
  }
  return cached;
}
