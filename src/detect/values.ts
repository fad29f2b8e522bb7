import { type RawBuilder, sql } from 'kysely';
import type { Capabilities } from '../store/index.js';
import type { FieldMapping } from './logsources.js';

/** Thrown for a value or modifier pofr cannot express; the rule is then `unsupported` with the reason. */
export class UnsupportedError extends Error {}

const TRUE = sql<boolean>`(1 = 1)`;
const FALSE = sql<boolean>`(1 = 0)`;

export const SUPPORTED_MODIFIERS = new Set([
  'contains',
  'startswith',
  'endswith',
  'all',
  'cased',
  're',
  'cidr',
  'exists',
  'windash',
  'gt',
  'gte',
  'lt',
  'lte',
]);

/**
 * One `Field|modifiers: values` item of a selection as a boolean SQL expression: values are bound
 * as parameters, never spliced into the text. A list is OR (AND with `all`); a missing field (NULL)
 * matches nothing, so `not filter` keeps a row whose field is unknown.
 */
export function fieldMatch(
  field: FieldMapping,
  modifiers: readonly string[],
  raw: unknown,
  caps: Capabilities,
): RawBuilder<boolean> {
  for (const m of modifiers) {
    if (!SUPPORTED_MODIFIERS.has(m)) throw new UnsupportedError(`modifier "${m}"`);
  }
  const has = (m: string) => modifiers.includes(m);
  const values = Array.isArray(raw) ? raw : [raw];
  if (has('exists')) {
    if (values.length !== 1 || typeof values[0] !== 'boolean') {
      throw new UnsupportedError('"exists" takes true or false');
    }
    return values[0] ? sql<boolean>`(${field.expr} is not null)` : sql<boolean>`(${field.expr} is null)`;
  }
  let expanded: unknown[] = values;
  if (has('windash')) expanded = values.flatMap((v) => (typeof v === 'string' ? windash(v) : [v]));
  const parts = expanded.map((v) => one(field, modifiers, v, caps));
  if (parts.length === 0) return FALSE;
  return join(parts, has('all') ? 'and' : 'or');
}

function one(
  field: FieldMapping,
  mods: readonly string[],
  v: unknown,
  caps: Capabilities,
): RawBuilder<boolean> {
  const col = field.expr;
  if (v === null) return sql<boolean>`(${col} is null or cast(${col} as text) = '')`;
  if (typeof v === 'object') throw new UnsupportedError('a nested map or list as a value');
  const has = (m: string) => mods.includes(m);
  if (has('re')) {
    if (typeof v !== 'string') throw new UnsupportedError('"re" with a non-string value');
    // A pattern the engine would refuse fails here, not inside every batch's transaction.
    try {
      caps.regexTest?.(v);
    } catch (e) {
      throw new UnsupportedError(`"re" pattern ${JSON.stringify(v)}: ${(e as Error).message}`);
    }
    return guard(col, caps.regexMatch(sql`cast(${col} as text)`, v));
  }
  if (has('cidr')) return cidrMatch(col, String(v));
  for (const cmp of ['gt', 'gte', 'lt', 'lte'] as const) {
    if (!has(cmp)) continue;
    const n = Number(v);
    if (field.type !== 'int' || !Number.isFinite(n)) throw new UnsupportedError(`"${cmp}" on a text field`);
    const op = sql.raw({ gt: '>', gte: '>=', lt: '<', lte: '<=' }[cmp]);
    return guard(col, sql<boolean>`${col} ${op} ${n}`);
  }
  const s = typeof v === 'boolean' ? String(v) : String(v);
  const plain =
    !/(^|[^\\])[*?]/.test(s) && !mods.some((m) => ['contains', 'startswith', 'endswith'].includes(m));
  if (field.type === 'int' && plain && /^-?\d+$/.test(s))
    return guard(col, sql<boolean>`${col} = ${Number(s)}`);
  let pattern = likePattern(s);
  if (has('contains')) pattern = `%${pattern}%`;
  else if (has('startswith')) pattern = `${pattern}%`;
  else if (has('endswith')) pattern = `%${pattern}`;
  const text = sql`cast(${col} as text)`;
  // The SQLite store makes LIKE case-sensitive (as on PostgreSQL): Sigma's default is insensitive,
  // so both sides are lowered, by the engine's own lower() so the two sides agree.
  return has('cased')
    ? guard(col, sql<boolean>`${text} like ${pattern} escape '\\'`)
    : guard(col, sql<boolean>`lower(${text}) like lower(cast(${pattern} as text)) escape '\\'`);
}

/** Sigma's `*` and `?` become LIKE's `%` and `_`; `\*`, `\?`, `\\` are literal; %, _ and \ are escaped. */
export function likePattern(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && (s[i + 1] === '*' || s[i + 1] === '?' || s[i + 1] === '\\')) {
      out += s[i + 1] === '\\' ? '\\\\' : s[i + 1];
      i++;
    } else if (c === '*') out += '%';
    else if (c === '?') out += '_';
    else if (c === '%' || c === '_' || c === '\\') out += `\\${c}`;
    else out += c;
  }
  return out;
}

/** A NULL field matches nothing (and `not` of it matches), whatever the engine's NULL logic. */
function guard(col: RawBuilder<unknown>, test: RawBuilder<boolean>): RawBuilder<boolean> {
  return sql<boolean>`(${col} is not null and ${test})`;
}

export function join(parts: readonly RawBuilder<boolean>[], op: 'and' | 'or'): RawBuilder<boolean> {
  if (parts.length === 0) return op === 'and' ? TRUE : FALSE;
  if (parts.length === 1) return parts[0];
  return sql<boolean>`(${sql.join(parts, sql.raw(` ${op} `))})`;
}

/** Sigma's windash: a leading - or / stands for each dash a Windows program accepts. */
export function windash(v: string): string[] {
  if (!/^[-/]/.test(v)) return [v];
  return ['-', '/', '\u2013', '\u2014', '\u2015'].map((d) => d + v.slice(1));
}

/**
 * An address in a CIDR block, as LIKE prefixes over the stored text (no address type in SQLite):
 * IPv4 by octets; IPv6 for /128 and for blocks within the first group of four hex digits.
 */
export function cidrMatch(col: RawBuilder<unknown>, cidr: string): RawBuilder<boolean> {
  const prefixes = cidrPrefixes(cidr);
  return guard(
    col,
    join(
      prefixes.map((p) =>
        p.exact ? sql<boolean>`lower(${col}) = ${p.text}` : sql<boolean>`lower(${col}) like ${p.text}`,
      ),
      'or',
    ),
  );
}

export function cidrPrefixes(cidr: string): { text: string; exact: boolean }[] {
  const [addr, lenText] = cidr.split('/');
  const len = lenText === undefined ? (addr.includes(':') ? 128 : 32) : Number(lenText);
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(addr);
  if (v4 && Number.isInteger(len) && len >= 0 && len <= 32) {
    const octets = v4.slice(1).map(Number);
    if (octets.some((o) => o > 255)) throw new UnsupportedError(`cidr "${cidr}": not an address`);
    if (len === 32) return [{ text: addr, exact: true }];
    const full = Math.floor(len / 8);
    const fixed = octets.slice(0, full).join('.');
    const rest = len % 8;
    if (rest === 0) return [{ text: full === 0 ? '%' : `${fixed}.%`, exact: false }];
    const base = octets[full] & (0xff << (8 - rest)) & 0xff;
    const out: { text: string; exact: boolean }[] = [];
    for (let o = base; o < base + (1 << (8 - rest)); o++) {
      const head = full === 0 ? `${o}` : `${fixed}.${o}`;
      out.push(full === 3 ? { text: head, exact: true } : { text: `${head}.%`, exact: false });
    }
    return out;
  }
  if (addr.includes(':') && len === 128) return [{ text: addr.toLowerCase(), exact: true }];
  const first = /^([0-9a-f]{1,4}):/i.exec(addr);
  if (first && len >= 1 && len <= 16) {
    const group = Number.parseInt(first[1], 16);
    const fixedNibbles = Math.ceil(len / 4);
    const base = group & (0xffff << (16 - len)) & 0xffff;
    const step = 1 << (16 - fixedNibbles * 4);
    // Stored text drops leading zeros, so only groups written with four digits are prefixes.
    if (base < 0x1000) throw new UnsupportedError(`cidr "${cidr}": an IPv6 block below 1000::`);
    const out: { text: string; exact: boolean }[] = [];
    for (let g = base; g < base + (1 << (16 - len)); g += step) {
      const hex = g.toString(16).padStart(4, '0').slice(0, fixedNibbles);
      out.push({ text: `${hex}${'_'.repeat(4 - fixedNibbles)}:%`, exact: false });
    }
    return out;
  }
  throw new UnsupportedError(`cidr "${cidr}"`);
}
