import { readFileSync } from 'node:fs';

let cached: string | null = null;

/** pofr's version from its package.json (`unknown` when it cannot be read, e.g. a broken install). */
export function pofrVersion(): string {
  if (cached !== null) return cached;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    cached = typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    cached = 'unknown';
  }
  return cached;
}
