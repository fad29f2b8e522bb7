/**
 * Sigma conditions (specification, "Condition"): search identifiers, `not`, `and`, `or`,
 * parentheses, `1 of PATTERN`, `all of PATTERN`, `1 of them`, `all of them`. Aggregations after a
 * pipe (`| count() > 5`) are deprecated in Sigma and refused as unsupported.
 */
export type Condition =
  | { readonly kind: 'search'; readonly name: string }
  | { readonly kind: 'not'; readonly operand: Condition }
  | { readonly kind: 'and' | 'or'; readonly operands: readonly Condition[] }
  | { readonly kind: 'of'; readonly quantifier: 'one' | 'all'; readonly pattern: string };

/** Thrown for a condition pofr cannot read; `rules check` reports it as unsupported or error. */
export class ConditionError extends Error {}

const TOKEN = /\s*(\(|\)|[A-Za-z0-9_*?.-]+|\S)/y;

/**
 * Parses a condition string into a tree (precedence: not > and > or).
 *
 * @example
 * parseCondition('selection and not 1 of filter_*');
 */
export function parseCondition(text: string): Condition {
  if (text.includes('|')) throw new ConditionError(`aggregation "${text.slice(text.indexOf('|'))}"`);
  const tokens: string[] = [];
  TOKEN.lastIndex = 0;
  for (let m = TOKEN.exec(text); m !== null; m = TOKEN.exec(text)) tokens.push(m[1]);
  let i = 0;
  const peek = () => tokens[i]?.toLowerCase();
  const fail = (what: string): never => {
    throw new ConditionError(`condition "${text}": ${what}`);
  };
  const orExpr = (): Condition => {
    const operands = [andExpr()];
    while (peek() === 'or') {
      i++;
      operands.push(andExpr());
    }
    return operands.length === 1 ? operands[0] : { kind: 'or', operands };
  };
  const andExpr = (): Condition => {
    const operands = [notExpr()];
    while (peek() === 'and') {
      i++;
      operands.push(notExpr());
    }
    return operands.length === 1 ? operands[0] : { kind: 'and', operands };
  };
  const notExpr = (): Condition => {
    if (peek() === 'not') {
      i++;
      return { kind: 'not', operand: notExpr() };
    }
    return primary();
  };
  const primary = (): Condition => {
    const t = tokens[i];
    if (t === undefined) return fail('ends too early');
    if (t === '(') {
      i++;
      const inner = orExpr();
      if (tokens[i] !== ')') fail('a parenthesis is not closed');
      i++;
      return inner;
    }
    const low = t.toLowerCase();
    if ((low === '1' || low === 'all') && tokens[i + 1]?.toLowerCase() === 'of') {
      const pattern = tokens[i + 2];
      if (pattern === undefined || pattern === '(' || pattern === ')') fail(`"${t} of" needs a pattern`);
      i += 3;
      return { kind: 'of', quantifier: low === '1' ? 'one' : 'all', pattern: pattern! };
    }
    if (/^\d+$/.test(low) && tokens[i + 1]?.toLowerCase() === 'of') fail(`"${t} of" (only 1 of and all of)`);
    if (['and', 'or', 'not', ')'].includes(low)) fail(`unexpected "${t}"`);
    if (!/^[A-Za-z0-9_.-]+$/.test(t)) fail(`unexpected "${t}"`);
    i++;
    return { kind: 'search', name: t };
  };
  const tree = orExpr();
  if (i < tokens.length) fail(`unexpected "${tokens[i]}"`);
  return tree;
}

/** The search identifiers `PATTERN` names (`*` any characters; `them`: all but those starting with _). */
export function searchesMatching(pattern: string, names: readonly string[]): string[] {
  if (pattern.toLowerCase() === 'them') return names.filter((n) => !n.startsWith('_'));
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\-]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return names.filter((n) => re.test(n));
}
