import assert from 'node:assert/strict';
import { test } from 'node:test';
import { listHosts, resolveHosts } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost } from './fixtures.js';

for (const dialect of DIALECTS) {
  test(`[${dialect}] listHosts returns every host by name with its inventory and chain fields`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'id-b', 'web', { last_batch_at: 5_000, last_seq: 7 });
      await addHost(store, 'id-a', 'db', { status: 'pending', first_seen: null, last_seen: null });
      const hosts = await listHosts(store);
      assert.deepEqual(
        hosts.map((h) => h.name),
        ['db', 'web'],
      );
      assert.deepEqual(hosts[1], {
        host_id: 'id-b',
        name: 'web',
        status: 'approved',
        os: 'Debian 13',
        kernel: '6.12.0',
        timezone: 'Europe/Berlin',
        first_seen: 1_000,
        last_seen: 9_000,
        last_batch_at: 5_000,
        last_seq: 7,
      });
      assert.equal(hosts[0].first_seen, null);
      assert.ok(Object.isFrozen(hosts) && Object.isFrozen(hosts[0]));
    }));

  test(`[${dialect}] resolveHosts matches an exact id or every host of an exact name`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'id-1', 'web');
      await addHost(store, 'id-2', 'web');
      await addHost(store, 'id-3', 'db');
      assert.deepEqual(await resolveHosts(store, 'id-3'), ['id-3']);
      assert.deepEqual(await resolveHosts(store, 'web'), ['id-1', 'id-2']);
      assert.deepEqual(await resolveHosts(store), ['id-1', 'id-2', 'id-3']);
      await assert.rejects(resolveHosts(store, 'WEB'), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'POFR_HOST_UNKNOWN');
        assert.equal(e.message, 'no host named or with id "WEB"; list hosts with: pofr hosts');
        return true;
      });
    }));
}
