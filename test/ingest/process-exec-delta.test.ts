import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifyStore } from '../../src/ingest/index.js';
import type { PofrRecord, RecordOf } from '../../src/protocol/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { rowsOf, send, stated } from './compact-history.js';
import { addHost, proc, T0 } from './host-fixture.js';

const S = 1_000_000;

const delta = (
  t: number,
  pid: number,
  startTicks: number,
  program: Pick<RecordOf<'process_exec_delta'>, 'exe' | 'comm' | 'argv'>,
  changed: Partial<RecordOf<'process_exec_delta'>> = {},
): RecordOf<'process_exec_delta'> => ({
  type: 'process_exec_delta',
  t,
  pid,
  start_ticks: startTicks,
  argv_source: 'probe',
  argv_complete: true,
  ...program,
  ...changed,
});

const weird = { b64: Buffer.from([0x2d, 0xff, 0x0a, 0x22]).toString('base64') };

for (const dialect of DIALECTS) {
  test(`[${dialect}] process_exec_delta records store exactly the rows whole process_exec records store, and verify re-derives them`, (t) =>
    withStore(t, dialect, async (store) => {
      const shell = proc(10, 1, {
        argv: ['bash', '-i'],
        comm: 'bash',
        exe: '/usr/bin/bash',
        cwd: '/home/alice',
        ruid: 1000,
        euid: 1000,
        rgid: 1000,
        egid: 1000,
        source: 'trace',
        argv_source: 'probe',
        argv_complete: true,
        cgroup: '/system.slice/docker-0123.scope',
        container_id: 'a'.repeat(64),
        ns_pid: 4026531836,
        ns_net: 4026531840,
        ns_mnt: 4026531841,
        ns_user: 4026531837,
      });
      const batches: PofrRecord[][] = [
        [
          { type: 'process_start', t: T0, proc: shell },
          {
            type: 'process_fork',
            t: T0 + S,
            pid: 20,
            start_ticks: 100,
            ppid: 10,
            parent_start_ticks: 1,
            observer: false,
          },
        ],
        [
          // The image before is a row of an earlier batch.
          delta(
            T0 + 2 * S,
            20,
            100,
            { exe: '/usr/bin/sudo', comm: 'sudo', argv: ['sudo', weird] },
            { euid: 0 },
          ),
          // …and then one made in this same batch; a changed cwd and cgroup, and an argv cut short.
          delta(
            T0 + 3 * S,
            20,
            100,
            { exe: { b64: Buffer.from('/tmp/\xffx', 'latin1').toString('base64') }, comm: 'x', argv: ['x'] },
            { cwd: '/tmp', cgroup: null, ruid: 0, argv_source: 'proc', argv_complete: false },
          ),
          // A fork of the new program copies it.
          {
            type: 'process_fork',
            t: T0 + 4 * S,
            pid: 30,
            start_ticks: 400,
            ppid: 20,
            parent_start_ticks: 100,
            observer: false,
          },
          { type: 'process_exit', t: T0 + 5 * S, pid: 30, start_ticks: 400 },
          // The shell itself execs (its image from the first batch), reparented and now an observer.
          delta(T0 + 6 * S, 10, 1, { exe: null, comm: 'vim', argv: [] }, { ppid: 77, observer: true }),
        ],
      ];
      const compact = await addHost(store, { name: 'compact' });
      const whole = await addHost(store, { name: 'whole' });
      for (const b of batches) assert.deepEqual(await send(store, compact, b), []);
      for (const b of stated(batches)) assert.deepEqual(await send(store, whole, b), []);

      const a = await rowsOf(store, compact.hostId);
      assert.deepEqual(a, await rowsOf(store, whole.hostId));
      assert.deepEqual(
        a.map((r) => [
          r.pid,
          r.exec_index,
          r.cmdline,
          r.euid,
          r.cwd,
          r.parent,
          r.end_reason,
          r.ppid,
          r.observer,
        ]),
        [
          [10, 0, 'bash -i', 1000, '/home/alice', null, 'exec', 1, 0],
          [10, 1, '', 1000, '/home/alice', null, null, 77, 1],
          [20, 0, 'bash -i', 1000, '/home/alice', '10/0', 'exec', 10, 0],
          [20, 1, 'sudo -\\xff\n"', 0, '/home/alice', '10/0', 'exec', 10, 0],
          [20, 2, 'x', 0, '/tmp', '10/0', null, 10, 0],
          [30, 0, 'x', 0, '/tmp', '20/2', 'exit', 20, 0],
        ],
      );
      const last = a.find((r) => r.pid === 20 && r.exec_index === 2);
      assert.deepEqual(
        [last?.ruid, last?.cgroup, last?.container_id, last?.ns_net, last?.argv_source, last?.argv_complete],
        [0, null, 'a'.repeat(64), 4026531840, 'proc', 0],
      );
      assert.equal(last?.exe_raw, Buffer.from('/tmp/\xffx', 'latin1').toString('hex'));
      for (const report of await verifyStore(store))
        assert.equal(report.ok, true, JSON.stringify(report.failures));
    }));

  test(`[${dialect}] a process_exec_delta of a process the store lacks is stored with what it says, the rest unknown, with a warning`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const warnings = await send(store, host, [
        delta(T0 + S, 50, 9, { exe: '/bin/cat', comm: 'cat', argv: ['cat', '/etc/shadow'] }),
      ]);
      assert.equal(warnings.length, 1);
      assert.match(
        warnings[0],
        /process_exec_delta of a process the store does not know.*pid 50 start_ticks 9/,
      );
      const [row] = await store.db.selectFrom('processes').selectAll().execute();
      assert.deepEqual(
        [row.pid, row.exec_index, row.ppid, row.exe, row.cmdline, row.cwd, row.ruid, row.euid, row.user],
        [50, 0, 0, '/bin/cat', 'cat /etc/shadow', null, 4_294_967_295, 4_294_967_295, null],
      );
      const [report] = await verifyStore(store);
      assert.equal(report.ok, true, JSON.stringify(report.failures));
    }));
}
