/**
 * A JavaScript stand-in for PostgreSQL's `text ~ pattern` (POSIX ARE), for the patterns written in
 * the syntax both engines read the same way, on ASCII texts: live detection then decides a rule's
 * regular expression in memory instead of asking the engine about every row (docs/detection.md).
 *
 * Whether a regular expression (without backreferences or lookaround) matches somewhere in a text
 * does not depend on how the engine chooses among matches (ARE's longest, JavaScript's first): only
 * the syntax must mean the same. Accepted, token by token: plain characters; `.` (flag `s`: any
 * character, newline included, as ARE's default); `^`, `$` (ends of the text: no flag `m`, ARE's
 * default); `|`, `(`, `(?:`, `)`; `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` with counts up to 255 (ARE's
 * limit; a larger one is an error there) and each with a lazy `?`; bracket expressions of plain
 * characters, ranges and the escapes below, not starting with `]` (a literal in ARE, the end of an
 * empty class in JavaScript) and without `[:`, `[.`, `[=`; the escapes `\t \n \r \f \v`, a
 * backslash before punctuation (that character), and `\d \s \w` (also `\D \S \W` outside brackets).
 * Anything else — `\b` (backspace in ARE, a word boundary in JavaScript), `\x41` (ARE takes every
 * hex digit that follows), `\y`, `\m`, backreferences, lookaround, embedded options — gives no
 * stand-in: the engine decides.
 *
 * Texts with a character beyond ASCII are left to the engine too (null): its classes (`\s`, `\w`,
 * ranges) follow the database's locale there, JavaScript's do not.
 *
 * @example
 * const test = areStandIn('\\s-O\\s');
 * test?.('wget -O /tmp/x http://h'); // true
 * test?.('wget -O /tmp/é');          // null: the engine decides
 * areStandIn('\\bsudo\\b');           // undefined: not the same syntax
 */
export function areStandIn(pattern: string): ((text: string) => boolean | null) | undefined {
  if (!commonSyntax(pattern)) return undefined;
  let re: RegExp;
  try {
    re = new RegExp(pattern, 'su');
  } catch {
    return undefined;
  }
  return (text) => (ASCII.test(text) ? re.test(text) : null);
}

const ASCII = /^[\u0000-\u007f]*$/;

/** Characters a backslash makes literal in both syntaxes (JavaScript's Unicode mode allows these). */
const PUNCTUATION = new Set([...'.^$*+?()[]{}|/\\-']);
const CONTROL = new Set([...'tnrfv']);

/** The escape at `chars[i]` (a backslash): its length, or 0 when the syntaxes may disagree on it. */
function escapeLength(chars: readonly string[], i: number, inBrackets: boolean): number {
  const n = chars[i + 1];
  if (n === undefined) return 0;
  if (CONTROL.has(n) || PUNCTUATION.has(n)) return 2;
  // ARE refuses \D, \S, \W inside brackets (before PostgreSQL 16).
  if ('dsw'.includes(n) || (!inBrackets && 'DSW'.includes(n))) return 2;
  return 0;
}

function commonSyntax(pattern: string): boolean {
  const chars = [...pattern];
  for (let i = 0; i < chars.length; ) {
    const c = chars[i];
    if (c === '\\') {
      const len = escapeLength(chars, i, false);
      if (len === 0) return false;
      i += len;
    } else if (c === '[') {
      i++;
      if (chars[i] === '^') i++;
      if (chars[i] === ']') return false;
      for (; i < chars.length && chars[i] !== ']'; ) {
        if (chars[i] === '[' && ':.='.includes(chars[i + 1] ?? '')) return false;
        if (chars[i] === '\\') {
          const len = escapeLength(chars, i, true);
          if (len === 0) return false;
          i += len;
        } else i++;
      }
      if (i >= chars.length) return false;
      i++;
    } else if (c === '{') {
      const m = /^\{(\d{1,3})(,(\d{0,3}))?\}/.exec(chars.slice(i, i + 9).join(''));
      if (m === null) return false;
      const lo = Number(m[1]);
      const hi = m[3] === undefined || m[3] === '' ? lo : Number(m[3]);
      if (lo > 255 || hi > 255 || hi < lo) return false;
      i += m[0].length;
    } else if (c === '(') {
      if (chars[i + 1] === '?') {
        if (chars[i + 2] !== ':') return false;
        i += 3;
      } else i++;
    } else i++;
  }
  return true;
}
