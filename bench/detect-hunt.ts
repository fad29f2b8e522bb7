import { parseArgs } from 'node:util';
import { type Alert, type CompiledRule, compileRule, hunt, huntSql, loadRules } from '../src/detect/index.js';
import { openStore, readStoreConfig, type Store } from '../src/store/index.js';
import { type BenchResult, isMain } from './bench-result.js';

/**
 * Retro-hunt: every compiled bundled rule over a whole store (goal: under a minute at 10 M events),
 * as `pofr hunt --data DIR` runs them (limit 1,000 per rule). The store is a seeded one — it takes
 * minutes to make, so it is made once, apart:
 *
 *   npm run seed -- --events 10M --hosts 20 --days 30 --data DIR [--db postgres://…/NAME]
 *   node dist/bench/detect-hunt.js --data DIR [--sql-too]
 *
 * `--sql-too` also times one query per rule (huntSql, what hunt did before it read each table once)
 * and checks that both find the same matches. Not part of `npm run bench` (it needs the seed). For a
 * cold cache, `sync; echo 3 > /proc/sys/vm/drop_caches` first: nothing reads the store before the
 * hunt (the rows are counted after it).
 */
const LIMIT = 1000;

async function count(store: Store, table: 'processes' | 'file_opens' | 'endpoints'): Promise<number> {
  const r = await store.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirst();
  return Number(r?.n);
}

export async function run(dataDir: string, sqlToo: boolean): Promise<BenchResult> {
  const store = await openStore(readStoreConfig(dataDir));
  try {
    const rules = loadRules('bundled')
      .flatMap((l) => ('rule' in l ? [compileRule(l.rule, store.caps)] : []))
      .filter((c): c is CompiledRule => c.status === 'ok');
    const t0 = process.hrtime.bigint();
    const found = await hunt(store, rules, { limit: LIMIT });
    const huntMs = Number(process.hrtime.bigint() - t0) / 1e6;
    // Counted after the hunt: counting reads the tables, and a cold-cache run would not be cold.
    const rows = {
      processes: await count(store, 'processes'),
      file_opens: await count(store, 'file_opens'),
      endpoints: await count(store, 'endpoints'),
    };
    const lines = [
      `${store.config.kind} store ${dataDir}: ${rows.processes.toLocaleString('en')} processes, ${rows.file_opens.toLocaleString('en')} file opens, ${rows.endpoints.toLocaleString('en')} endpoints`,
      `retro-hunt, ${rules.length} bundled rules, limit ${LIMIT} per rule: ${(huntMs / 1000).toFixed(1)} s, ${found.length} matches of ${new Set(found.map((a) => a.rule_id)).size} rules (goal < 60 s)`,
    ];
    const metrics: Record<string, number> = { hunt_ms: huntMs, matches: found.length, ...rows };
    if (sqlToo) {
      const t1 = process.hrtime.bigint();
      const bySql = await huntSql(store.db, rules, { limit: LIMIT });
      const sqlMs = Number(process.hrtime.bigint() - t1) / 1e6;
      const key = (a: Alert) =>
        `${a.rule_id} ${a.table} ${{ processes: a.process_id, endpoints: a.endpoint_id, file_opens: a.file_id }[a.table]}`;
      const same = JSON.stringify(found.map(key).sort()) === JSON.stringify(bySql.map(key).sort());
      lines.push(
        `one SQL query per rule (huntSql): ${(sqlMs / 1000).toFixed(1)} s, ${bySql.length} matches — ${same ? 'the same' : 'NOT the same'} matches`,
      );
      metrics.sql_ms = sqlMs;
    }
    return { name: 'detect-hunt', lines, metrics };
  } finally {
    await store.close();
  }
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: { data: { type: 'string' }, 'sql-too': { type: 'boolean', default: false } },
  });
  if (!values.data) throw new Error('usage: node dist/bench/detect-hunt.js --data DIR [--sql-too]');
  const r = await run(values.data, values['sql-too'] ?? false);
  for (const l of r.lines) console.log(l);
}
