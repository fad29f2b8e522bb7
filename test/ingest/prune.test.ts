import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ingestBatch, pruneStore, rederiveHost, verifyStore } from '../../src/ingest/index.js';
import type { SealedBatch } from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, endpoint, file, inventory, proc, T0, type TestHost } from './host-fixture.js';

const S = 1_000_000;
const DAY = 86_400 * S;

async function apply(store: Store, host: TestHost, batch: SealedBatch) {
  const r = await ingestBatch(store, batch.bytes, { principal: host.hostId, receivedAt: batch.header.t_to });
  assert.equal(r.status, 'accepted', JSON.stringify(r));
}

async function count(store: Store, table: 'processes' | 'file_opens' | 'endpoints' | 'endpoint_states') {
  const r = await store.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/**
 * Two old batches (day 0) and two recent ones (day 10). bash (pid 100) and its TCP socket live
 * across the cut; pid 200 and pid 250 live and die on day 0, with their files and a UDP socket;
 * bash's log file opens on day 0 and closes on day 10.
 */
async function history(store: Store): Promise<TestHost> {
  const host = await addHost(store, { name: 'web1' });
  const bash = proc(100, 5, { comm: 'bash', argv: ['bash'], ruid: 1000 });
  await apply(
    store,
    host,
    host.next([
      inventory(T0),
      { type: 'process_start', t: T0 + S, proc: bash },
      { type: 'process_start', t: T0 + S, proc: proc(200, 7, { ppid: 100, parent_start_ticks: 5 }) },
      { type: 'process_start', t: T0 + S, proc: proc(250, 9, { ppid: 100 }) },
      { type: 'file_open', t: T0 + S, file: file(200, 7, 3, '/tmp/a') },
      {
        type: 'endpoint_open',
        t: T0 + S,
        endpoint: endpoint('tcp:a', { pid: 100, start_ticks: 5, state: 'SYN_SENT' }),
      },
      {
        type: 'endpoint_open',
        t: T0 + S,
        endpoint: endpoint('udp:x', { proto: 'udp', pid: 200, start_ticks: 7, state: 'UNCONN', inode: 7 }),
      },
      { type: 'endpoint_close', t: T0 + 2 * S, key: 'udp:x' },
      { type: 'process_exit', t: T0 + 2 * S, pid: 250, start_ticks: 9 },
    ]),
  );
  await apply(
    store,
    host,
    host.next([
      { type: 'process_exit', t: T0 + 3 * S, pid: 200, start_ticks: 7 },
      { type: 'file_open', t: T0 + 3 * S, file: file(100, 5, 3, '/var/log/bash.log') },
      { type: 'endpoint_state', t: T0 + 3 * S, key: 'tcp:a', state: 'ESTABLISHED' },
    ]),
  );
  await apply(
    store,
    host,
    host.next([
      {
        type: 'process_start',
        t: T0 + 10 * DAY,
        proc: proc(300, 9_000, { ppid: 100, start: T0 + 10 * DAY }),
      },
      { type: 'file_close', t: T0 + 10 * DAY, pid: 100, start_ticks: 5, fd: 3 },
      { type: 'endpoint_state', t: T0 + 10 * DAY, key: 'tcp:a', state: 'CLOSE_WAIT' },
    ]),
  );
  await apply(
    store,
    host,
    host.next([
      inventory(T0 + 10 * DAY + S, {
        users: [{ uid: 1000, gid: 1000, name: 'alice', home: '/home/alice', shell: '/bin/zsh' }],
      }),
      { type: 'endpoint_close', t: T0 + 10 * DAY + 2 * S, key: 'tcp:a' },
      { type: 'process_exit', t: T0 + 10 * DAY + 2 * S, pid: 100, start_ticks: 5 },
    ]),
  );
  return host;
}

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
