import { PofrError } from '../errors.js';
import { resolveHosts, type TimelineCursor } from '../query/index.js';
import type { Store } from '../store/index.js';

/** µs since the epoch from a query parameter: digits are µs, else ISO 8601 UTC (µs kept). */
export function parseInstant(s: string | undefined): number | undefined {
  if (s === undefined || s === '') return undefined;
  if (/^\d+$/.test(s)) return Number(s);
  const m = /^(.*?)(?:\.(\d{1,6})\d*)?Z$/.exec(s);
  const ms = m ? Date.parse(`${m[1]}Z`) : Number.NaN;
  if (!m || Number.isNaN(ms)) {
    throw new PofrError('POFR_TIME_FORMAT', `time "${s}" is neither µs since the epoch nor ISO 8601 UTC`);
  }
  return ms * 1000 + Number((m[2] ?? '').padEnd(6, '0'));
}

export function parseFlag(s: string | undefined): boolean | undefined {
  return s === undefined ? undefined : s === 'true';
}

/** One host by id, or the only host with that name. */
export async function oneHost(store: Store, ref: string): Promise<string> {
  const ids = await resolveHosts(store, ref);
  if (ids.length > 1) {
    throw new PofrError('POFR_USAGE', `${ids.length} hosts are named "${ref}"; use the host id instead`);
  }
  return ids[0];
}

/** Cursors travel as base64url JSON so a page link stays one opaque parameter. */
export function encodeCursor(c: TimelineCursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

export function decodeCursor(s: string | undefined): TimelineCursor | undefined {
  if (s === undefined) return undefined;
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as TimelineCursor;
    if (typeof c.time === 'number' && typeof c.host_id === 'string' && typeof c.id === 'number') return c;
  } catch {
    // fall through to the error below
  }
  throw new PofrError('POFR_USAGE', 'after: not a cursor this API gave out');
}
