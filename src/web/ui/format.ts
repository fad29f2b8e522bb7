/** µs since the epoch as ISO 8601 UTC with six fractional digits: 2026-11-24 20:15:03.123456Z. */
export function utc(us: number | null | undefined): string {
  if (us === null || us === undefined) return '—';
  const ms = Math.floor(us / 1000);
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}${String(us - ms * 1000).padStart(3, '0')}Z`;
}

/** The same instant in the host's own zone, for the hover title. */
export function inZone(us: number | null | undefined, zone: string | null | undefined): string {
  if (us === null || us === undefined) return '';
  if (!zone) return 'host time zone unknown';
  try {
    const text = new Intl.DateTimeFormat('en-GB', {
      timeZone: zone,
      dateStyle: 'medium',
      timeStyle: 'long',
    }).format(new Date(us / 1000));
    return `${text} (${zone}, the host's zone)`;
  } catch {
    return `host zone ${zone} is not known to this browser`;
  }
}

/** ISO form for URLs: deep links stay readable (and exact to the µs). */
export function isoParam(us: number): string {
  return utc(us).replace(' ', 'T');
}

export function duration(us: number | null): string {
  if (us === null) return '—';
  const s = Math.round(us / 1e6);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400 * 2) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

/**
 * The exact bytes of a value that is not UTF-8, each argument apart: printable ASCII as itself,
 * everything else as \xNN, so an analyst sees what the kernel held, not a replacement character.
 */
export function exactArgs(b64: string): string[] {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const args: string[] = [];
  let cur = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0) {
      args.push(cur);
      cur = '';
    } else
      cur +=
        b >= 0x20 && b < 0x7f && b !== 0x5c
          ? String.fromCharCode(b)
          : `\\x${b.toString(16).padStart(2, '0')}`;
  }
  if (cur !== '') args.push(cur);
  return args;
}

/** Splits a display string so \xNN escapes (bytes that were not UTF-8) can be shown as such. */
export function byteParts(s: string): { text: string; byte: boolean }[] {
  const out: { text: string; byte: boolean }[] = [];
  const re = /\\x[0-9a-f]{2}/gi;
  let last = 0;
  for (const m of s.matchAll(re)) {
    if (m.index > last) out.push({ text: s.slice(last, m.index), byte: false });
    out.push({ text: m[0], byte: true });
    last = m.index + m[0].length;
  }
  if (last < s.length) out.push({ text: s.slice(last), byte: false });
  return out;
}

/** Control characters and newlines made visible, so a hostile argument cannot fake a line. */
export function visible(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) =>
    c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
