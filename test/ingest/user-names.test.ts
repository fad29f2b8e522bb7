import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ingestBatch } from '../../src/ingest/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, inventory, proc, T0 } from './host-fixture.js';

const S = 1_000_000;

for (const dialect of DIALECTS) {
  test(`[${dialect}] processes alive before the first inventory are named after the uid's first known user`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      // What the recorder sends at start: inventory, then a keyframe of processes that began long ago.
      const old = proc(100, 5, { ruid: 1000, start: T0 - 3600 * S });
      const unknownUid = proc(101, 6, { ruid: 4242, start: T0 - 60 * S });
      const batch = host.next([
        inventory(T0),
        { type: 'keyframe', t: T0, processes: [old, unknownUid], files: [], endpoints: [] },
      ]);
      const r = await ingestBatch(store, batch.bytes, { principal: host.hostId });
      assert.equal(r.status, 'accepted');
      const rows = await store.db.selectFrom('processes').select(['pid', 'user']).orderBy('pid').execute();
      assert.deepEqual(
        rows.map((p) => [Number(p.pid), p.user]),
        [
          [100, 'alice'],
          [101, null],
        ],
      );
    }));
}
