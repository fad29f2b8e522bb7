/**
 * The longest run of plain characters every match of a JavaScript regular expression (flag `u`, as
 * SQLite's regexp() compiles it) must contain, or null when none can be told safely. A trigram
 * index narrows the rows to those holding it, and the regexp then decides on those rows alone.
 *
 * Deliberately simple: any `|` gives up (an alternation requires no one run); groups, classes, `.`
 * and anchors end a run; a quantifier that allows zero (`?`, `*`, `{`) takes back the character it
 * follows; an escape is a literal only for punctuation (`\.`, `\/`, `\-`…) and gives up for every
 * letter or digit escape it does not know to stand for one class (`\d`, `\w`, `\s`, `\b`…).
 *
 * @example
 * requiredLiteral('^/usr/bin/sudo\\b'); // '/usr/bin/sudo'
 * requiredLiteral('ssh(d)?|telnet');    // null
 */
export function requiredLiteral(pattern: string): string | null {
  try {
    new RegExp(pattern, 'u');
  } catch {
    return null; // the engine's own regexp() reports it
  }
  const chars = [...pattern];
  let best: string[] = [];
  let run: string[] = [];
  const end = () => {
    if (run.length > best.length) best = run;
    run = [];
  };
  let depth = 0;
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === '|') return null;
    if (c === '\\') {
      const n = chars[++i] ?? '';
      if (/^[dDwWsSbB]$/.test(n)) {
        end();
        continue;
      }
      if (/^[A-Za-z0-9]$/.test(n)) return null;
      if (depth === 0) run.push(n);
      continue;
    }
    if (c === '[') {
      end();
      // To the class's closing bracket; a backslash takes the character after it.
      for (i++; i < chars.length && chars[i] !== ']'; i++) if (chars[i] === '\\') i++;
      continue;
    }
    if (c === '(') {
      depth++;
      end();
      continue;
    }
    if (c === ')') {
      depth--;
      end();
      continue;
    }
    if (c === '?' || c === '*' || c === '{') {
      run.pop();
      end();
      if (c === '{') while (i < chars.length && chars[i] !== '}') i++;
      continue;
    }
    if (c === '+' || c === '.' || c === '^' || c === '$') {
      end();
      continue;
    }
    if (depth === 0) run.push(c);
    else end();
  }
  end();
  return best.length === 0 ? null : best.join('');
}
