import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pruneStore, rederiveHost, verifyStore } from '../../src/ingest/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { T0 } from './host-fixture.js';
import { apply, count, DAY, history } from './window-history.js';

for (const dialect of DIALECTS) {
  test(`[${dialect}] prune drops old batches with what only they derived; verify passes and says pruned`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await history(store);
      const olderThan = T0 + 5 * DAY;

      const dry = await pruneStore(store, { olderThan, dryRun: true });
      assert.deepEqual(dry, [{ host_id: host.hostId, from_seq: 1, to_seq: 2, batches: 2, rows: 0 }]);
      assert.equal(await count(store, 'processes'), 4, 'a dry run changes nothing');

      const [report] = await pruneStore(store, { olderThan });
      assert.equal(report?.batches, 2);
      assert.ok((report?.rows ?? 0) > 0);
      const seqs = await store.db.selectFrom('batches').select('seq').orderBy('seq').execute();
      assert.deepEqual(
        seqs.map((r) => Number(r.seq)),
        [3, 4],
      );
      const evidence = await store.db.selectFrom('batch_evidence').select('seq').execute();
      assert.equal(evidence.length, 2, 'evidence goes with its batches');
      // What lived across the cut stays; what lived and died before it goes.
      const pids = await store.db.selectFrom('processes').select('pid').orderBy('pid').execute();
      assert.deepEqual(
        pids.map((r) => Number(r.pid)),
        [100, 300],
      );
      const paths = await store.db.selectFrom('file_opens').select('path').execute();
      assert.deepEqual(
        paths.map((r) => r.path),
        ['/var/log/bash.log'],
      );
      const keys = await store.db.selectFrom('endpoints').select('key').execute();
      assert.deepEqual(
        keys.map((r) => r.key),
        ['tcp:a'],
      );
      assert.equal(await count(store, 'endpoint_states'), 3, "tcp:a's three states stay, udp:x's go");

      const [v] = await verifyStore(store);
      assert.equal(v?.ok, true, JSON.stringify(v?.failures));
      assert.equal(v?.complete, true, JSON.stringify(v?.known_gaps));
      assert.deepEqual(v?.known_gaps, [], 'the pruned window is not a gap');
      assert.equal(v?.pruned?.before_seq, 3);
      assert.equal(v?.batches, 2);

      // A batch after the prune links on; pruning again with the same cutoff takes nothing more.
      await apply(
        store,
        host,
        host.next([{ type: 'process_exit', t: T0 + 11 * DAY, pid: 300, start_ticks: 9_000 }]),
      );
      const [again] = await pruneStore(store, { olderThan });
      assert.equal(again?.batches, 0);
      const [v2] = await verifyStore(store);
      assert.equal(v2?.ok, true, JSON.stringify(v2?.failures));
      assert.equal(v2?.complete, true);

      // Re-derivation still sees an edit of a row the kept evidence derives.
      await store.db.updateTable('processes').set({ comm: 'evil' }).where('pid', '=', 300).execute();
      const { mismatches } = await rederiveHost(store, host.hostId);
      assert.equal(mismatches.length, 1);
      assert.match(mismatches[0]?.detail ?? '', /evil/);

      await store.db.updateTable('processes').set({ comm: 'true' }).where('pid', '=', 300).execute();
      const [clean] = await verifyStore(store);
      assert.equal(clean?.ok, true, JSON.stringify(clean?.failures));

      // bash was open at the cut: its evidence is gone, and the prune's digest of the rows it left stands for it.
      await store.db
        .updateTable('processes')
        .set({ argv: '["bash","-c","evil"]' })
        .where('pid', '=', 100)
        .execute();
      const [bad] = await verifyStore(store);
      assert.equal(bad?.ok, false);
      assert.match(
        bad?.failures.map((f) => f.reason).join('\n') ?? '',
        /rows open at the prune's cut before batch 3/,
      );
    }));

  test(`[${dialect}] prune keeps the newest batch and a process a kept row points at`, (t) =>
    withStore(t, dialect, async (store) => {
      await history(store);
      // Everything is older than this: all but the newest batch go (it holds the chain head).
      const [report] = await pruneStore(store, { olderThan: T0 + 100 * DAY });
      assert.equal(report?.to_seq, 3);
      const seqs = await store.db.selectFrom('batches').select('seq').execute();
      assert.deepEqual(
        seqs.map((r) => Number(r.seq)),
        [4],
      );
      // bash closed in batch 4, the one kept; pid 300 still runs: both stay.
      const pids = await store.db.selectFrom('processes').select('pid').orderBy('pid').execute();
      assert.deepEqual(
        pids.map((r) => Number(r.pid)),
        [100, 300],
      );
      const [v] = await verifyStore(store);
      assert.equal(v?.ok, true, JSON.stringify(v?.failures));
      assert.equal(v?.complete, true, JSON.stringify(v?.known_gaps));
    }));
}
