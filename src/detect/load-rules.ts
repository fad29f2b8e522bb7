import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isPofrError, PofrError } from '../errors.js';
import { parseRule, type SigmaRule } from './rule.js';

/** The SigmaHQ Linux rules shipped with pofr (rules/sigma at the package root; see its README). */
export const BUNDLED_RULES_DIR = fileURLToPath(new URL('../../../rules/sigma/', import.meta.url));

/** One rule file: the rule, or why it could not be read. */
export type LoadedRule =
  | { readonly file: string; readonly rule: SigmaRule }
  | { readonly file: string; readonly error: PofrError };

/**
 * Reads every `.yml`/`.yaml` file of `where` (a directory, searched recursively in name order, a
 * file, or "bundled"). A file that does not parse is returned with its error, not thrown, so one
 * bad rule does not hide the others; file names are relative to the directory given.
 */
export function loadRules(where: string): LoadedRule[] {
  const root = where === 'bundled' ? BUNDLED_RULES_DIR : resolve(where);
  if (!existsSync(root)) {
    throw new PofrError(
      'POFR_USAGE',
      where === 'bundled'
        ? `the bundled rules are missing (${root}); reinstall pofr or pass --rules DIR`
        : `--rules ${where}: no such file or directory`,
    );
  }
  const files = statSync(root).isDirectory() ? ruleFiles(root) : [root];
  return files.map((f) => {
    const file = statSync(root).isDirectory() ? relative(root, f) : where;
    try {
      return { file, rule: parseRule(readFileSync(f, 'utf8'), file) };
    } catch (e) {
      if (isPofrError(e)) return { file, error: e };
      return { file, error: new PofrError('POFR_RULE_INVALID', `${file}: ${(e as Error).message}`) };
    }
  });
}

function ruleFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...ruleFiles(p));
    else if (/\.ya?ml$/i.test(name)) out.push(p);
  }
  return out;
}
