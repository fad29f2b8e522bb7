import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type Daemon, jsonLines, pofr, startPofr } from '../helpers/pofr-cli.js';

test('a client enrolls over SSH with the registration password and waits for approval', async () => {
  const base = mkdtempSync(join(tmpdir(), 'pofr-password-'));
  const data = join(base, 'server');
  let server: Daemon | null = null;
  after(async () => {
    await server?.stop(5000);
    rmSync(base, { recursive: true, force: true });
  });
  assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
  const set = await pofr(['server', 'password', '--data', data], {
    input: 'a long registration passphrase\n',
  });
  assert.equal(set.code, 0, set.stderr);
  const fp = (await pofr(['server', 'fingerprint', '--data', data])).stdout.trim();
  server = startPofr(['server', 'run', '--data', data, '--listen', '127.0.0.1:0']);
  const port = Number((await server.waitFor(/"port":(\d+)/))[1]);
  const enroll = (state: string, password: string) =>
    pofr(
      [
        'client',
        'enroll',
        '--state',
        join(base, state),
        '--server',
        `127.0.0.1:${port}`,
        '--password',
        '--fingerprint',
        fp,
      ],
      {
        env: { POFR_ENROLL_PASSWORD: password },
      },
    );

  const wrong = await enroll('c1', 'not the passphrase');
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /^pofr: enrollment refused .*wrong registration password/);

  const right = await enroll('c2', 'a long registration passphrase');
  assert.equal(right.code, 0, right.stderr);
  assert.match(right.stderr, /status pending/);
  const [client] = jsonLines((await pofr(['server', 'clients', '--data', data, '--json'])).stdout);
  assert.equal(client.status, 'pending');
  assert.equal((await pofr(['server', 'approve', '--data', data, String(client.host_id)])).code, 0);
  const [approved] = jsonLines((await pofr(['server', 'clients', '--data', data, '--json'])).stdout);
  assert.equal(approved.status, 'approved');
});
