import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AuditTrail } from '../../src/roles/server/audit-trail.js';
import { loadLiveRules } from '../../src/roles/server/live-rules.js';
import { createServerHandlers } from '../../src/roles/server/server-handlers.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, proc, T0 } from '../ingest/host-fixture.js';

const RULE = `title: nc listening
id: 33333333-3333-4333-8333-333333333333
author: Rita Rules
level: medium
logsource: { product: linux, category: process_creation }
detection:
  sel:
    Image|endswith: /nc
    CommandLine|contains: ' -l'
  condition: sel
`;

for (const dialect of DIALECTS) {
  test(`[${dialect}] the server's ingest handler raises alerts for the rules it was started with`, (t) =>
    withStore(t, dialect, async (store) => {
      const dir = mkdtempSync(join(tmpdir(), 'pofr-live-rules-'));
      const audit = AuditTrail.inMemory(store, () => {});
      try {
        mkdirSync(join(dir, 'rules'));
        writeFileSync(join(dir, 'rules', 'nc.yml'), RULE);
        const logged: object[] = [];
        const rules = loadLiveRules([join(dir, 'rules'), 'bundled'], store.caps, (_m, f) =>
          logged.push(f ?? {}),
        );
        assert.ok(rules.length > 100, 'the bundled rules load beside the operator’s');
        assert.deepEqual(logged[0], { rules: join(dir, 'rules'), ok: 1, unsupported: 0 });
        const handlers = createServerHandlers({ store, audit, log: () => {}, rules });
        const host = await addHost(store);
        const b = host.next([
          {
            type: 'process_start',
            t: T0,
            proc: proc(50, 2, { exe: '/usr/bin/nc', argv: ['nc', '-lvp', '4444'] }),
          },
        ]);
        const ack = await handlers.ingest(host.hostId, b.bytes, {
          remote: '127.0.0.1:1',
          source: '127.0.0.1',
          fingerprint: null,
          user: null,
          clientVersion: null,
        });
        assert.equal(ack.status, 'accepted');
        const alerts = await store.db.selectFrom('alerts').selectAll().execute();
        const mine = alerts.find((a) => a.rule === '33333333-3333-4333-8333-333333333333');
        assert.deepEqual(
          [mine?.author, Number(mine?.batch_seq), mine?.batch_hash],
          ['Rita Rules', 1, b.hash],
        );
        // The bundled corpus's netcat rule sees the same process.
        assert.ok(
          alerts.some((a) => /netcat|network service scanning/i.test(a.summary)),
          alerts.map((a) => a.summary).join('; '),
        );
      } finally {
        await audit.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }));
}
