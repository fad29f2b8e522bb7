import type { Capabilities } from '../store/index.js';
import type { CompiledRule } from './compile.js';
import { type Condition, parseCondition, searchesMatching } from './condition.js';
import type { FieldMapping } from './logsources.js';
import { cidrPrefixes, likePattern, SUPPORTED_MODIFIERS, windash } from './values.js';

/**
 * A rule's verdict on one row: true, false, or null when JavaScript cannot tell (a regular
 * expression only the engine runs, on PostgreSQL): the SQL of the rule then decides.
 */
export type Verdict = boolean | null;

/** A rule's test of one row, the same as its SQL condition (values.ts) wherever it says true or false. */
export type Predicate = (row: LiveRow) => Verdict;

/** The fields a table's rules read, each a slot of LiveRow (one SELECT column each). */
export class FieldSlots {
  private readonly slots = new Map<string, number>();
  readonly names: string[] = [];

  slot(name: string): number {
    let i = this.slots.get(name);
    if (i === undefined) {
      i = this.names.length;
      this.names.push(name);
      this.slots.set(name, i);
    }
    return i;
  }
}

/** One row's field values by slot, as the SQL read them; each lowered at most once, when a rule asks. */
export class LiveRow {
  private readonly low: (string | null | undefined)[] = [];

  constructor(
    readonly values: readonly unknown[],
    private readonly lower: (text: string) => string,
  ) {}

  /** As `cast(col as text)`: numbers in decimal, NULL as null. */
  text(slot: number): string | null {
    const v = this.values[slot];
    return v === null || v === undefined ? null : String(v);
  }

  /** As the engine's `lower(cast(col as text))`. */
  lowered(slot: number): string | null {
    let l = this.low[slot];
    if (l === undefined) {
      const t = this.text(slot);
      l = t === null ? null : this.lower(t);
      this.low[slot] = l;
    }
    return l;
  }
}

const TRUE: Predicate = () => true;
const FALSE: Predicate = () => false;

/**
 * The rule's condition as a JavaScript test over the fields in `slots` (adding those it reads), with
 * the semantics of its SQL: Sigma's case-insensitive LIKE through the engine's own lower(),
 * wildcards, lists, modifiers, NULL fields matching nothing. What it cannot decide it leaves to SQL.
 *
 * @example
 * const test = rulePredicate(compiled, slots);
 * if (test(new LiveRow(values, caps.lowerText)) !== false) … confirm in SQL …
 */
export function rulePredicate(c: CompiledRule, slots: FieldSlots): RuleTest {
  const { rule, source, caps } = c;
  const ctx: Ctx = { caps, exact: true };
  const names = Object.keys(rule.searches);
  const searches = new Map<string, Predicate>();
  const search = (name: string): Predicate => {
    let s = searches.get(name);
    if (s === undefined) {
      s = searchTest(
        rule.searches[name],
        (fieldName) => {
          const field = source.fields[fieldName];
          // compileRule accepted the rule, so this does not happen; if it did, SQL decides.
          return field === undefined ? undefined : { field, slot: slots.slot(fieldName) };
        },
        ctx,
      );
      searches.set(name, s);
    }
    return s;
  };
  const toTest = (cond: Condition): Predicate => {
    switch (cond.kind) {
      case 'search':
        return search(cond.name);
      case 'not': {
        const inner = toTest(cond.operand);
        return (row) => {
          const v = inner(row);
          return v === null ? null : !v;
        };
      }
      case 'and':
        return all(cond.operands.map(toTest));
      case 'or':
        return any(cond.operands.map(toTest));
      case 'of': {
        const matched = searchesMatching(cond.pattern, names).map(search);
        return cond.quantifier === 'one' ? any(matched) : all(matched);
      }
    }
  };
  try {
    const test = any(rule.conditions.map((cond) => toTest(parseCondition(cond))));
    return { test, exact: ctx.exact };
  } catch {
    return { test: () => null, exact: false };
  }
}

/** A rule's test, and whether it always decides (no null verdict: no rows left to SQL). */
export interface RuleTest {
  readonly test: Predicate;
  readonly exact: boolean;
}

interface Ctx {
  readonly caps: Capabilities;
  /** Cleared by any test that may answer null. */
  exact: boolean;
}

const UNKNOWN = (ctx: Ctx): Predicate => {
  ctx.exact = false;
  return () => null;
};

type FieldOf = (name: string) => { field: FieldMapping; slot: number } | undefined;

function searchTest(value: unknown, fieldOf: FieldOf, ctx: Ctx): Predicate {
  if (Array.isArray(value)) return any(value.map((v) => mapTest(v as Record<string, unknown>, fieldOf, ctx)));
  return mapTest(value as Record<string, unknown>, fieldOf, ctx);
}

function mapTest(map: Record<string, unknown>, fieldOf: FieldOf, ctx: Ctx): Predicate {
  return all(
    Object.entries(map).map(([key, v]) => {
      const [fieldName, ...modifiers] = key.split('|');
      const f = fieldOf(fieldName);
      if (f === undefined || modifiers.some((m) => !SUPPORTED_MODIFIERS.has(m))) return UNKNOWN(ctx);
      return fieldTest(f.slot, f.field, modifiers, v, ctx);
    }),
  );
}

/** values.ts fieldMatch, in JavaScript. */
function fieldTest(
  slot: number,
  field: FieldMapping,
  mods: readonly string[],
  raw: unknown,
  ctx: Ctx,
): Predicate {
  const values = Array.isArray(raw) ? raw : [raw];
  if (mods.includes('exists')) {
    const want = values[0] === true;
    return (row) => (row.text(slot) !== null) === want;
  }
  const expanded = mods.includes('windash')
    ? values.flatMap((v) => (typeof v === 'string' ? windash(v) : [v]))
    : values;
  const parts = expanded.map((v) => oneTest(slot, field, mods, v, ctx));
  if (parts.length === 0) return FALSE;
  return mods.includes('all') ? all(parts) : any(parts);
}

/** values.ts one(), in JavaScript: every test but `is null` is false on a NULL field (its guard). */
function oneTest(
  slot: number,
  field: FieldMapping,
  mods: readonly string[],
  v: unknown,
  ctx: Ctx,
): Predicate {
  const { caps } = ctx;
  if (v === null) {
    return (row) => {
      const t = row.text(slot);
      return t === null || t === '';
    };
  }
  if (typeof v === 'object') return UNKNOWN(ctx);
  const has = (m: string) => mods.includes(m);
  if (has('re')) {
    const standIn = caps.regexTest?.(String(v));
    if (standIn === undefined) {
      ctx.exact = false;
      return (row) => (row.text(slot) === null ? false : null);
    }
    if (!standIn.total) ctx.exact = false;
    const { test } = standIn;
    return (row) => {
      const t = row.text(slot);
      return t !== null && test(t);
    };
  }
  if (has('cidr')) {
    // cidrMatch: lower(col) = text, or lower(col) LIKE text with no escape character.
    const tests = cidrPrefixes(String(v)).map((p) =>
      p.exact ? (s: string) => s === p.text : likeTest(p.text, null),
    );
    return (row) => {
      const l = row.lowered(slot);
      return l !== null && tests.some((t) => t(l));
    };
  }
  for (const cmp of ['gt', 'gte', 'lt', 'lte'] as const) {
    if (!has(cmp)) continue;
    const n = Number(v);
    const op = {
      gt: (a: number) => a > n,
      gte: (a: number) => a >= n,
      lt: (a: number) => a < n,
      lte: (a: number) => a <= n,
    }[cmp];
    return (row) => {
      const x = row.values[slot];
      return x !== null && x !== undefined && op(Number(x));
    };
  }
  const s = String(v);
  const plain =
    !/(^|[^\\])[*?]/.test(s) && !mods.some((m) => ['contains', 'startswith', 'endswith'].includes(m));
  if (field.type === 'int' && plain && /^-?\d+$/.test(s)) {
    const n = Number(s);
    return (row) => {
      const x = row.values[slot];
      return x !== null && x !== undefined && Number(x) === n;
    };
  }
  let pattern = likePattern(s);
  if (has('contains')) pattern = `%${pattern}%`;
  else if (has('startswith')) pattern = `${pattern}%`;
  else if (has('endswith')) pattern = `%${pattern}`;
  if (has('cased')) {
    const t = likeTest(pattern, '\\');
    return (row) => {
      const x = row.text(slot);
      return x !== null && t(x);
    };
  }
  const t = likeTest(caps.lowerText(pattern), '\\');
  return (row) => {
    const x = row.lowered(slot);
    return x !== null && t(x);
  };
}

/**
 * SQL's `text LIKE pattern [ESCAPE e]`, case-sensitive (as both engines run it): `%` any characters,
 * newlines included, `_` one character. The shapes rules use most are plain string tests.
 */
export function likeTest(pattern: string, escapeChar: string | null): (text: string) => boolean {
  const parts: (string | '%' | '_')[] = [];
  let lit = '';
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (escapeChar !== null && c === escapeChar && i + 1 < chars.length) {
      lit += chars[++i];
    } else if (c === '%' || c === '_') {
      if (lit) parts.push(lit);
      lit = '';
      parts.push(c === '%' ? '%' : '_');
    } else lit += c;
  }
  if (lit) parts.push(lit);
  const isLit = (p: string | undefined): p is string => p !== undefined && p !== '%' && p !== '_';
  const [a, b, c] = parts;
  if (parts.length === 0) return (t) => t === '';
  if (parts.length === 1 && isLit(a)) return (t) => t === a;
  if (parts.length === 1 && a === '%') return TRUE_TEXT;
  if (parts.length === 2 && isLit(a) && b === '%') return (t) => t.startsWith(a);
  if (parts.length === 2 && a === '%' && isLit(b)) return (t) => t.endsWith(b);
  if (parts.length === 3 && a === '%' && isLit(b) && c === '%') return (t) => t.includes(b);
  const source = parts
    .map((p) => (p === '%' ? '.*' : p === '_' ? '.' : p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')))
    .join('');
  // s: `.` takes newlines too; u: `.` is one code point, as LIKE's `_` is one character.
  const re = new RegExp(`^${source}$`, 'su');
  return (t) => re.test(t);
}

const TRUE_TEXT = () => true;

/** Kleene's AND: false wins, then unknown. */
function all(ps: readonly Predicate[]): Predicate {
  if (ps.length === 0) return TRUE;
  if (ps.length === 1) return ps[0];
  return (row) => {
    let unknown = false;
    for (const p of ps) {
      const v = p(row);
      if (v === false) return false;
      if (v === null) unknown = true;
    }
    return unknown ? null : true;
  };
}

/** Kleene's OR: true wins, then unknown. */
function any(ps: readonly Predicate[]): Predicate {
  if (ps.length === 0) return FALSE;
  if (ps.length === 1) return ps[0];
  return (row) => {
    let unknown = false;
    for (const p of ps) {
      const v = p(row);
      if (v === true) return true;
      if (v === null) unknown = true;
    }
    return unknown ? null : false;
  };
}
