import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openGeoip } from '../../src/enrich/index.js';

const geo = openGeoip();

test('the bundled DB-IP Lite database places well-known public addresses, IPv4 and IPv6', () => {
  // Registries' and large operators' own addresses: stable across database releases.
  assert.equal(geo.country('193.0.6.139'), 'NL'); // RIPE NCC, Amsterdam
  assert.equal(geo.country('8.8.8.8'), 'US');
  assert.equal(geo.country('77.88.55.88'), 'RU'); // Yandex
  assert.match(geo.country('2001:67c:2e8:22::c100:68b') ?? '', /^[A-Z]{2}$/); // RIPE NCC, IPv6
  assert.match(geo.source, /built \d{4}-\d\d-\d\d/);
});

test('private, loopback, unspecified and malformed addresses have no country, and never throw', () => {
  for (const ip of [
    '127.0.0.1',
    '10.1.2.3',
    '192.168.1.1',
    '0.0.0.0',
    '::',
    '::1',
    'fe80::1',
    '',
    'x.y',
    '999.1.1.1',
  ]) {
    assert.equal(geo.country(ip), null, ip);
  }
});

test('a file that is not a MaxMind database is refused when opened, not at the first lookup', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-geoip-'));
  try {
    const bogus = join(dir, 'country.mmdb');
    writeFileSync(bogus, 'not a database');
    assert.throws(() => openGeoip(bogus));
    assert.throws(() => openGeoip(join(dir, 'missing.mmdb')), /ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
