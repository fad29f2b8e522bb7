import { PofrError } from '../errors.js';

const UNIT_US: Readonly<Record<string, number>> = Object.freeze({
  s: 1_000_000,
  m: 60_000_000,
  h: 3_600_000_000,
  d: 86_400_000_000,
  w: 604_800_000_000,
});

const RELATIVE = /^-(\d+)([smhdw])$/;
// Date.parse drops everything past milliseconds, so the fraction is parsed by hand to keep µs.
const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

const ACCEPTED =
  'use ISO 8601 (2026-11-24T20:15:00Z, 2026-11-24T20:15:00.123456+01:00, or local time 2026-11-24T20:15) ' +
  'or a relative time (-30s, -15m, -2h, -7d, -1w, now)';

/** Microseconds since the epoch, now. */
export function nowMicros(): number {
  return Date.now() * 1000;
}

/**
 * Parses a `--from`/`--to`/`--at` argument into integer microseconds since the epoch, UTC.
 * ISO 8601 with an offset or `Z` is exact; without one it is the local time of this machine.
 *
 * @example
 * parseTimeArg('2026-11-24T20:15:00.5Z') // 1795637700500000
 * parseTimeArg('-15m', now)             // now - 900000000
 */
export function parseTimeArg(s: string, now: number = nowMicros()): number {
  const text = s.trim();
  if (text === 'now') return now;
  const rel = RELATIVE.exec(text);
  if (rel) return now - Number(rel[1]) * UNIT_US[rel[2]];
  const m = ISO.exec(text);
  if (m) {
    const [, y, mo, d, h = '0', mi = '0', sec = '0', frac = '', zone] = m;
    const fields = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec)] as const;
    if (validFields(fields)) {
      const micros = Number(frac.padEnd(6, '0').slice(0, 6));
      let ms: number;
      if (zone === undefined) {
        const local = new Date(fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]);
        local.setFullYear(fields[0]); // years 0..99 would otherwise map to 1900..1999
        ms = local.getTime();
      } else {
        ms = Date.UTC(...fields) - zoneOffsetMinutes(zone) * 60_000;
        if (fields[0] < 100) ms = withFullYear(ms, fields[0]);
      }
      if (Number.isFinite(ms)) return ms * 1000 + micros;
    }
  }
  throw new PofrError('POFR_TIME_FORMAT', `time "${s}" is not understood; ${ACCEPTED}`);
}

function validFields(f: readonly [number, number, number, number, number, number]): boolean {
  const [y, mo, d, h, mi, s] = f;
  if (mo < 0 || mo > 11 || d < 1 || h > 23 || mi > 59 || s > 59) return false;
  const daysInMonth = new Date(Date.UTC(2000, mo + 1, 0)).getUTCDate();
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  return d <= (mo === 1 && !leap ? 28 : daysInMonth);
}

function zoneOffsetMinutes(zone: string): number {
  if (zone.toUpperCase() === 'Z') return 0;
  const sign = zone.startsWith('-') ? -1 : 1;
  const digits = zone.slice(1).replace(':', '');
  const hours = Number(digits.slice(0, 2));
  const minutes = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
  return sign * (hours * 60 + minutes);
}

function withFullYear(ms: number, year: number): number {
  const d = new Date(ms);
  d.setUTCFullYear(year);
  return d.getTime();
}

/**
 * Formats microseconds since the epoch as ISO 8601 UTC with exactly six fractional digits
 * (`2026-11-24T20:15:00.123456Z`); null stays null (an interval still open).
 */
export function formatTime(us: number | null): string | null {
  if (us === null) return null;
  const ms = Math.floor(us / 1000);
  const micros = us - ms * 1000;
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return `${iso.slice(0, -1)}${String(micros).padStart(3, '0')}Z`;
}
