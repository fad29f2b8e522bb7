import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { listAuditEvents } from '../../src/query/index.js';
import { AUDIT_KINDS } from '../../src/roles/server/audit-kinds.js';
import { AuditTrail, sourceOf } from '../../src/roles/server/audit-trail.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, T0 } from '../ingest/host-fixture.js';

const noLog = () => {};

test('every audit kind is documented in docs/schema.md, and nothing else is', () => {
  const schema = readFileSync(new URL('../../../docs/schema.md', import.meta.url), 'utf8');
  const section = schema.slice(schema.indexOf('## Audit'));
  const documented = new Set([...section.matchAll(/^\| `([a-z_]+)` +\|/gm)].map((m) => m[1]));
  assert.deepEqual([...documented].sort(), Object.keys(AUDIT_KINDS).sort());
});

test('the source of a remote is its address, for IPv4 and IPv6 alike', () => {
  assert.equal(sourceOf('203.0.113.9:50122'), '203.0.113.9');
  assert.equal(sourceOf('[2001:db8::1]:22'), '2001:db8::1');
  assert.equal(sourceOf(null), 'unknown');
});

for (const dialect of DIALECTS) {
  describe(`[${dialect}] audit trail`, () => {
    test('each refusal is a row; past the rate of one source its refusals are counted in one suppressed row', (t) =>
      withStore(t, dialect, async (store) => {
        const host = await addHost(store, { name: 'web-1' });
        const audit = AuditTrail.inMemory(store, noLog, { perSource: 3, total: 100, windowMs: 3_600_000 });
        for (let i = 0; i < 10; i++) {
          audit.record({
            kind: i % 2 === 0 ? 'unknown_key' : 'frame_malformed',
            reason: `attempt ${i}`,
            remote: `198.51.100.7:${40000 + i}`,
            fingerprint: 'SHA256:stranger',
            at: T0 + i,
          });
        }
        audit.record({
          kind: 'batch_seal',
          code: 'POFR_BATCH_SEAL',
          reason: 'batch 7: seal does not verify',
          remote: '192.0.2.1:2000',
          hostId: host.hostId,
          at: T0 + 100,
        });
        await audit.close();
        const rows = await listAuditEvents(store);
        const flood = rows.filter((r) => r.source === '198.51.100.7');
        assert.deepEqual(
          flood.map((r) => [r.kind, r.suppressed]),
          [
            ['unknown_key', 0],
            ['frame_malformed', 0],
            ['unknown_key', 0],
            ['suppressed', 7],
          ],
        );
        assert.match(
          flood[3].reason,
          /^7 refusals from 198\.51\.100\.7 .*unknown_key×3, frame_malformed×4|frame_malformed×4, unknown_key×3/,
        );
        const seal = rows.find((r) => r.kind === 'batch_seal');
        assert.ok(seal, 'another source is not held back by the flood');
        assert.equal(seal.host, 'web-1', 'the host is named');
        assert.equal(seal.host_id, host.hostId);
        assert.equal(seal.code, 'POFR_BATCH_SEAL');
        assert.equal(seal.remote, '192.0.2.1:2000');
      }));

    test('the total rate holds across sources, and what it holds back is counted too', (t) =>
      withStore(t, dialect, async (store) => {
        const audit = AuditTrail.inMemory(store, noLog, { perSource: 5, total: 4, windowMs: 3_600_000 });
        for (let i = 0; i < 12; i++) {
          audit.record({ kind: 'auth_timeout', reason: 'silent', remote: `10.9.0.${i}:1`, at: T0 + i });
        }
        await audit.close();
        const rows = await listAuditEvents(store);
        const written = rows.filter((r) => r.kind === 'auth_timeout');
        const counted = rows.filter((r) => r.kind === 'suppressed').reduce((n, r) => n + r.suppressed, 0);
        assert.equal(written.length, 4);
        assert.equal(counted, 8, 'every refusal is either a row or counted');
      }));

    test('one-shot processes share the rate through the store: two trails, one count', (t) =>
      withStore(t, dialect, async (store) => {
        const limits = { perSource: 3, total: 100, windowMs: 3_600_000 };
        const now = Date.now() * 1000;
        for (let p = 0; p < 2; p++) {
          const audit = AuditTrail.shared(store, noLog, limits);
          for (let i = 0; i < 5; i++) {
            audit.record({
              kind: 'revoked_key',
              reason: `p${p} ${i}`,
              remote: '203.0.113.5:22',
              at: now + p * 10 + i,
            });
          }
          await audit.close();
        }
        const rows = await listAuditEvents(store, { source: '203.0.113.5' });
        assert.deepEqual(
          rows.map((r) => [r.kind, r.suppressed]),
          [
            ['revoked_key', 0],
            ['revoked_key', 0],
            ['revoked_key', 0],
            ['suppressed', 7],
          ],
        );
      }));

    test('listAuditEvents filters by time, kind and host', (t) =>
      withStore(t, dialect, async (store) => {
        const host = await addHost(store);
        const audit = AuditTrail.inMemory(store, noLog);
        audit.record({
          kind: 'exec_refused',
          reason: 'id',
          remote: '127.0.0.1:1',
          hostId: host.hostId,
          at: T0,
        });
        audit.record({ kind: 'unknown_key', reason: 'who', remote: '127.0.0.1:2', at: T0 + 10 });
        await audit.close();
        assert.deepEqual(
          (await listAuditEvents(store, { from: T0 + 1 })).map((r) => r.kind),
          ['unknown_key'],
        );
        assert.deepEqual(
          (await listAuditEvents(store, { kinds: ['exec_refused'] })).map((r) => r.reason),
          ['id'],
        );
        assert.deepEqual(
          (await listAuditEvents(store, { hosts: [host.hostId] })).map((r) => r.kind),
          ['exec_refused'],
        );
      }));
  });
}
