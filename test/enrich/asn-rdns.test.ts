import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isPublicAddress, openGeoip, ReverseDnsCache } from '../../src/enrich/index.js';
import { ingestBatch } from '../../src/ingest/index.js';
import { startRdnsFiller } from '../../src/roles/server/rdns-filler.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, T0 } from '../ingest/host-fixture.js';

const geo = openGeoip();

test('the bundled ASN data names the network of well-known addresses, IPv4 and IPv6, and nothing for private ones', () => {
  // Registries' and large operators' own networks: stable across data releases.
  assert.deepEqual(geo.lookup('193.0.6.139').asn, 3333); // RIPE NCC
  assert.match(geo.lookup('193.0.6.139').as_org ?? '', /RIPE/);
  assert.equal(geo.lookup('8.8.8.8').asn, 15169); // Google
  assert.equal(geo.lookup('2001:4860:4860::8888').asn, 15169);
  assert.equal(geo.lookup('::ffff:8.8.8.8').asn, 15169);
  for (const ip of ['10.0.0.1', '127.0.0.1', '::1', '', 'nonsense']) {
    assert.deepEqual(geo.lookup(ip), { country: null, city: null, asn: null, as_org: null }, ip);
  }
  assert.match(geo.stamp, /DB-IP.*built \d{4}-\d\d-\d\d.*ASN Lite.*built \d{4}-\d\d-\d\d/);
});

test('IPv6 forms name the same network, and addresses the tables do not know answer nothing without throwing', () => {
  // Written out in full, with '::', and in upper case: one address.
  for (const ip of [
    '2001:4860:4860:0:0:0:0:8888',
    '2001:4860:4860::8888',
    '2001:4860:4860::0:8888',
    '2001:4860:4860::8888'.toUpperCase(),
  ]) {
    assert.equal(geo.lookup(ip).asn, 15169, ip);
  }
  // An embedded IPv4 outside ::ffff:0:0/96 (NAT64, documentation) is an IPv6 address like any other.
  for (const ip of ['64:ff9b::8.8.8.8', '2001:db8::1.2.3.4', '::', '2001:db8::']) {
    assert.equal(geo.lookup(ip).asn, null, ip);
  }
  // The same address twice is the same answer (kept per address), and it cannot be changed.
  const a = geo.lookup('193.0.6.139');
  assert.equal(geo.lookup('193.0.6.139'), a);
  assert.ok(Object.isFrozen(a));
});

test('a GeoIP file that does not exist is refused with the option that named it', () => {
  assert.throws(() => openGeoip(undefined, { city: '/nonexistent/GeoLite2-City.mmdb' }), /ENOENT/);
});

for (const dialect of DIALECTS) {
  test(`[${dialect}] ingest freezes country, ASN and organisation into the endpoint row, with the databases that said so`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const proc = {
        pid: 500,
        start_ticks: 5000,
        start: T0,
        ppid: 1,
        parent_start_ticks: null,
        exe: '/usr/bin/curl',
        comm: 'curl',
        argv: ['curl', 'https://www.ripe.net/'],
        cwd: '/',
        ruid: 0,
        euid: 0,
        rgid: 0,
        egid: 0,
        source: 'sample' as const,
        observer: false,
      };
      const endpoint = (key: string, remote: string) => ({
        key,
        pid: 500,
        start_ticks: 5000,
        proto: 'tcp' as const,
        family: 4 as const,
        local_ip: '10.0.0.5',
        local_port: 40000,
        remote_ip: remote,
        remote_port: 443,
        state: 'ESTABLISHED',
        inode: key === 'a' ? 1 : 2,
      });
      const b = host.next([
        { type: 'process_start', t: T0, proc },
        { type: 'endpoint_open', t: T0 + 1, endpoint: endpoint('a', '193.0.6.139') },
        { type: 'endpoint_open', t: T0 + 2, endpoint: endpoint('b', '10.9.9.9') },
      ]);
      assert.equal((await ingestBatch(store, b.bytes, { principal: host.hostId, geo })).status, 'accepted');
      const rows = await store.db.selectFrom('endpoints').selectAll().orderBy('open_ord').execute();
      assert.equal(rows[0].country, 'NL');
      assert.equal(Number(rows[0].asn), 3333);
      assert.match(rows[0].as_org ?? '', /RIPE/);
      assert.equal(rows[0].geo_db, geo.stamp);
      assert.deepEqual([rows[1].country, rows[1].asn, rows[1].geo_db], [null, null, null]);

      // Reverse DNS, beside ingest: public addresses are asked (here of a local answer table: CI has
      // no outside DNS), private ones never; every row records that it was looked at, and when.
      const asked: string[] = [];
      const filler = startRdnsFiller(store, {
        log: () => {},
        intervalMs: 3_600_000,
        resolve: async (ip) => {
          asked.push(ip);
          return ip === '193.0.6.139' ? ['www.ripe.net.'] : [];
        },
      });
      try {
        assert.equal(await filler.round(), 1);
      } finally {
        await filler.stop();
      }
      assert.deepEqual(asked, ['193.0.6.139']);
      const named = await store.db
        .selectFrom('endpoints')
        .select(['remote_ip', 'fqdn', 'fqdn_at'])
        .orderBy('open_ord')
        .execute();
      assert.equal(named[0].fqdn, 'www.ripe.net');
      assert.ok(named.every((r) => r.fqdn_at !== null));
      assert.equal(named[1].fqdn, null);
    }));
}

test('reverse DNS is bounded: lookups in flight are capped, a slow resolver times out, answers are cached', async () => {
  let inFlight = 0;
  let peak = 0;
  let calls = 0;
  const rdns = new ReverseDnsCache({
    concurrency: 2,
    timeoutMs: 100,
    maxEntries: 3,
    resolve: async (ip) => {
      calls++;
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, ip === '8.8.4.4' ? 1000 : 20));
      inFlight--;
      return [`host-${ip}.example.`];
    },
  });
  const names = await Promise.all(
    ['1.1.1.1', '1.0.0.1', '8.8.8.8', '8.8.4.4', '9.9.9.9'].map((ip) => rdns.name(ip)),
  );
  assert.equal(peak, 2);
  assert.deepEqual(names, [
    'host-1.1.1.1.example',
    'host-1.0.0.1.example',
    'host-8.8.8.8.example',
    null,
    'host-9.9.9.9.example',
  ]);
  assert.ok(rdns.size <= 3);
  const before = calls;
  assert.equal(await rdns.name('9.9.9.9'), 'host-9.9.9.9.example');
  assert.equal(calls, before, 'answered from the cache');
  assert.equal(await rdns.name('192.168.1.1'), null);
  assert.equal(calls, before, 'private addresses are never asked');
});

test('public addresses are told from loopback, private, shared, link-local and reserved ones', () => {
  for (const ip of ['193.0.6.139', '8.8.8.8', '2001:4860:4860::8888'])
    assert.equal(isPublicAddress(ip), true, ip);
  for (const ip of [
    '10.1.1.1',
    '172.16.0.1',
    '192.168.0.1',
    '100.64.0.1',
    '169.254.1.1',
    '127.0.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '::1',
    '::',
    'fe80::1',
    'fd00::1',
    '::ffff:10.0.0.1',
    'x',
  ]) {
    assert.equal(isPublicAddress(ip), false, ip);
  }
});
