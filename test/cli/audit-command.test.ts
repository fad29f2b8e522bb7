import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AuditTrail } from '../../src/roles/server/audit-trail.js';
import { openStore, readStoreConfig } from '../../src/store/index.js';
import { jsonLines, pofr } from '../helpers/pofr-cli.js';

test('pofr server audit prints the refusals with the contract keys, filtered by kind and time', async () => {
  const data = mkdtempSync(join(tmpdir(), 'pofr-audit-cli-'));
  try {
    assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
    const store = await openStore(readStoreConfig(data));
    const audit = AuditTrail.inMemory(store, () => {});
    const now = Date.now() * 1000;
    audit.record({
      kind: 'unknown_key',
      reason: 'no enrolled host "x"',
      remote: '192.0.2.4:5555',
      fingerprint: 'SHA256:abc',
      user: 'x',
      at: now - 7_200_000_000,
    });
    audit.record({ kind: 'exec_refused', reason: 'exec "id"', remote: '192.0.2.4:5556', at: now });
    await audit.close();
    await store.close();

    const all = await pofr(['server', 'audit', '--data', data, '--json']);
    assert.equal(all.code, 0, all.stderr);
    const rows = jsonLines(all.stdout);
    assert.deepEqual(
      rows.map((r) => r.kind),
      ['unknown_key', 'exec_refused'],
    );
    for (const key of ['time', 'remote', 'fingerprint', 'host', 'kind', 'reason'])
      assert.ok(key in rows[0], key);
    assert.match(String(rows[0].time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.equal(rows[0].fingerprint, 'SHA256:abc');
    assert.equal(rows[0].remote, '192.0.2.4:5555');

    const recent = jsonLines(
      (await pofr(['server', 'audit', '--data', data, '--json', '--from', '-1h'])).stdout,
    );
    assert.deepEqual(
      recent.map((r) => r.kind),
      ['exec_refused'],
    );
    const kind = jsonLines(
      (await pofr(['server', 'audit', '--data', data, '--json', '--kind', 'unknown_key'])).stdout,
    );
    assert.deepEqual(
      kind.map((r) => r.kind),
      ['unknown_key'],
    );
    const table = await pofr(['server', 'audit', '--data', data]);
    assert.match(table.stdout, /^TIME +REMOTE +KIND/);
    const bad = await pofr(['server', 'audit', '--data', data, '--kind', 'nonsense']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /not an audit kind/);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});
