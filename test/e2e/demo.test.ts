import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsonLines, pofr } from '../helpers/pofr-cli.js';
import { cannotRunAsNobody, runPofrAsNobody } from '../helpers/run-as-nobody.js';

/** `pofr demo` is the README's first command: it must record and show its scripted incident. */
function assertIncident(stdout: string): void {
  const events = jsonLines(stdout);
  const summaries = events.map((e) => `${e.kind} ${e.summary}`);
  const has = (re: RegExp, what: string) =>
    assert.ok(
      summaries.some((s) => re.test(s)),
      `${what} missing from:\n${summaries.join('\n')}`,
    );
  has(/^process_start .*incident\.sh/, 'the incident script');
  has(/^endpoint_open tcp 127\.0\.0\.1:\d+ → 127\.0\.0\.1:\d+/, 'the download connection');
  has(/^file_open .*update\.sh/, 'the payload written under /tmp');
  has(/^process_start .*update\.sh/, 'the payload executed');
  has(/^file_open .*loot\.txt/, 'the loot file');
  has(/^process_start sh -c 'sleep 1\.5; :' pofr-demo-shell/, 'the short-lived shell');
  has(/^process_exit /, 'exits');
  const times = events.map((e) => e.time as string);
  assert.deepEqual([...times].sort(), times, 'in time order');
}

test('the demo records its incident end to end and cleans up', async () => {
  const r = await pofr(['demo', '--seconds', '6', '--cleanup', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assertIncident(r.stdout);
  assert.doesNotMatch(r.stderr, /kept in/, '--cleanup keeps nothing');
});

test('without root the demo still runs, records what it can see, and says so', {
  skip: cannotRunAsNobody(),
}, () => {
  // HOME and TMPDIR point where nobody may write.
  const r = runPofrAsNobody(['demo', '--seconds', '6', '--cleanup', '--json'], {
    env: { ...process.env, HOME: '/tmp', TMPDIR: '/tmp' },
    timeoutMs: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /not root: recording what an unprivileged user can see/);
  assertIncident(r.stdout);
});
