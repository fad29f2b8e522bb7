import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Daemon, jsonLines, pofr, startPofr, storedBatchHash, waitUntil } from '../helpers/pofr-cli.js';

const ROOT = process.getuid?.() === 0;

/**
 * Detection end to end: a real server started with the bundled SigmaHQ rules, a real recorder on
 * tracefs, and harmless commands two of those rules describe ("Curl Usage on Linux", "Python
 * Spawning Pretty TTY Via PTY Module"); their alerts are found live (`pofr alerts`) and by
 * `pofr hunt`, each with the rule's author and the batch that recorded the process.
 */
describe('Sigma rules live and by hunt on a recorded host', {
  skip: ROOT ? false : 'kernel tracing needs root',
}, () => {
  const base = mkdtempSync(join(tmpdir(), 'pofr-detect-e2e-'));
  const data = join(base, 'server');
  const state = join(base, 'client');
  const marker = `pofr-detect-${randomBytes(4).toString('hex')}`;
  const daemons: Daemon[] = [];

  before(async () => {
    assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
    const fp = (await pofr(['server', 'fingerprint', '--data', data])).stdout.trim();
    const server = startPofr([
      'server',
      'run',
      '--data',
      data,
      '--listen',
      '127.0.0.1:0',
      '--no-rdns',
      '--rules',
      'bundled',
    ]);
    daemons.push(server);
    const port = Number((await server.waitFor(/"port":(\d+)/))[1]);
    const token = (await pofr(['server', 'token', '--data', data, '--approve'])).stdout.trim();
    const enroll = await pofr([
      ...['client', 'enroll', '--state', state, '--server', `127.0.0.1:${port}`],
      ...['--token', token, '--fingerprint', fp, '--name', 'detect-host'],
    ]);
    assert.equal(enroll.code, 0, enroll.stderr);
    const client = startPofr(['client', 'run', '--state', state, '--batch', '500']);
    daemons.push(client);
    await client.waitFor(/"msg":"pofr client recording"/);
  });

  after(async () => {
    for (const d of daemons) await d.stop();
    rmSync(base, { recursive: true, force: true });
  });

  test('curl and a python pty one-liner raise their bundled rules, with author and evidence batch', async () => {
    // Nothing is fetched: curl only prints its version; python never calls pty.spawn.
    assert.equal(spawnSync('/usr/bin/curl', ['--version', '--url', marker], { stdio: 'ignore' }).status, 0);
    const py = spawnSync('/usr/bin/python3', ['-c', `import pty; spawn = pty.spawn; print("${marker}")`], {
      stdio: 'ignore',
    });
    assert.equal(py.status, 0);
    const wanted = ['Curl Usage on Linux', 'Python Spawning Pretty TTY Via PTY Module'];
    const mine = (rows: Record<string, unknown>[]) =>
      rows.filter((r) => String(r.cmdline ?? '').includes(marker) && wanted.includes(String(r.title)));
    const live = await waitUntil(
      'both live alerts',
      async () => {
        const rows = mine(jsonLines((await pofr(['alerts', '--data', data, '--json'])).stdout));
        return new Set(rows.map((r) => r.title)).size === 2 ? rows : undefined;
      },
      60_000,
    );
    const hunted = mine(jsonLines((await pofr(['hunt', '--data', data, '--json'])).stdout));
    for (const title of wanted) {
      const a = live.find((r) => r.title === title)!;
      const h = hunted.find((r) => r.title === title);
      assert.ok(h, `hunt finds ${title} too`);
      assert.ok(String(a.author).includes('Nextron Systems'), `${title}: author ${a.author}`);
      assert.equal(h.author, a.author);
      assert.deepEqual([h.batch_seq, h.batch_hash, h.pid], [a.batch_seq, a.batch_hash, a.pid]);
      assert.equal(
        await storedBatchHash(data, Number(a.batch_seq)),
        a.batch_hash,
        'the alert names a stored batch by its hash',
      );
    }
    const verify = await pofr(['verify', '--data', data, '--quick']);
    assert.equal(verify.code, 0, verify.stderr);
  });
});
