import type { CompiledRule } from './compile.js';
import { type Condition, parseCondition, searchesMatching } from './condition.js';
import type { FieldSlots, LiveRow } from './predicate.js';
import { likePattern, windash } from './values.js';

/**
 * A literal a row's (lowered) field must hold for a rule to match it: equal to it, starting or
 * ending with it, or containing it.
 */
interface Anchor {
  readonly slot: number;
  readonly kind: 'eq' | 'prefix' | 'suffix' | 'contains';
  readonly text: string;
}

/**
 * What a rule needs of a row, as anchors of which at least one must hold (null: nothing can be
 * said, e.g. `not x` or a regular expression). Sound, not complete: a row that fails every anchor
 * cannot match; one that holds an anchor is then tested in full.
 *
 * Anchors are lowered by the engine's lower() and compared with the lowered field: for `|cased`
 * too, since lowering one character at a time keeps a prefix a prefix (and so on). With
 * `cheapOnly`, only fields that are not `dear` anchor (a hunt reads those first).
 */
export function ruleAnchors(c: CompiledRule, slots: FieldSlots, cheapOnly = false): Anchor[] | null {
  const { rule, source, caps } = c;
  const names = Object.keys(rule.searches);
  const lower = caps.lowerText;

  const valueAnchor = (slot: number, mods: readonly string[], v: unknown): Anchor[] | null => {
    if (v === null || typeof v === 'object') return null;
    const s = String(v);
    let pattern = likePattern(s);
    if (mods.includes('contains')) pattern = `%${pattern}%`;
    else if (mods.includes('startswith')) pattern = `${pattern}%`;
    else if (mods.includes('endswith')) pattern = `%${pattern}`;
    const parts = likeParts(lower(pattern));
    const lits = parts.filter((p): p is { lit: string } => typeof p !== 'string');
    if (lits.length === 0) return null;
    const first = parts[0];
    const last = parts[parts.length - 1];
    if (parts.length === 1 && typeof first !== 'string') return [{ slot, kind: 'eq', text: first.lit }];
    if (typeof first !== 'string') return [{ slot, kind: 'prefix', text: first.lit }];
    if (typeof last !== 'string') return [{ slot, kind: 'suffix', text: last.lit }];
    const longest = lits.reduce((a, b) => (b.lit.length > a.lit.length ? b : a));
    return [{ slot, kind: 'contains', text: longest.lit }];
  };

  const fieldAnchors = (key: string, raw: unknown): Anchor[] | null => {
    const [fieldName, ...mods] = key.split('|');
    const field = source.fields[fieldName];
    // cheapOnly: anchors a hunt can check before it reads the `dear` fields (logsources.ts).
    if (field === undefined || (cheapOnly && field.dear)) return null;
    // Numbers, addresses, presence and regular expressions are left to the full test.
    if (['exists', 're', 'cidr', 'gt', 'gte', 'lt', 'lte'].some((m) => mods.includes(m))) return null;
    if (field.type === 'int') return null;
    const slot = slots.slot(fieldName);
    const values = Array.isArray(raw) ? raw : [raw];
    const expanded = mods.includes('windash')
      ? values.flatMap((v) => (typeof v === 'string' ? windash(v) : [v]))
      : values;
    if (expanded.length === 0) return null;
    const each = expanded.map((v) => valueAnchor(slot, mods, v));
    return mods.includes('all') ? best(each) : union(each);
  };

  const mapAnchors = (map: unknown): Anchor[] | null => {
    if (typeof map !== 'object' || map === null || Array.isArray(map)) return null;
    return best(Object.entries(map).map(([k, v]) => fieldAnchors(k, v)));
  };
  const searchAnchors = (name: string): Anchor[] | null => {
    const value = rule.searches[name];
    return Array.isArray(value) ? union(value.map(mapAnchors)) : mapAnchors(value);
  };
  const condAnchors = (cond: Condition): Anchor[] | null => {
    switch (cond.kind) {
      case 'search':
        return searchAnchors(cond.name);
      case 'not':
        return null;
      case 'and':
        return best(cond.operands.map(condAnchors));
      case 'or':
        return union(cond.operands.map(condAnchors));
      case 'of': {
        const each = searchesMatching(cond.pattern, names).map(searchAnchors);
        return cond.quantifier === 'one' ? union(each) : best(each);
      }
    }
  };
  try {
    return union(rule.conditions.map((cond) => condAnchors(parseCondition(cond))));
  } catch {
    return null;
  }
}

/** Any of several needs: all their anchors (nothing, if one of them says nothing). */
function union(needs: readonly (Anchor[] | null)[]): Anchor[] | null {
  if (needs.length === 0 || needs.some((n) => n === null)) return null;
  return (needs as Anchor[][]).flat();
}

/** All of several needs: the cheapest one to check (each of them is necessary). */
function best(needs: readonly (Anchor[] | null)[]): Anchor[] | null {
  let pick: Anchor[] | null = null;
  for (const n of needs) if (n !== null && (pick === null || cost(n) < cost(pick))) pick = n;
  return pick;
}

// A lookup for eq/prefix/suffix; a substring search, dearer, for contains.
const cost = (anchors: readonly Anchor[]) =>
  anchors.reduce((sum, a) => sum + (a.kind === 'contains' ? 4 : 1), 0);

/** A LIKE pattern (backslash escapes) as literal runs and its `%`/`_` wildcards. */
function likeParts(pattern: string): ({ lit: string } | '%' | '_')[] {
  const parts: ({ lit: string } | '%' | '_')[] = [];
  let lit = '';
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === '\\' && i + 1 < chars.length) lit += chars[++i];
    else if (c === '%' || c === '_') {
      if (lit) parts.push({ lit });
      lit = '';
      parts.push(c);
    } else lit += c;
  }
  if (lit) parts.push({ lit });
  return parts;
}

/**
 * The rules of one table indexed by their anchors: per row, a few map lookups by the field's
 * value, its prefixes and suffixes of the anchors' lengths, plus substring searches, say which
 * rules are worth testing in full. Rules without anchors are always tested.
 */
export class Prefilter {
  private readonly always: number[] = [];
  private readonly eq = new Map<number, Map<string, number[]>>();
  private readonly prefix = new Map<number, Map<number, Map<string, number[]>>>();
  private readonly suffix = new Map<number, Map<number, Map<string, number[]>>>();
  private readonly contains = new Map<number, { text: string; rules: number[] }[]>();
  private readonly seen: Uint32Array;
  private epoch = 0;

  constructor(anchors: readonly (Anchor[] | null)[]) {
    this.seen = new Uint32Array(anchors.length);
    anchors.forEach((list, rule) => {
      if (list === null) {
        this.always.push(rule);
        return;
      }
      for (const a of list) {
        if (a.kind === 'eq')
          push(
            getOr(this.eq, a.slot, () => new Map()),
            a.text,
            rule,
          );
        else if (a.kind === 'contains') {
          const l = getOr(this.contains, a.slot, () => []);
          const same = l.find((x) => x.text === a.text);
          if (same) same.rules.push(rule);
          else l.push({ text: a.text, rules: [rule] });
        } else {
          const byLen = getOr(a.kind === 'prefix' ? this.prefix : this.suffix, a.slot, () => new Map());
          push(
            getOr(byLen, a.text.length, () => new Map()),
            a.text,
            rule,
          );
        }
      }
    });
  }

  /** The rules worth a full test on `row`, in rule order; each at most once. */
  candidates(row: LiveRow): number[] {
    const epoch = ++this.epoch;
    const seen = this.seen;
    const out: number[] = [];
    const mark = (rules: readonly number[] | undefined) => {
      if (rules === undefined) return;
      for (const r of rules) {
        if (seen[r] !== epoch) {
          seen[r] = epoch;
          out.push(r);
        }
      }
    };
    mark(this.always);
    for (const [slot, m] of this.eq) {
      const v = row.lowered(slot);
      if (v !== null) mark(m.get(v));
    }
    for (const [slot, lens] of this.prefix) {
      const v = row.lowered(slot);
      if (v === null) continue;
      for (const [len, m] of lens) if (v.length >= len) mark(m.get(v.slice(0, len)));
    }
    for (const [slot, lens] of this.suffix) {
      const v = row.lowered(slot);
      if (v === null) continue;
      for (const [len, m] of lens) if (v.length >= len) mark(m.get(v.slice(v.length - len)));
    }
    for (const [slot, list] of this.contains) {
      const v = row.lowered(slot);
      if (v === null) continue;
      for (const { text, rules } of list) if (v.includes(text)) mark(rules);
    }
    if (this.epoch === 0xffffffff) {
      this.seen.fill(0);
      this.epoch = 0;
    }
    return out.sort((a, b) => a - b);
  }

  /** How many rules have no anchor (always tested): for the benchmark's notes. */
  get unanchored(): number {
    return this.always.length;
  }
}

function getOr<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    m.set(k, v);
  }
  return v;
}

function push(m: Map<string, number[]>, k: string, rule: number): void {
  const l = m.get(k);
  if (l) l.push(rule);
  else m.set(k, [rule]);
}
