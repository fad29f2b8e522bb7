import assert from 'node:assert/strict';
import { test } from 'node:test';
import { firstKeyword, hasSecondStatement, runSql } from '../../src/query/index.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, addProcess } from './fixtures.js';

test('hasSecondStatement sees a ; outside literals, identifiers, dollar quotes and comments', () => {
  assert.equal(hasSecondStatement('SELECT 1'), false);
  assert.equal(hasSecondStatement('SELECT 1;  -- done\n'), false);
  assert.equal(hasSecondStatement('SELECT \';\' AS x, "a;b" FROM t /* ; */'), false);
  assert.equal(hasSecondStatement('SELECT $q$ ; DELETE $q$, $$;$$'), false);
  assert.equal(hasSecondStatement("SELECT E'it\\'s; fine'"), false);
  assert.equal(hasSecondStatement('COMMIT; DELETE FROM hosts'), true);
  assert.equal(hasSecondStatement("SELECT 'a''b'; DROP TABLE hosts"), true);
  assert.equal(hasSecondStatement('SELECT 1 -- c\r; DELETE FROM hosts'), true);
  assert.equal(hasSecondStatement('SELECT 1 AS a$x$; DELETE FROM hosts; SELECT $x$'), true);
  assert.equal(hasSecondStatement("SELECT '\\'; DELETE FROM hosts; --'"), true);
  assert.equal(hasSecondStatement('SELECT 1 /* /* nested */ ; */ ; DELETE FROM hosts'), true);
  assert.equal(hasSecondStatement('SELECT 1$x$;$x$'), false);
});

test('firstKeyword finds the statement verb past comments and parentheses', () => {
  assert.equal(firstKeyword('  -- note\n/* c */ (SELECT 1) UNION (SELECT 2)'), 'select');
  assert.equal(firstKeyword('WITH x AS (SELECT 1) SELECT * FROM x'), 'with');
  assert.equal(firstKeyword("copy t to program 'x'"), 'copy');
  assert.equal(firstKeyword(''), '');
});

async function count(store: Store, table: 'hosts' | 'processes'): Promise<number> {
  const r = await store.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] runSql returns plain rows, with bytes as base64`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addProcess(store, { pid: 1, start: 1, comm: 'sh', argv_raw: Buffer.from([0x73, 0xff, 0]) });
      await addProcess(store, { pid: 2, start: 2, comm: 'sh' });
      const rows = await runSql(store, 'SELECT comm, count(*) AS n FROM processes GROUP BY comm');
      assert.deepEqual(
        rows.map((r) => ({ ...r, n: Number(r.n) })),
        [{ comm: 'sh', n: 2 }],
      );
      const [raw] = await runSql(store, 'SELECT argv_raw FROM processes WHERE pid = 1');
      assert.equal(raw.argv_raw, Buffer.from([0x73, 0xff, 0]).toString('base64'));
      assert.deepEqual(await runSql(store, 'SELECT pid FROM processes WHERE pid > 100'), []);
    }));

  test(`[${dialect}] runSql refuses writes with POFR_SQL_READONLY and changes nothing`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addProcess(store, { pid: 1, start: 1 });
      const writes = [
        "INSERT INTO hosts (host_id, name, status, ssh_key, ssh_fingerprint, signing_key, enrolled_at) VALUES ('x','x','x','x','x','x',1)",
        'DELETE FROM processes',
        "UPDATE hosts SET name = 'forged'",
        'DROP TABLE processes',
        'CREATE TABLE evil (x integer)',
        'COMMIT; DELETE FROM processes',
        'SELECT 1; DELETE FROM processes',
        ...(dialect === 'sqlite'
          ? ['PRAGMA user_version = 99', 'PRAGMA journal_mode = DELETE', 'VACUUM']
          : [
              "SELECT nextval(pg_get_serial_sequence('processes', 'id'))",
              "COPY (SELECT 1) TO PROGRAM 'true'",
              'DO $$ BEGIN DELETE FROM processes; END $$',
              'SET default_transaction_read_only = off',
            ]),
      ];
      for (const text of writes) {
        await assert.rejects(runSql(store, text), (e: Error & { code?: string }) => {
          assert.equal(e.code, 'POFR_SQL_READONLY', `${text}: ${e.message}`);
          return true;
        });
      }
      assert.equal(await count(store, 'hosts'), 1);
      assert.equal(await count(store, 'processes'), 1);
      const [h] = await runSql(store, 'SELECT name FROM hosts');
      assert.equal(h.name, 'web');
    }));

  test(`[${dialect}] runSql reports a broken statement as a usage error naming the cause`, (t) =>
    withStore(t, dialect, async (store) => {
      await assert.rejects(runSql(store, 'SELECT * FROM WHERE'), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'POFR_USAGE');
        assert.match(e.message, /^the statement failed: .*syntax/);
        return true;
      });
      await assert.rejects(runSql(store, 'SELECT * FROM no_such_table'), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'POFR_USAGE');
        assert.match(e.message, /no_such_table/);
        return true;
      });
      await assert.rejects(runSql(store, '   '), (e: Error & { code?: string }) => e.code === 'POFR_USAGE');
    }));
}
