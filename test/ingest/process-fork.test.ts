import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifyStore } from '../../src/ingest/index.js';
import type { PofrRecord, RecordOf } from '../../src/protocol/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { rowsOf, send, stated } from './compact-history.js';
import { addHost, proc, T0 } from './host-fixture.js';

const S = 1_000_000;

const fork = (
  t: number,
  pid: number,
  startTicks: number,
  ppid: number,
  parentTicks: number,
): RecordOf<'process_fork'> => ({
  type: 'process_fork',
  t,
  pid,
  start_ticks: startTicks,
  ppid,
  parent_start_ticks: parentTicks,
  observer: pid === 77,
});

for (const dialect of DIALECTS) {
  test(`[${dialect}] process_fork records store exactly the rows full process_start records store, and verify re-derives them`, (t) =>
    withStore(t, dialect, async (store) => {
      const shell = proc(10, 1, {
        argv: ['bash', { b64: Buffer.from([0x2d, 0xff]).toString('base64') }],
        comm: 'bash',
        exe: { b64: Buffer.from('/opt/b\xffsh', 'latin1').toString('base64') },
        cwd: '/home/alice',
        ruid: 1000,
        euid: 1000,
        cgroup: '/system.slice/docker-0123.scope',
        container_id: 'a'.repeat(64),
        ns_pid: 4026531836,
        ns_net: 4026531840,
        ns_mnt: 4026531841,
        ns_user: 4026531837,
      });
      const batches: PofrRecord[][] = [
        [{ type: 'process_start', t: T0, proc: shell }],
        [
          // The parent is a row of an earlier batch.
          fork(T0 + 1 * S, 20, 100, 10, 1),
          { type: 'process_exit', t: T0 + 2 * S, pid: 20, start_ticks: 100 },
          // The parent execs: a later fork copies the new program.
          {
            type: 'process_exec',
            t: T0 + 3 * S,
            proc: { ...shell, argv: ['vim', 'x'], comm: 'vim', exe: '/usr/bin/vim' },
          },
          fork(T0 + 4 * S, 30, 400, 10, 1),
          // A fork of a fork made in this same batch; and an observer.
          fork(T0 + 5 * S, 40, 500, 30, 400),
          fork(T0 + 5 * S, 77, 501, 30, 400),
        ],
      ];
      const compact = await addHost(store, { name: 'compact' });
      const full = await addHost(store, { name: 'full' });
      for (const b of batches) assert.deepEqual(await send(store, compact, b), []);
      for (const b of stated(batches)) await send(store, full, b);

      const a = await rowsOf(store, compact.hostId);
      assert.deepEqual(a, await rowsOf(store, full.hostId));
      assert.deepEqual(
        a.map((r) => [r.pid, r.exec_index, r.cmdline, r.parent, r.source, r.observer]),
        [
          [10, 0, 'bash -\\xff', null, 'trace', 0],
          [10, 1, 'vim x', null, 'trace', 0],
          [20, 0, 'bash -\\xff', '10/0', 'trace', 0],
          [30, 0, 'vim x', '10/1', 'trace', 0],
          [40, 0, 'vim x', '30/0', 'trace', 0],
          [77, 0, 'vim x', '30/0', 'trace', 1],
        ],
      );
      const forked = a.find((r) => r.pid === 20);
      assert.equal(forked?.container_id, 'a'.repeat(64));
      assert.equal(forked?.ns_net, 4026531840);
      assert.equal(forked?.start, T0 + 1 * S);
      assert.equal(forked?.end_reason, 'exit');

      for (const report of await verifyStore(store))
        assert.equal(report.ok, true, JSON.stringify(report.failures));
    }));

  test(`[${dialect}] a process_fork whose parent the store lacks is stored marked unknown, with a warning`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const warnings = await send(store, host, [fork(T0 + S, 50, 9, 5, 2)]);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], /process_fork of a parent the store does not know.*pid 50 parent 5:2/);
      const [row] = await store.db.selectFrom('processes').selectAll().execute();
      assert.deepEqual(
        [
          row.pid,
          row.ppid,
          row.parent_id,
          row.exe,
          row.argv,
          row.argv_complete,
          row.ruid,
          row.euid,
          row.user,
        ],
        [50, 5, null, null, '[]', 0, 4_294_967_295, 4_294_967_295, null],
      );
      const [report] = await verifyStore(store);
      assert.equal(report.ok, true, JSON.stringify(report.failures));
    }));
}
