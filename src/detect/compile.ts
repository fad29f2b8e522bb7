import { type RawBuilder, sql } from 'kysely';
import type { Capabilities } from '../store/index.js';
import { type Condition, ConditionError, parseCondition, searchesMatching } from './condition.js';
import { LOGSOURCES, type LogSource } from './logsources.js';
import type { SigmaRule } from './rule.js';
import { fieldMatch, join, UnsupportedError } from './values.js';

/** A rule pofr can run: its SQL condition over its logsource's base query. */
export interface CompiledRule {
  readonly status: 'ok';
  readonly caps: Capabilities;
  readonly rule: SigmaRule;
  readonly source: LogSource;
  readonly where: RawBuilder<boolean>;
}

/** A rule pofr cannot run, and why (never skipped silently: `rules check` and `hunt` list it). */
export interface UnsupportedRule {
  readonly status: 'unsupported';
  readonly rule: SigmaRule;
  readonly reason: string;
}

/**
 * Compiles a parsed rule to a parameterised SQL condition for `caps`' engine, or says which part of
 * it (logsource, field, modifier, condition) pofr does not support.
 *
 * @example
 * const c = compileRule(parseRule(text, file), store.caps);
 * if (c.status === 'ok') … c.where …
 */
export function compileRule(rule: SigmaRule, caps: Capabilities): CompiledRule | UnsupportedRule {
  const unsupported = (reason: string): UnsupportedRule => ({ status: 'unsupported', rule, reason });
  const { product, category, service } = rule.logsource;
  if (product !== undefined && product.toLowerCase() !== 'linux') {
    return unsupported(`logsource product "${product}": pofr records Linux hosts`);
  }
  if (service !== undefined) return unsupported(`logsource service "${service}": pofr records no logs`);
  const source = category === undefined ? undefined : LOGSOURCES[category];
  if (source === undefined) {
    return unsupported(
      `logsource category "${category ?? '(none)'}": pofr records ${Object.keys(LOGSOURCES).join(', ')}`,
    );
  }
  try {
    const names = Object.keys(rule.searches);
    const searches = new Map<string, RawBuilder<boolean>>();
    const search = (name: string): RawBuilder<boolean> => {
      let s = searches.get(name);
      if (s === undefined) {
        if (!(name in rule.searches))
          throw new ConditionError(`the condition names "${name}", which detection lacks`);
        s = compileSearch(name, rule.searches[name], source, caps);
        searches.set(name, s);
      }
      return s;
    };
    const toSql = (c: Condition): RawBuilder<boolean> => {
      switch (c.kind) {
        case 'search':
          return search(c.name);
        case 'not':
          return sql<boolean>`(not ${toSql(c.operand)})`;
        case 'and':
        case 'or':
          return join(c.operands.map(toSql), c.kind);
        case 'of': {
          const matched = searchesMatching(c.pattern, names);
          if (matched.length === 0) throw new ConditionError(`"${c.pattern}" matches no search of the rule`);
          return join(matched.map(search), c.quantifier === 'one' ? 'or' : 'and');
        }
      }
    };
    const where = join(
      rule.conditions.map((c) => toSql(parseCondition(c))),
      'or',
    );
    return { status: 'ok', caps, rule, source, where };
  } catch (e) {
    if (e instanceof UnsupportedError || e instanceof ConditionError) return unsupported(e.message);
    throw e;
  }
}

/** A search: a map (every field matches), or a list of maps (any of them). */
function compileSearch(
  name: string,
  value: unknown,
  source: LogSource,
  caps: Capabilities,
): RawBuilder<boolean> {
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'object' && v !== null && !Array.isArray(v))) {
      return join(
        value.map((v) => compileMap(name, v as Record<string, unknown>, source, caps)),
        'or',
      );
    }
    throw new UnsupportedError(`"${name}" is a keyword list (full-text search of a log message)`);
  }
  if (typeof value === 'object' && value !== null) {
    return compileMap(name, value as Record<string, unknown>, source, caps);
  }
  throw new UnsupportedError(`"${name}" is a keyword (full-text search of a log message)`);
}

function compileMap(
  name: string,
  map: Record<string, unknown>,
  source: LogSource,
  caps: Capabilities,
): RawBuilder<boolean> {
  const parts = Object.entries(map).map(([key, v]) => {
    const [fieldName, ...modifiers] = key.split('|');
    const field = source.fields[fieldName];
    if (field === undefined) {
      throw new UnsupportedError(
        `field "${fieldName}" (in "${name}") is not recorded for ${source.category}`,
      );
    }
    return fieldMatch(field, modifiers, v, caps);
  });
  return join(parts, 'and');
}
