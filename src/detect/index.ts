export { type CompiledRule, compileRule, type UnsupportedRule } from './compile.js';
export { type Condition, parseCondition } from './condition.js';
export {
  type Alert,
  type HuntQuery,
  hunt,
  huntBatchOn,
  huntOn,
  huntSql,
  liveVerdicts,
  writtenAgainstStored,
} from './hunt.js';
export { recordAlerts } from './live-alerts.js';
export { BUNDLED_RULES_DIR, type LoadedRule, loadRules } from './load-rules.js';
export { LOGSOURCES, type LogSource } from './logsources.js';
export type { Verdict } from './predicate.js';
export { parseRule, type SigmaRule } from './rule.js';
