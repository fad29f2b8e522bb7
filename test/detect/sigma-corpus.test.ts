import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CompiledRule, compileRule, hunt, LOGSOURCES, loadRules } from '../../src/detect/index.js';
import { sqliteCapabilities } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { huntFixture } from './detect-fixture.js';

/** The share of the bundled rules whose logsource pofr records that compile (docs/detection.md). */
const MIN_SHARE = 0.95;

test('the bundled SigmaHQ corpus parses, and ≥ 95 % of the rules pofr has a logsource for compile', (t) => {
  const loaded = loadRules('bundled');
  const errors = loaded.flatMap((l) => ('error' in l ? [l.error.message] : []));
  assert.deepEqual(errors, []);
  const rules = loaded.flatMap((l) => ('rule' in l ? [l.rule] : []));
  const recorded = rules.filter((r) => (r.logsource.category ?? '') in LOGSOURCES);
  const results = recorded.map((r) => compileRule(r, sqliteCapabilities));
  const rest = results.flatMap((c) => (c.status === 'unsupported' ? [`${c.rule.file}: ${c.reason}`] : []));
  const ok = results.length - rest.length;
  t.diagnostic(`${rules.length} rules, ${recorded.length} with a recorded logsource, ${ok} compile`);
  for (const r of rest) t.diagnostic(`unsupported: ${r}`);
  assert.ok(recorded.length > 0);
  assert.ok(
    ok / recorded.length >= MIN_SHARE,
    `only ${ok} of ${recorded.length} compile:\n${rest.join('\n')}`,
  );
  assert.ok(
    rules.every((r) => r.author !== ''),
    'every rule names its author',
  );
});

for (const dialect of DIALECTS) {
  test(`[${dialect}] every compiled bundled rule runs as SQL on the engine`, (t) =>
    withStore(t, dialect, async (store) => {
      await huntFixture(store);
      const compiled = loadRules('bundled')
        .flatMap((l) => ('rule' in l ? [compileRule(l.rule, store.caps)] : []))
        .filter((c): c is CompiledRule => c.status === 'ok');
      const failed: string[] = [];
      for (const c of compiled) {
        try {
          await hunt(store, [c], { limit: 10 });
        } catch (e) {
          failed.push(`${c.rule.file}: ${(e as Error).message}`);
        }
      }
      assert.deepEqual(failed, []);
      // The fixture's curl fetching a script is what the corpus's download rules look for.
      const alerts = await hunt(store, compiled, { limit: 10 });
      t.diagnostic(`alerts on the fixture: ${alerts.map((a) => a.title).join('; ')}`);
      assert.ok(alerts.every((a) => a.author.length > 0 && a.rule_id.length > 0));
    }));
}
