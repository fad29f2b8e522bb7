import { isMap, LineCounter, parseDocument } from 'yaml';
import { PofrError } from '../errors.js';

/** The parts of a Sigma rule pofr uses (SigmaHQ/sigma-specification, "Sigma rules"). */
export interface SigmaRule {
  /** The file it came from, as given (for messages and `rules check`). */
  readonly file: string;
  readonly id: string;
  readonly title: string;
  readonly status: string | null;
  readonly level: string | null;
  /** Every alert carries it (Detection Rule License 1.1); "unknown" when the rule names nobody. */
  readonly author: string;
  readonly logsource: { readonly product?: string; readonly category?: string; readonly service?: string };
  /** The detection map without its `condition`: search identifiers → selections. */
  readonly searches: Readonly<Record<string, unknown>>;
  /** One condition, or several (a list in the rule means any of them). */
  readonly conditions: readonly string[];
}

/**
 * Parses one rule file. A YAML error, or a rule without the fields every Sigma rule has, throws
 * POFR_RULE_INVALID naming the file and line (from the yaml library's own error positions).
 *
 * @example
 * const rule = parseRule(readFileSync(f, 'utf8'), f);
 */
export function parseRule(text: string, file: string): SigmaRule {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first) {
    const at = first.linePos?.[0] ?? lineCounter.linePos(first.pos[0]);
    throw invalid(file, at.line, at.col, first.message);
  }
  const root = doc.contents;
  if (!isMap(root)) throw invalid(file, 1, 1, 'a Sigma rule is a YAML map (title, logsource, detection, …)');
  const lineOf = (key: string): number => {
    const node = doc.get(key, true) as { range?: [number, number, number] } | undefined;
    return node?.range ? lineCounter.linePos(node.range[0]).line : 1;
  };
  const js = doc.toJS() as Record<string, unknown>;
  const str = (key: string, required: boolean): string | null => {
    const v = js[key];
    if (v === undefined || v === null) {
      if (required) throw invalid(file, 1, 1, `the rule has no "${key}"`);
      return null;
    }
    if (typeof v !== 'string' && typeof v !== 'number') {
      throw invalid(file, lineOf(key), 1, `"${key}" must be a string`);
    }
    return String(v);
  };
  const title = str('title', true)!;
  const id = str('id', false) ?? title;
  const logsource = js.logsource;
  if (typeof logsource !== 'object' || logsource === null || Array.isArray(logsource)) {
    throw invalid(file, lineOf('logsource'), 1, '"logsource" must be a map (product, category, service)');
  }
  const detection = js.detection;
  if (typeof detection !== 'object' || detection === null || Array.isArray(detection)) {
    throw invalid(file, lineOf('detection'), 1, '"detection" must be a map of searches and a condition');
  }
  const { condition, ...searches } = detection as Record<string, unknown>;
  const conditions = Array.isArray(condition) ? condition : [condition];
  if (conditions.length === 0 || conditions.some((c) => typeof c !== 'string' || c.trim() === '')) {
    throw invalid(
      file,
      lineOf('detection'),
      1,
      '"detection" needs a "condition" (a string or a list of them)',
    );
  }
  const ls = logsource as Record<string, unknown>;
  const opt = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return Object.freeze({
    file,
    id,
    title,
    status: str('status', false),
    level: str('level', false),
    author: str('author', false) ?? 'unknown',
    logsource: Object.freeze({
      product: opt(ls.product),
      category: opt(ls.category),
      service: opt(ls.service),
    }),
    searches: Object.freeze(searches),
    conditions: Object.freeze(conditions as string[]),
  });
}

function invalid(file: string, line: number, col: number, message: string): PofrError {
  // The yaml library's messages end with their own "at line L, column C" and a code excerpt: keep
  // only the first line, since the position is already in front.
  const what = message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
  return new PofrError('POFR_RULE_INVALID', `${file}:${line}:${col}: ${what}; fix the rule or remove it`, {
    file,
    line,
    col,
  });
}
