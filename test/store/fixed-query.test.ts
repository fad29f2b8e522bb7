import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'kysely';
import { fixedQuery } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';

const insertHost = fixedQuery(3, (db, hostId: string, name: string, enrolledAt: number) =>
  db.insertInto('hosts').values({
    host_id: hostId,
    name,
    status: 'approved',
    ssh_key: sql<string>`'ssh-ed25519 AAAA ' || ${hostId}`,
    ssh_fingerprint: sql<string>`'SHA256:' || ${hostId}`,
    signing_key: 'pem',
    enrolled_at: enrolledAt,
  }),
);

/** A list argument, a scalar used twice and constants of the query itself (the literal status, the limit). */
const hostsNamed = fixedQuery(2, (db, names: string[], after: number) =>
  db
    .selectFrom('hosts')
    .select(['host_id', 'name', 'enrolled_at'])
    .where('name', 'in', names)
    .where('status', '=', 'approved')
    .where((eb) => eb.or([eb('enrolled_at', '>', after), eb('enrolled_at', '=', after)]))
    .orderBy('enrolled_at')
    .limit(50),
);

for (const dialect of DIALECTS) {
  test(`[${dialect}] a fixed query binds each call's values, whatever the list lengths`, (t) =>
    withStore(t, dialect, async (store) => {
      for (let i = 0; i < 8; i++) await insertHost.run(store.db, store.caps, `h${i}`, `n${i}`, i * 10);
      const one = await store.db
        .selectFrom('hosts')
        .selectAll()
        .where('host_id', '=', 'h3')
        .executeTakeFirst();
      assert.equal(one?.ssh_fingerprint, 'SHA256:h3');
      assert.equal(Number(one?.enrolled_at), 30);

      const names = async (list: string[], after: number) =>
        (await hostsNamed.run(store.db, store.caps, list, after)).rows.map((r) => r.host_id);
      assert.deepEqual(await names(['n1', 'n5', 'n7'], 50), ['h5', 'h7']);
      // Same length, other values: the text compiled for length 3 is reused with the new values.
      assert.deepEqual(await names(['n0', 'n2', 'n4'], 0), ['h0', 'h2', 'h4']);
      assert.deepEqual(await names(['n6'], 10), ['h6']);
      assert.deepEqual(await names(['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'nope'], 35), [
        'h4',
        'h5',
        'h6',
        'h7',
      ]);
      assert.deepEqual(await names(['nope'], 0), []);

      // In a transaction, on its connection: rolled back with it.
      await assert.rejects(
        store.db.transaction().execute(async (trx) => {
          await insertHost.run(trx, store.caps, 'h-rolled-back', 'rb', 1);
          assert.deepEqual((await hostsNamed.run(trx, store.caps, ['rb'], 0)).rows.length, 1);
          throw new Error('roll back');
        }),
        /roll back/,
      );
      assert.deepEqual(await names(['rb'], 0), []);
    }));
}

test('[sqlite] a fixed query refuses a builder that does not bind an argument, and a wrong argument count', (t) =>
  withStore(t, 'sqlite', async (store) => {
    // The argument chooses the shape (a column name): not a bound parameter, so it is refused.
    const shapeByArgument = fixedQuery(1, (db, column: string) =>
      db
        .selectFrom('hosts')
        .select('host_id')
        .where('host_id', '=', 'x')
        .orderBy(sql.ref(String(column))),
    );
    await assert.rejects(
      shapeByArgument.run(store.db, store.caps, 'name'),
      /argument 0 is not a bound parameter/,
    );
    const unusedElement = fixedQuery(1, (db, ids: string[]) =>
      db
        .selectFrom('hosts')
        .select('host_id')
        .where('host_id', '=', ids[0] as string),
    );
    await assert.rejects(
      unusedElement.run(store.db, store.caps, ['a', 'b']),
      /element 1 of argument 0 is not a bound parameter/,
    );
    const q = fixedQuery(1, (db, id: string) =>
      db.selectFrom('hosts').select('host_id').where('host_id', '=', id),
    );
    await assert.rejects(
      (q.run as (...a: unknown[]) => Promise<unknown>)(store.db, store.caps, 'a', 'b'),
      /2 arguments given, the query takes 1/,
    );
  }));
