import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findFiles, globToLike } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addFile, addHost, addProcess } from './fixtures.js';

test('globToLike turns * and ? into LIKE wildcards and escapes %, _ and backslash', () => {
  assert.equal(globToLike('/tmp/*.sh'), '/tmp/%.sh');
  assert.equal(globToLike('/tmp/a?c'), '/tmp/a_c');
  assert.equal(globToLike('/srv/50%_off\\x'), '/srv/50\\%\\_off\\\\x');
});

const HOSTILE = [
  '/tmp/50%_off.txt',
  '/tmp/50xyoff.txt',
  '/tmp/with space/it\'s "quoted".txt',
  '/tmp/line\nbreak',
  '/tmp/back\\slash',
  '/etc/shadow',
  '/etc/ssh/sshd_config',
];

for (const dialect of DIALECTS) {
  test(`[${dialect}] path globs match whole paths; %, _ and quotes are literal; * spans / and newlines`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      const pid = await addProcess(store, { pid: 5, start: 1, comm: 'vim' });
      for (const [i, path] of HOSTILE.entries()) {
        await addFile(store, { process_id: pid, pid: 5, fd: 3 + i, path, first_seen: 10 + i });
      }
      const paths = async (glob: string) => (await findFiles(store, { path: glob })).map((f) => f.path);
      assert.deepEqual(await paths('/tmp/50%_off.txt'), ['/tmp/50%_off.txt']);
      assert.deepEqual(await paths('/tmp/50??off.txt'), ['/tmp/50%_off.txt', '/tmp/50xyoff.txt']);
      assert.deepEqual(await paths('/tmp/with space/it\'s "quoted".txt'), [
        '/tmp/with space/it\'s "quoted".txt',
      ]);
      assert.deepEqual(await paths('/tmp/line*'), ['/tmp/line\nbreak']);
      assert.deepEqual(await paths('*break'), ['/tmp/line\nbreak']);
      assert.deepEqual(await paths('/tmp/back\\slash'), ['/tmp/back\\slash']);
      assert.deepEqual(await paths('/etc/*'), ['/etc/shadow', '/etc/ssh/sshd_config']);
      assert.deepEqual(await paths('*sshd_config'), ['/etc/ssh/sshd_config']);
      assert.deepEqual(await paths('/etc/SHADOW'), []);
      assert.deepEqual(await paths('/etc'), []);
      const [f] = await findFiles(store, { path: '/etc/shadow' });
      assert.deepEqual(
        { host: f.host, pid: f.pid, comm: f.comm, fd: f.fd, kind: f.kind, open: f.open, raw: f.path_raw_b64 },
        { host: 'web', pid: 5, comm: 'vim', fd: 8, kind: 'file', open: false, raw: null },
      );
    }));

  test(`[${dialect}] a file is in the window when first seen by its end and last seen after its start, or still open`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      const pid = await addProcess(store, { pid: 5, start: 1 });
      await addFile(store, { process_id: pid, pid: 5, fd: 1, path: '/a', first_seen: 10, last_seen: 19 });
      await addFile(store, { process_id: pid, pid: 5, fd: 2, path: '/b', first_seen: 10, last_seen: 20 });
      await addFile(store, {
        process_id: pid,
        pid: 5,
        fd: 3,
        path: '/c',
        first_seen: 5,
        last_seen: 5,
        open: true,
      });
      await addFile(store, { process_id: pid, pid: 5, fd: 4, path: '/d', first_seen: 30, last_seen: 40 });
      await addFile(store, { process_id: pid, pid: 5, fd: 5, path: '/e', first_seen: 31, last_seen: 40 });
      const paths = async (from: number, to: number) =>
        (await findFiles(store, { from, to })).map((f) => f.path);
      assert.deepEqual(await paths(20, 30), ['/c', '/b', '/d']);
      const open = await findFiles(store, { path: '/c' });
      assert.equal(open[0].open, true);
      assert.equal(open[0].close_ord, null);
    }));

  test(`[${dialect}] files filter by pid and kind, keep exact bytes, and can leave out the recorder's own`, (t) =>
    withStore(t, dialect, async (store) => {
      await addHost(store, 'h1', 'web');
      const a = await addProcess(store, { pid: 5, start: 1 });
      const rec = await addProcess(store, { pid: 6, start: 1, observer: true });
      const raw = Buffer.from([0x2f, 0x74, 0xff]);
      await addFile(store, { process_id: a, pid: 5, path: '/t\\xff', path_raw: raw, first_seen: 10 });
      await addFile(store, { process_id: a, pid: 5, path: 'socket:[77]', kind: 'socket', first_seen: 11 });
      await addFile(store, { process_id: rec, pid: 6, path: '/var/lib/pofr/spool/1', first_seen: 12 });
      assert.deepEqual(
        (await findFiles(store, { pid: 5 })).map((f) => f.path),
        ['/t\\xff', 'socket:[77]'],
      );
      assert.deepEqual(
        (await findFiles(store, { kind: 'socket' })).map((f) => f.path),
        ['socket:[77]'],
      );
      assert.equal((await findFiles(store, { observer: false })).length, 2);
      assert.equal((await findFiles(store)).length, 3);
      assert.equal((await findFiles(store, { pid: 5 }))[0].path_raw_b64, raw.toString('base64'));
    }));
}
