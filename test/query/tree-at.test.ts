import assert from 'node:assert/strict';
import { test } from 'node:test';
import { treeAt } from '../../src/query/index.js';
import { LIFETIME_BOUNDS_US } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, addProcess } from './fixtures.js';

const shape = (rows: readonly { depth: number; pid: number }[]) =>
  rows.map((r) => `${'.'.repeat(r.depth)}${r.pid}`);

for (const dialect of DIALECTS) {
  test(`[${dialect}] treeAt lists the processes alive at the instant depth-first, siblings by start`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      const init = await addProcess(store, { pid: 1, ppid: 0, start: 0 });
      const sshd = await addProcess(store, { pid: 100, ppid: 1, parent_id: init, start: 10 });
      const cron = await addProcess(store, { pid: 90, ppid: 1, parent_id: init, start: 20 });
      const bash = await addProcess(store, {
        pid: 200,
        ppid: 100,
        parent_id: sshd,
        start: 30,
        user: 'alice',
      });
      await addProcess(store, { pid: 300, ppid: 200, parent_id: bash, start: 40 });
      await addProcess(store, { pid: 91, ppid: 90, parent_id: cron, start: 35, end: 50 }); // dead at 60
      await addProcess(store, { pid: 92, ppid: 90, parent_id: cron, start: 61 }); // not yet born at 60
      const rows = await treeAt(store, { at: 60 });
      assert.deepEqual(shape(rows), ['1', '.100', '..200', '...300', '.90']);
      assert.equal(rows[2].user, 'alice');
      assert.equal(rows[2].host, 'web');
      assert.deepEqual(shape(await treeAt(store, { at: 40 })), [
        '1',
        '.100',
        '..200',
        '...300',
        '.90',
        '..91',
      ]);
      // an end equal to the instant means gone; a start equal to it means alive
      assert.deepEqual(shape(await treeAt(store, { at: 50 })), ['1', '.100', '..200', '...300', '.90']);
      assert.deepEqual(shape(await treeAt(store, { at: 61 })), [
        '1',
        '.100',
        '..200',
        '...300',
        '.90',
        '..92',
      ]);
      assert.deepEqual(shape(await treeAt(store, { at: 60, limit: 2 })), ['1', '.100']);
    }));

  test(`[${dialect}] a child finds its parent after the parent exec'd, or by ppid without parent_id`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      // parent_id names image 0 of pid 50, which exec'd at 20; image 1 is the one alive at 30.
      const shImage = await addProcess(store, {
        pid: 50,
        ppid: 1,
        start: 5,
        end: 20,
        end_reason: 'exec',
        start_ticks: 500,
      });
      await addProcess(store, {
        pid: 50,
        ppid: 1,
        start: 20,
        exec_index: 1,
        start_ticks: 500,
        comm: 'python3',
      });
      await addProcess(store, { pid: 60, ppid: 50, parent_id: shImage, start: 25 });
      await addProcess(store, { pid: 61, ppid: 50, parent_id: null, start: 26 }); // sampled: ppid only
      await addProcess(store, { pid: 70, ppid: 4242, start: 27 }); // parent never seen: a root
      const rows = await treeAt(store, { at: 30 });
      assert.deepEqual(shape(rows), ['50', '.60', '.61', '70']);
      assert.equal(rows[0].comm, 'python3');
      assert.equal(rows[0].exec_index, 1);
    }));

  test(`[${dialect}] treeAt keeps hosts apart, can leave out the recorder, and survives a parent cycle`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addHost(store, 'h2', 'db');
      await addProcess(store, { host_id: 'h1', pid: 1, ppid: 0, start: 0 });
      await addProcess(store, { host_id: 'h2', pid: 1, ppid: 0, start: 0 });
      await addProcess(store, { host_id: 'h2', pid: 5, ppid: 1, start: 1, observer: true });
      await addProcess(store, { host_id: 'h2', pid: 6, ppid: 5, start: 2 });
      // corrupt data: two processes each other's parent
      await addProcess(store, { host_id: 'h1', pid: 8, ppid: 9, start: 3 });
      await addProcess(store, { host_id: 'h1', pid: 9, ppid: 8, start: 4 });
      const rows = await treeAt(store, { at: 10 });
      assert.deepEqual(
        rows.map((r) => `${r.host}:${'.'.repeat(r.depth)}${r.pid}`),
        ['db:1', 'db:.5', 'db:..6', 'web:1', 'web:8', 'web:.9'],
      );
      assert.deepEqual(
        (await treeAt(store, { at: 10, hosts: ['h2'], observer: false })).map(
          (r) => `${'.'.repeat(r.depth)}${r.pid}`,
        ),
        ['1', '6'],
      );
    }));

  test(`[${dialect}] treeAt finds every image alive at the instant, whatever its lifetime class, at each class's edges`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      await addHost(store, 'h2', 'db');
      const T = 10 ** 13;
      type P = { pid: number; start: number; end: number | null; host_id: string };
      const made: P[] = [];
      let pid = 10;
      const add = async (start: number, end: number | null, host_id = 'h1') => {
        const p = { pid: pid++, start, end, host_id };
        made.push(p);
        await addProcess(store, { ...p, ppid: 0, end_reason: end === null ? null : 'exit' });
      };
      // Lifetimes just under, at and over each bound, placed so that T falls at their first and last
      // instants, just before and just after them.
      for (const b of [1, ...LIFETIME_BOUNDS_US]) {
        for (const life of [b - 1, b, b + 1]) {
          for (const start of [T - life - 1, T - life, T - life + 1, T - 1, T, T + 1])
            await add(start, start + life);
        }
      }
      await add(0, null);
      await add(T, null);
      await add(T + 1, null);
      await add(T - 5, null, 'h2');
      await add(T - 5, T + 3 * 10 ** 12, 'h2');
      for (const at of [T - 1, T, T + 1, T + 10 ** 6, 0, 2 * T]) {
        const alive = (h?: string) =>
          made
            .filter(
              (p) => (h === undefined || p.host_id === h) && p.start <= at && (p.end === null || p.end > at),
            )
            .map((p) => p.pid)
            .sort((a, b) => a - b);
        const got = async (hosts?: string[]) =>
          (await treeAt(store, { at, hosts })).map((r) => r.pid).sort((a, b) => a - b);
        assert.deepEqual(await got(['h1']), alive('h1'), `h1 at ${at}`);
        assert.deepEqual(await got(), alive(), `every host at ${at}`);
      }
    }));
}
