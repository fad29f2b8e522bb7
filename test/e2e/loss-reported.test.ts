import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type Daemon, jsonLines, pofr, startPofr, waitUntil } from '../helpers/pofr-cli.js';

const base = mkdtempSync(join(tmpdir(), 'pofr-loss-'));
const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons) await d.stop(5000);
  rmSync(base, { recursive: true, force: true });
});

/**
 * A server that stays down while the client's spool is full: the client keeps recording, `client
 * status` names the loss, and once the server is back the loss arrives as a recorder gap that
 * analysts see in the timeline. Nothing is lost without a record of it.
 */
test('records lost to a full spool while the server is down show in client status, then as a gap at the server', async () => {
  const data = join(base, 'server');
  const state = join(base, 'client');
  assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
  const fp = (await pofr(['server', 'fingerprint', '--data', data])).stdout.trim();
  const first = startPofr(['server', 'run', '--data', data, '--listen', '127.0.0.1:0']);
  daemons.push(first);
  const port = Number((await first.waitFor(/"port":(\d+)/))[1]);
  const token = (await pofr(['server', 'token', '--data', data, '--approve'])).stdout.trim();
  const enroll = await pofr([
    ...['client', 'enroll', '--state', state, '--server', `127.0.0.1:${port}`],
    ...['--token', token, '--fingerprint', fp],
  ]);
  assert.equal(enroll.code, 0, enroll.stderr);
  assert.equal(await first.stop(), 0, first.stderr());

  // A 1 KiB spool holds a batch with a gap record, never a keyframe of this host.
  const client = startPofr([
    ...['client', 'run', '--state', state, '--interval', '200', '--batch', '200'],
    ...['--spool-max', '1K'],
  ]);
  daemons.push(client);
  await client.waitFor(/records lost, a gap record will say so/);
  const status = await waitUntil('client status to show the loss', async () => {
    const [row] = jsonLines((await pofr(['client', 'status', '--state', state, '--json'])).stdout);
    return row?.last_loss ? row : undefined;
  });
  const loss = status.last_loss as { dropped: number; reason: string; at: string };
  assert.equal(status.running, true);
  assert.ok(loss.dropped > 0);
  assert.match(loss.reason, /1024-byte bound/);
  const table = await pofr(['client', 'status', '--state', state]);
  assert.match(table.stdout, /LAST_LOSS/);

  const second = startPofr(['server', 'run', '--data', data, '--listen', `127.0.0.1:${port}`]);
  daemons.push(second);
  await second.waitFor(/"port":(\d+)/);
  const gap = await waitUntil('the recorder gap at the server', async () => {
    const tl = jsonLines((await pofr(['timeline', '--data', data, '--kind', 'gap', '--json'])).stdout);
    return tl.find((e) => e.gap_kind === 'recorder');
  });
  assert.match(String(gap.detail), /1024-byte bound/);
  assert.ok(Number.isFinite(Date.parse(String(gap.t_from))), 'the gap says from when');
  assert.equal(await client.stop(), 0, client.stderr());
  assert.equal(await second.stop(), 0, second.stderr());
  const verify = await pofr(['verify', '--data', data]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
});
