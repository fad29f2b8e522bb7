import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ingestBatch, verifyStore } from '../../src/ingest/index.js';
import type { PofrRecord, ProcessImage, RecordOf } from '../../src/protocol/index.js';
import { forkedImage } from '../../src/recorder/live-state.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, proc, T0, type TestHost } from './host-fixture.js';

const S = 1_000_000;

async function send(store: Store, host: TestHost, records: PofrRecord[]): Promise<string[]> {
  const r = await ingestBatch(store, host.next(records).bytes, { principal: host.hostId });
  assert.equal(r.status, 'accepted', JSON.stringify(r));
  return r.status === 'accepted' ? r.warnings : [];
}

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

/** The same history as full process_start records: what a protocol 2 recorder sent. */
function stated(batches: PofrRecord[][]): PofrRecord[][] {
  const images = new Map<string, ProcessImage>();
  return batches.map((records) =>
    records.map((r) => {
      if (r.type === 'process_start' || r.type === 'process_exec')
        images.set(`${r.proc.pid}:${r.proc.start_ticks}`, r.proc);
      if (r.type !== 'process_fork') return r;
      const parent = images.get(`${r.ppid}:${r.parent_start_ticks}`);
      assert.ok(parent, 'the fixture forks known parents only');
      const img = forkedImage(parent, r);
      images.set(`${r.pid}:${r.start_ticks}`, img);
      return { type: 'process_start', t: r.t, proc: img };
    }),
  );
}

async function rowsOf(store: Store, hostId: string) {
  const rows = await store.db
    .selectFrom('processes')
    .selectAll()
    .where('host_id', '=', hostId)
    .orderBy('pid')
    .orderBy('exec_index')
    .execute();
  const idToPid = new Map(rows.map((r) => [Number(r.id), `${r.pid}/${r.exec_index}`]));
  return rows.map(({ id: _id, host_id: _h, boot_id: _b, parent_id, ...rest }) => ({
    ...rest,
    parent: parent_id === null ? null : idToPid.get(Number(parent_id)),
    exe_raw: rest.exe_raw === null ? null : Buffer.from(rest.exe_raw as Uint8Array).toString('hex'),
    argv_raw: rest.argv_raw === null ? null : Buffer.from(rest.argv_raw as Uint8Array).toString('hex'),
    comm_raw: rest.comm_raw === null ? null : Buffer.from(rest.comm_raw as Uint8Array).toString('hex'),
    cwd_raw: rest.cwd_raw === null ? null : Buffer.from(rest.cwd_raw as Uint8Array).toString('hex'),
    cgroup_raw: rest.cgroup_raw === null ? null : Buffer.from(rest.cgroup_raw as Uint8Array).toString('hex'),
  }));
}

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
