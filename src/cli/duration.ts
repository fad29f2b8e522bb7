import { PofrError } from '../errors.js';

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** Parses `90s`, `15m`, `24h`, `7d` (or plain milliseconds) into milliseconds. */
export function parseDuration(s: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/.exec(s.trim());
  if (!m) throw new PofrError('POFR_USAGE', `${option} ${s} is not a duration like 90s, 15m, 24h or 7d`);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 'ms']);
}

const SIZE_UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Parses `512M`, `2G`, `64K` (binary units, optional `iB`/`B`) or plain bytes into bytes. */
export function parseByteSize(s: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|B)?$/i.exec(s.trim());
  const bytes = m ? Math.floor(Number(m[1]) * SIZE_UNITS[(m[2] ?? '').toUpperCase()]) : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new PofrError('POFR_USAGE', `${option} ${s} is not a size like 64K, 512M or 2G`);
  }
  return bytes;
}

export function parsePositiveInt(s: string, option: string): number {
  if (!/^\d+$/.test(s) || Number(s) < 1)
    throw new PofrError('POFR_USAGE', `${option} ${s} is not a positive whole number`);
  return Number(s);
}

export function parseNonNegativeInt(s: string, option: string): number {
  if (!/^\d+$/.test(s)) throw new PofrError('POFR_USAGE', `${option} ${s} is not a whole number`);
  return Number(s);
}

export function parseListen(s: string, option: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535)
    throw new PofrError('POFR_USAGE', `${option} ${s} is not HOST:PORT (e.g. 0.0.0.0:2222)`);
  return { host: m[1] === '' ? '0.0.0.0' : m[1], port: Number(m[2]) };
}
