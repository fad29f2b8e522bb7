import { resolve } from 'node:path';

/** `--data` default: $POFR_DATA, else ./pofr-data (CLI.md conventions). */
export function defaultDataDir(): string {
  return resolve(process.env.POFR_DATA ?? 'pofr-data');
}

/** `--state` default: $POFR_STATE, else /var/lib/pofr. */
export function defaultStateDir(): string {
  return resolve(process.env.POFR_STATE ?? '/var/lib/pofr');
}
