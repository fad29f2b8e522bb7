import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ingestBatch, rederiveHost, verifyStore } from '../../src/ingest/index.js';
import type { PofrRecord } from '../../src/protocol/index.js';
import { crashRecord, heartbeatRecord, startRecord } from '../helpers/recorder-records.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, proc, T0 } from './host-fixture.js';

const S = 1_000_000;

for (const dialect of DIALECTS) {
  test(`[${dialect}] health records are stored, a crash's blind window is a known gap, and verify re-derives both`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store, { name: 'web1' });
      const batches: PofrRecord[][] = [
        [startRecord(T0), { type: 'process_start', t: T0, proc: proc(100, 1) }],
        [{ type: 'process_exit', t: T0 + 2 * S, pid: 100, start_ticks: 1 }],
        [
          crashRecord(T0 + 10 * S, T0 + 2 * S),
          startRecord(T0 + 10 * S, { pid: 600, config_hash: 'b'.repeat(64) }),
        ],
        [
          heartbeatRecord(T0 + 40 * S, { pid: 600, config_hash: 'b'.repeat(64), spool_depth: 1 }),
          { type: 'recorder_stop', t: T0 + 41 * S, pid: 600, reason: 'signal', signal: 'SIGTERM' },
        ],
      ];
      for (const records of batches) {
        const r = await ingestBatch(store, host.next(records).bytes, { principal: host.hostId });
        assert.equal(r.status, 'accepted', JSON.stringify(r));
      }
      const events = await store.db
        .selectFrom('recorder_events')
        .select(['seq', 'ord', 'kind', 'pid', 'config_hash', 'heartbeat_ms', 'batch_ms', 'detail', 'boot_id'])
        .where('host_id', '=', host.hostId)
        .orderBy('ord')
        .execute();
      assert.deepEqual(
        events.map((e) => [Number(e.seq), e.kind, Number(e.pid)]),
        [
          [1, 'start', 500],
          [3, 'crash', 600],
          [3, 'start', 600],
          [4, 'heartbeat', 600],
          [4, 'stop', 600],
        ],
      );
      assert.equal(Number(events[0].heartbeat_ms), 30_000);
      assert.equal(events[1].heartbeat_ms, null);
      assert.equal(events[0].boot_id, host.bootId);
      assert.deepEqual(JSON.parse(events[4].detail), { reason: 'signal', signal: 'SIGTERM' });
      assert.equal(JSON.parse(events[0].detail).version, '0.1.0');

      const [gap] = await store.db
        .selectFrom('gaps')
        .selectAll()
        .where('host_id', '=', host.hostId)
        .execute();
      assert.equal(gap.kind, 'crash');
      assert.equal(Number(gap.t_from), T0 + 2 * S);
      assert.equal(Number(gap.t_to), T0 + 10 * S);
      assert.match(
        gap.detail,
        /ended without a clean stop .*pid 500.* until it restarted \(pid 600\); its journal gave back 5 records \(batches 2–2\)/,
      );

      const [report] = await verifyStore(store, { hostId: host.hostId });
      assert.equal(report.ok, true, JSON.stringify(report.failures));
      assert.equal(report.gaps, 1, 'the blind window counts as a known gap');
      assert.deepEqual(
        report.known_gaps.map((g) => [g.kind, g.seq, g.t_from, g.t_to]),
        [['crash', 3, T0 + 2 * S, T0 + 10 * S]],
      );

      // Both tables are re-derived from the evidence: an edit of either is caught.
      await store.db
        .updateTable('recorder_events')
        .set({ detail: JSON.stringify({ reason: 'deregister', signal: 'SIGTERM' }) })
        .where('host_id', '=', host.hostId)
        .where('kind', '=', 'stop')
        .execute();
      await store.db
        .deleteFrom('gaps')
        .where('host_id', '=', host.hostId)
        .where('kind', '=', 'crash')
        .execute();
      const { mismatches } = await rederiveHost(store, host.hostId);
      assert.deepEqual(mismatches.map((m) => m.table).sort(), ['gaps', 'recorder_events']);
      assert.match(
        mismatches.find((m) => m.table === 'recorder_events')!.detail,
        /detail is .*deregister.* in the store/,
      );
      assert.match(mismatches.find((m) => m.table === 'gaps')!.detail, /missing from the store/);
    }));
}
