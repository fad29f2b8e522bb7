import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  busyRecords,
  connectFleet,
  enrollFleet,
  type ServerProcess,
  type SimHost,
  startServerProcess,
} from '../../bench/fleet-sim.js';
import { jsonLines, pofr } from '../helpers/pofr-cli.js';

const HOSTS = 200;
const SECONDS = 20;
/** Server memory for 200 connected, sending hosts stays under this (the 300 MB target). */
const RSS_BOUND = 300 * 1024 * 1024;

const base = mkdtempSync(join(tmpdir(), 'pofr-fleet-'));
let server: ServerProcess | null = null;
let hosts: SimHost[] = [];
after(async () => {
  for (const h of hosts) await h.stop();
  await server?.stop();
  rmSync(base, { recursive: true, force: true });
});

/**
 * 200 hosts, each with its own keys, enrolled over SSH, all connected at once to one real
 * `pofr server run` and sending sealed batches for a bounded time: every batch is acknowledged,
 * none refused, nobody is dropped, and the server's memory stays bounded.
 */
test(`${HOSTS} concurrent clients connected and sending for ${SECONDS} s, with bounded server memory`, async () => {
  const data = join(base, 'server');
  assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
  server = await startServerProcess(data);
  const token = (
    await pofr(['server', 'token', '--data', data, '--approve', '--uses', String(HOSTS)])
  ).stdout.trim();
  hosts = await enrollFleet(server.port, server.fingerprint, token, HOSTS);
  await connectFleet(hosts, server.port, server.fingerprint);

  let sent = 0;
  let peak = server.peakRssBytes();
  const until = Date.now() + SECONDS * 1000;
  let round = 0;
  while (Date.now() < until) {
    // Each host sends a batch every 2 s; the hosts are spread over the 2 s.
    for (let i = 0; i < hosts.length; i++) {
      const h = hosts[i];
      h.send(h.seal(busyRecords(Date.now() * 1000, 2, 1000 + round * 10)));
      sent++;
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 200));
    }
    round++;
    peak = Math.max(peak, server.peakRssBytes());
    assert.ok(
      hosts.every((h) => h.connected()),
      `round ${round}: every host stays connected`,
    );
  }
  const flushed = await Promise.all(hosts.map((h) => h.flush(60_000)));
  assert.ok(flushed.every(Boolean), 'every batch acknowledged');
  peak = Math.max(peak, server.peakRssBytes());
  const refused = hosts.reduce((n, h) => n + h.queue.refused, 0);
  const acked = hosts.reduce((n, h) => n + h.queue.acked, 0);
  assert.equal(refused, 0, 'no batch refused');
  assert.equal(acked, sent);
  const [stored] = jsonLines(
    (await pofr(['sql', '--data', data, '--json', 'SELECT count(*) AS n FROM batches'])).stdout,
  );
  assert.equal(Number(stored.n), sent, 'every acknowledged batch is in the store');
  const audit = jsonLines((await pofr(['server', 'audit', '--data', data, '--json'])).stdout);
  assert.deepEqual(audit, [], 'no refusal of any kind');
  assert.ok(peak < RSS_BOUND, `server peak RSS ${(peak / 1048576).toFixed(0)} MB for ${HOSTS} hosts`);
});
