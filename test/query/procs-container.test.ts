import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ingestBatch, rederiveHost } from '../../src/ingest/index.js';
import { findProcesses, timeline } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, proc, T0 } from '../ingest/host-fixture.js';

const S = 1_000_000;
const ID = 'ab12'.repeat(16);
const OTHER = 'cd34'.repeat(16);
const CONTEXT = {
  cgroup: `/system.slice/docker-${ID}.scope`,
  container_id: ID,
  ns_pid: 4026532201,
  ns_net: 4026532204,
  ns_mnt: 4026532199,
  ns_user: 4026531837,
};

for (const dialect of DIALECTS) {
  test(`[${dialect}] processes carry their cgroup, container and namespaces; --container finds them by id or prefix`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const batch = host.next([
        { type: 'process_start', t: T0 + S, proc: proc(100, 5, { comm: 'sh', argv: ['sh'], ...CONTEXT }) },
        {
          type: 'process_start',
          t: T0 + S,
          proc: proc(101, 6, {
            comm: 'nginx',
            argv: ['nginx'],
            ...CONTEXT,
            container_id: OTHER,
            // A cgroup name that is not UTF-8 keeps its bytes.
            cgroup: { b64: Buffer.from([0x2f, 0x78, 0xff]).toString('base64') },
          }),
        },
        // A batch of an earlier recorder: no context at all.
        { type: 'process_start', t: T0 + S, proc: proc(102, 7, { comm: 'cron', argv: ['cron'] }) },
      ]);
      const r = await ingestBatch(store, batch.bytes, { principal: host.hostId });
      assert.equal(r.status, 'accepted', JSON.stringify(r));

      const byFull = await findProcesses(store, { container: ID });
      assert.deepEqual(
        byFull.map((p) => [p.pid, p.container_id, p.cgroup, p.ns_pid, p.ns_net, p.ns_mnt, p.ns_user]),
        [[100, ID, CONTEXT.cgroup, CONTEXT.ns_pid, CONTEXT.ns_net, CONTEXT.ns_mnt, CONTEXT.ns_user]],
      );
      assert.deepEqual(
        (await findProcesses(store, { container: OTHER.slice(0, 12).toUpperCase() })).map((p) => p.pid),
        [101],
      );
      const nginx = (await findProcesses(store, { pid: 101 }))[0];
      assert.equal(nginx.cgroup_raw_b64, Buffer.from([0x2f, 0x78, 0xff]).toString('base64'));
      const cron = (await findProcesses(store, { pid: 102 }))[0];
      assert.deepEqual([cron.container_id, cron.cgroup, cron.ns_pid], [null, null, null]);
      await assert.rejects(findProcesses(store, { container: "x' or 1=1" }), /not a container id/);

      const events = await timeline(store, { kinds: ['process_start'] });
      const started = events.find((e) => e.pid === 100);
      assert.ok(started && 'container_id' in started, 'the timeline carries the context');
      assert.equal(started.container_id, ID);
      assert.equal(started.ns_net, CONTEXT.ns_net);

      // pofr verify compares the new columns too: an edited container id is found.
      assert.deepEqual((await rederiveHost(store, host.hostId)).mismatches, []);
      await store.db.updateTable('processes').set({ container_id: OTHER }).where('pid', '=', 100).execute();
      const after = await rederiveHost(store, host.hostId);
      assert.equal(after.mismatches.length, 1);
      assert.match(after.mismatches[0].detail, /container_id/);
    }));
}
