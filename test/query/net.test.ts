import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeEndpoint, findEndpoints } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addEndpoint, addHost, addProcess } from './fixtures.js';

test('describeEndpoint writes one readable line, brackets IPv6 and leaves out an unbound remote', () => {
  const base = { proto: 'tcp', state: 'ESTABLISHED', fqdn: null, country: null };
  assert.equal(
    describeEndpoint({
      ...base,
      local_ip: '10.0.0.1',
      local_port: 5555,
      remote_ip: '1.2.3.4',
      remote_port: 443,
    }),
    'tcp 10.0.0.1:5555 → 1.2.3.4:443 ESTABLISHED',
  );
  assert.equal(
    describeEndpoint({
      ...base,
      local_ip: '::1',
      local_port: 22,
      remote_ip: '::',
      remote_port: 0,
      state: 'LISTEN',
    }),
    'tcp [::1]:22 LISTEN',
  );
  assert.equal(
    describeEndpoint({
      ...base,
      local_ip: '10.0.0.1',
      local_port: 1,
      remote_ip: '1.2.3.4',
      remote_port: 443,
      fqdn: 'evil.example',
      country: 'RU',
    }),
    'tcp 10.0.0.1:1 → 1.2.3.4:443 ESTABLISHED (evil.example, RU)',
  );
});

for (const dialect of DIALECTS) {
  test(`[${dialect}] endpoints filter by remote, local or remote port, country, proto and window`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      const curl = await addProcess(store, { pid: 9, start: 1, comm: 'curl' });
      await addEndpoint(store, {
        process_id: curl,
        pid: 9,
        remote_ip: '1.2.3.4',
        remote_port: 443,
        country: 'US',
        first_seen: 10,
        last_seen: 20,
      });
      await addEndpoint(store, {
        local_port: 22,
        remote_ip: '0.0.0.0',
        remote_port: 0,
        state: 'LISTEN',
        first_seen: 5,
        open: true,
      });
      await addEndpoint(store, {
        proto: 'udp',
        remote_ip: '9.9.9.9',
        remote_port: 53,
        state: 'ESTABLISHED',
        first_seen: 30,
        last_seen: 31,
      });
      await addEndpoint(store, {
        family: 6,
        local_ip: '::1',
        remote_ip: '::1',
        remote_port: 8080,
        first_seen: 40,
        last_seen: 50,
      });
      const ports = (rows: readonly { remote_port: number }[]) => rows.map((r) => r.remote_port);
      assert.deepEqual(ports(await findEndpoints(store)), [0, 443, 53, 8080]);
      assert.deepEqual(ports(await findEndpoints(store, { remote: '1.2.3.4' })), [443]);
      assert.deepEqual(ports(await findEndpoints(store, { port: 22 })), [0]);
      assert.deepEqual(ports(await findEndpoints(store, { port: 53 })), [53]);
      assert.deepEqual(ports(await findEndpoints(store, { country: 'us' })), [443]);
      assert.deepEqual(ports(await findEndpoints(store, { proto: 'udp' })), [53]);
      assert.deepEqual(ports(await findEndpoints(store, { from: 21, to: 39 })), [0, 53]);
      assert.deepEqual(ports(await findEndpoints(store, { pid: 9 })), [443]);
      const [e] = await findEndpoints(store, { remote: '1.2.3.4' });
      assert.deepEqual(
        {
          host: e.host,
          comm: e.comm,
          proto: e.proto,
          family: e.family,
          local: `${e.local_ip}:${e.local_port}`,
          state: e.state,
          open: e.open,
          country: e.country,
          fqdn: e.fqdn,
        },
        {
          host: 'web',
          comm: 'curl',
          proto: 'tcp',
          family: 4,
          local: '10.0.0.1:40000',
          state: 'ESTABLISHED',
          open: false,
          country: 'US',
          fqdn: null,
        },
      );
    }));

  test(`[${dialect}] endpoints of the recorder's own processes can be left out; unowned ones stay`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      const rec = await addProcess(store, { pid: 6, start: 1, observer: true });
      await addEndpoint(store, { process_id: rec, pid: 6, remote_port: 2222, first_seen: 10 });
      await addEndpoint(store, { process_id: null, pid: null, remote_port: 443, first_seen: 11 });
      assert.deepEqual(
        (await findEndpoints(store, { observer: false })).map((e) => e.remote_port),
        [443],
      );
      assert.equal((await findEndpoints(store)).length, 2);
    }));
}
