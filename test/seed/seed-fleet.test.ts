import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seedFleet } from '../../bench/seed/seed-fleet.js';
import { verifyStore } from '../../src/ingest/index.js';
import { findEndpoints, findFiles, findProcesses, listHosts } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';

const END = 1_795_000_000_000_000;

for (const dialect of DIALECTS) {
  test(`[${dialect}] seeds a fleet through ingest: every batch verifies and re-derives, the intrusion and the gap are there`, (t) =>
    withStore(t, dialect, async (store) => {
      const r = await seedFleet(store, {
        events: 6000,
        hosts: 5,
        days: 2,
        end: END,
        seed: 7,
        concurrency: 2,
      });
      assert.equal(r.hosts.length, 5);
      // Episodes are whole and the record ends at its end time: a host lands near its share, not on it. The
      // batch lost on purpose never reaches the store, so its events are not in the stored count.
      const made = r.hosts.reduce((n, h) => n + h.events, 0);
      assert.ok(made >= 6000 * 0.97 && made < 6000 + 5 * 400, `events ${made}`);
      assert.ok(r.events < made && r.events > made * 0.9, `stored ${r.events} of ${made}`);
      assert.deepEqual(
        r.hosts.map((h) => h.status),
        ['recording', 'recording', 'recording', 'recording', 'revoked'],
      );
      const hosts = await listHosts(store);
      assert.equal(hosts.length, 5);
      assert.ok(hosts.every((h) => h.timezone !== null && h.last_seen !== null && h.last_seen <= END));

      const reports = await verifyStore(store, { rederive: true });
      assert.ok(
        reports.every((x) => x.ok),
        JSON.stringify(reports.filter((x) => !x.ok)),
      );
      const withLoss = r.hosts.find((h) => h.lost > 0)!;
      assert.equal(reports.find((x) => x.host_id === withLoss.host_id)!.gaps >= 1, true);

      const victim = r.hosts.find((h) => h.incident)!;
      const shadow = await findFiles(store, { hosts: [victim.host_id], path: '/etc/shadow' });
      assert.ok(shadow.some((f) => f.comm === 'cat'));
      const c2 = await findEndpoints(store, { hosts: [victim.host_id], port: 4444 });
      assert.equal(c2.length, 1);
      assert.match(c2[0].country ?? '', /^[A-Z]{2}$/);
      const implant = await findProcesses(store, { hosts: [victim.host_id], command: '^/tmp/' });
      assert.ok(
        implant.some((p) => p.argv_raw_b64 !== null),
        'the implant has a name that is not UTF-8',
      );
      const execs = await findProcesses(store, { command: '^-bash' });
      assert.ok(
        execs.some((p) => p.exec_index === 1 && p.comm === 'bash'),
        'sshd execs bash in place',
      );
    }));
}

test('the same seed gives the same fleet', async () => {
  const { HostSimulation } = await import('../../bench/seed/host-simulation.js');
  const { Random } = await import('../../bench/seed/random.js');
  const spec = {
    name: 'web-01',
    role: 'web' as const,
    ip: '10.0.1.10',
    timezone: 'UTC',
    from: END - 86_400_000_000,
    to: END,
    events: 3000,
    incident: true,
  };
  const run = () => [...new HostSimulation(spec, new Random(3)).batches(500)].flat();
  const a = run();
  const b = run();
  assert.deepEqual(a, b);
  const times = a.map((x) => x.t);
  assert.deepEqual(
    times,
    [...times].sort((x, y) => x - y),
    'records come in time order',
  );
});
