import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ingestBatch, verifyStore } from '../../src/ingest/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, endpoint, file, proc, T0 } from './host-fixture.js';

const S = 1_000_000;

for (const dialect of DIALECTS) {
  // After a keyframe the applier's descriptor cache is empty and its rows are stored: the records
  // after it in the same batch load what they need and are applied as if alone.
  test(`[${dialect}] records after a keyframe in the same batch apply on the keyframe's state`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const a = proc(400, 40, { comm: 'daemon' });
      const batch = host.next([
        {
          type: 'keyframe',
          t: T0 + S,
          processes: [a],
          files: [file(400, 40, 3, '/var/log/d.log')],
          endpoints: [endpoint('tcp:k', { pid: 400, start_ticks: 40 })],
        },
        { type: 'file_open', t: T0 + 2 * S, file: file(400, 40, 4, '/tmp/new') },
        { type: 'file_close', t: T0 + 3 * S, pid: 400, start_ticks: 40, fd: 3 },
        { type: 'endpoint_state', t: T0 + 3 * S, key: 'tcp:k', state: 'CLOSE_WAIT' },
        { type: 'process_start', t: T0 + 3 * S, proc: proc(401, 41, { ppid: 400, parent_start_ticks: 40 }) },
        { type: 'process_exit', t: T0 + 4 * S, pid: 400, start_ticks: 40 },
      ]);
      const r = await ingestBatch(store, batch.bytes, { principal: host.hostId });
      assert.equal(r.status, 'accepted', JSON.stringify(r));
      assert.deepEqual(r.status === 'accepted' ? r.warnings : null, []);
      const files = await store.db
        .selectFrom('file_opens')
        .select(['fd', 'is_open', 'last_seen'])
        .orderBy('fd')
        .execute();
      assert.deepEqual(
        files.map((f) => [Number(f.fd), Number(f.is_open), Number(f.last_seen)]),
        [
          [3, 0, T0 + 3 * S],
          [4, 0, T0 + 4 * S],
        ],
      );
      const procs = await store.db
        .selectFrom('processes')
        .select(['id', 'pid', 'end', 'parent_id'])
        .orderBy('pid')
        .execute();
      assert.equal(Number(procs[0]?.end), T0 + 4 * S);
      assert.equal(procs[1]?.parent_id, procs[0]?.id, 'the child links to the keyframe’s image');
      const states = await store.db.selectFrom('endpoint_states').select('state').orderBy('ord').execute();
      assert.deepEqual(
        states.map((s) => s.state),
        ['ESTABLISHED', 'CLOSE_WAIT'],
      );
      const [v] = await verifyStore(store);
      assert.equal(v?.ok, true, JSON.stringify(v?.failures));
    }));
}
