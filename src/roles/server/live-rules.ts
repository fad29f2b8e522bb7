import { type CompiledRule, compileRule, loadRules } from '../../detect/index.js';
import { PofrError } from '../../errors.js';
import type { Capabilities } from '../../store/index.js';
import type { Log } from './run-server.js';

/**
 * The rules `pofr server run --rules` evaluates on every batch: an invalid file stops the server
 * from starting (a typo must not silently disable detection); unsupported rules are logged.
 */
export function loadLiveRules(sources: readonly string[], caps: Capabilities, log: Log): CompiledRule[] {
  const compiled: CompiledRule[] = [];
  for (const where of sources) {
    const loaded = loadRules(where);
    const bad = loaded.flatMap((l) => ('error' in l ? [l.error.message] : []));
    if (bad.length > 0) {
      throw new PofrError(
        'POFR_RULE_INVALID',
        `--rules ${where}: ${bad.length} rule file(s) are invalid (pofr rules check ${where} lists them); first: ${bad[0]}`,
      );
    }
    let unsupported = 0;
    for (const l of loaded) {
      if (!('rule' in l)) continue;
      const c = compileRule(l.rule, caps);
      if (c.status === 'ok') compiled.push(c);
      else unsupported++;
    }
    log('detection rules loaded', { rules: where, ok: loaded.length - unsupported, unsupported });
  }
  return compiled;
}
