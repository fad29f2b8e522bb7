import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { dataDirEngine } from '../helpers/data-dir-engine.js';
import { jsonLines, pofr } from '../helpers/pofr-cli.js';

/** CLI.md's conventions: exit 0 / 1 with one `pofr: …` line / 2 for usage; JSON Lines only on stdout. */
describe('the command-line contract', () => {
  const base = mkdtempSync(join(tmpdir(), 'pofr-cli-'));
  after(() => rmSync(base, { recursive: true, force: true }));

  test('bad usage exits 2', async () => {
    for (const args of [
      ['no-such-command'],
      ['procs', '--from', 'yesterday-ish', '--data', base],
      ['server', 'token', '--uses', 'x', '--data', base],
      ['client', 'run', '--state', base, '--spool-max', '12Q'],
      ['client', 'start', '--state', base, '--spool-max', '0'],
      ['client', 'start', '--state', base, '--keyframe', 'soon'],
      ['server', 'run', '--data', base, '--geoip', join(base, 'no-such.mmdb')],
    ]) {
      const r = await pofr(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '');
    }
  });

  test('a failure exits 1 with one line that says what to do', async () => {
    const r = await pofr(['procs', '--data', join(base, 'missing')]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^pofr: .*pofr server init --data/);
  });

  test('init is idempotent and an empty store answers with no rows', async () => {
    const data = join(base, 'data');
    const first = await pofr(['server', 'init', '--data', data]);
    const second = await pofr(['server', 'init', '--data', data]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(first.stdout, second.stdout, 'the same host key fingerprint both times');
    // The engine POFR_TEST_ENGINE asked for, so the PostgreSQL pass of `npm test` is what it says.
    assert.match(first.stderr, new RegExp(`store ready \\(${dataDirEngine()}\\)`));
    for (const verb of ['hosts', 'procs', 'files', 'net', 'timeline']) {
      const r = await pofr([verb, '--data', data, '--json']);
      assert.equal(r.code, 0, `${verb}: ${r.stderr}`);
      assert.deepEqual(jsonLines(r.stdout), []);
    }
    const sql = await pofr(['sql', '--data', data, '--json', 'SELECT count(*) AS n FROM processes']);
    assert.deepEqual(jsonLines(sql.stdout), [{ n: 0 }]);
    const write = await pofr(['sql', '--data', data, 'DELETE FROM hosts']);
    assert.equal(write.code, 1);
    assert.match(write.stderr, /^pofr: .*read-only/);
  });

  test('--version and --help succeed', async () => {
    assert.equal((await pofr(['--version'])).code, 0);
    const help = await pofr(['--help']);
    assert.equal(help.code, 0);
    for (const cmd of [
      'server',
      'client',
      'hosts',
      'procs',
      'files',
      'net',
      'timeline',
      'tree',
      'sql',
      'verify',
      'demo',
    ]) {
      assert.match(help.stdout, new RegExp(`\\b${cmd}\\b`));
    }
  });
});
