import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';

/**
 * The engine itself keeps analyst SQL read-only (no keyword guard in front): these statements go
 * straight to Store.readOnlyQuery.
 */
const HOSTILE = [
  'DELETE FROM hosts',
  'COMMIT; DELETE FROM hosts',
  "INSERT INTO gaps (host_id, kind, seq, detail, at) VALUES ('h', 'x', 1, 'x', 1)",
  'DROP TABLE hosts',
];

for (const dialect of DIALECTS) {
  describe(`[${dialect}] read-only analyst SQL`, () => {
    test('reads work, and no hostile statement changes anything', (t) =>
      withStore(t, dialect, async (store) => {
        await store.db
          .insertInto('hosts')
          .values({
            host_id: 'h',
            name: 'n',
            status: 'approved',
            ssh_key: 'k',
            ssh_fingerprint: 'f',
            signing_key: 's',
            enrolled_at: 1,
          })
          .execute();
        const rows = await store.readOnlyQuery('SELECT host_id, name FROM hosts');
        assert.deepEqual(rows, [{ host_id: 'h', name: 'n' }]);
        for (const q of HOSTILE) {
          await assert.rejects(store.readOnlyQuery(q), `${q} must fail`);
        }
        const after = await store.db.selectFrom('hosts').select('host_id').execute();
        assert.equal(after.length, 1);
        assert.equal((await store.db.selectFrom('gaps').selectAll().execute()).length, 0);
      }));

    if (dialect === 'postgres') {
      test('a superuser connection still cannot run programs or read server files', (t) =>
        withStore(t, dialect, async (store) => {
          await assert.rejects(store.readOnlyQuery("COPY (SELECT 1) TO PROGRAM 'true'"), {
            code: 'POFR_SQL_READONLY',
          });
          await assert.rejects(store.readOnlyQuery("SELECT pg_read_file('/etc/hostname')"), {
            code: 'POFR_SQL_READONLY',
          });
        }));
    }
  });
}
