import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openGeoip } from '../../src/enrich/index.js';
import { type IngestResult, ingestBatch, verifyStore } from '../../src/ingest/index.js';
import type { PofrRecord } from '../../src/protocol/index.js';
import { findEndpoints } from '../../src/query/index.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, endpoint, file, inventory, proc, T0, type TestHost } from './host-fixture.js';

const S = 1_000_000; // one second in µs

async function send(
  store: Store,
  host: TestHost,
  records: PofrRecord[],
): Promise<IngestResult & { status: 'accepted' }> {
  const r = await ingestBatch(store, host.next(records).bytes, { principal: host.hostId });
  assert.equal(r.status, 'accepted', JSON.stringify(r));
  return r as IngestResult & { status: 'accepted' };
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] exec closes the running image and opens the next; exit ends it and closes its files`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      await send(store, host, [
        { type: 'process_start', t: T0 + S, proc: proc(100, 5, { argv: ['bash'], comm: 'bash' }) },
        { type: 'file_open', t: T0 + 2 * S, file: file(100, 5, 3, '/etc/passwd') },
        { type: 'file_open', t: T0 + 2 * S, file: file(100, 5, 4, '/tmp/log') },
        { type: 'file_close', t: T0 + 3 * S, pid: 100, start_ticks: 5, fd: 3 },
      ]);
      await send(store, host, [
        {
          type: 'process_exec',
          t: T0 + 4 * S,
          proc: proc(100, 5, { argv: ['curl', 'x'], comm: 'curl', exe: '/usr/bin/curl' }),
        },
        { type: 'file_open', t: T0 + 5 * S, file: file(100, 5, 5, '/etc/hosts') },
        { type: 'process_exit', t: T0 + 6 * S, pid: 100, start_ticks: 5 },
      ]);
      const images = await store.db.selectFrom('processes').selectAll().orderBy('exec_index').execute();
      assert.deepEqual(
        images.map((p) => [p.exec_index, p.cmdline, p.start, p.end, p.end_reason, p.open_ord, p.close_ord]),
        [
          [0, 'bash', T0 + 50_000, T0 + 4 * S, 'exec', 1_000_000, 2_000_000],
          [1, 'curl x', T0 + 4 * S, T0 + 6 * S, 'exit', 2_000_000, 2_000_002],
        ],
      );
      const files = await store.db.selectFrom('file_opens').selectAll().orderBy('fd').execute();
      assert.deepEqual(
        files.map((f) => [f.fd, f.path, f.process_id, f.first_seen, f.last_seen, f.is_open]),
        [
          [3, '/etc/passwd', images[0].id, T0 + 2 * S, T0 + 3 * S, 0],
          [4, '/tmp/log', images[0].id, T0 + 2 * S, T0 + 6 * S, 0], // inherited across exec, closed at exit
          [5, '/etc/hosts', images[1].id, T0 + 5 * S, T0 + 6 * S, 0],
        ],
      );
    }));

  test(`[${dialect}] descriptors opened and changed within one batch end up as if written one record at a time`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const at = (n: number) => T0 + n * S;
      await send(store, host, [
        { type: 'process_start', t: at(1), proc: proc(100, 5) },
        { type: 'process_start', t: at(1), proc: proc(200, 6) },
        { type: 'file_open', t: at(2), file: file(100, 5, 3, '/a') },
        { type: 'file_open', t: at(3), file: file(100, 5, 3, '/a') }, // seen again: last_seen moves
        { type: 'file_open', t: at(4), file: file(100, 5, 3, '/b') }, // close of /a was missed
        { type: 'file_open', t: at(4), file: file(100, 5, 4, '/c') },
        { type: 'file_open', t: at(4), file: file(200, 6, 3, '/kept') },
        {
          type: 'keyframe',
          t: at(5),
          processes: [proc(100, 5), proc(200, 6)],
          files: [file(100, 5, 3, '/b'), file(200, 6, 3, '/kept')], // /c is gone
          endpoints: [],
        },
        { type: 'file_open', t: at(6), file: file(100, 5, 5, '/d') },
        { type: 'process_exit', t: at(7), pid: 100, start_ticks: 5 },
        { type: 'file_open', t: at(7), file: file(200, 6, 4, '/next-batch') },
      ]);
      // The next batch closes a descriptor the previous one opened and left open.
      await send(store, host, [{ type: 'file_close', t: at(8), pid: 200, start_ticks: 6, fd: 4 }]);
      const rows = await store.db
        .selectFrom('file_opens')
        .select(['pid', 'fd', 'path', 'first_seen', 'last_seen', 'is_open'])
        .orderBy('open_ord')
        .orderBy('pid')
        .execute();
      assert.deepEqual(
        rows.map((r) => [
          Number(r.pid),
          Number(r.fd),
          r.path,
          (Number(r.first_seen) - T0) / S,
          (Number(r.last_seen) - T0) / S,
          Number(r.is_open),
        ]),
        [
          [100, 3, '/a', 2, 4, 0],
          [100, 3, '/b', 4, 7, 0],
          [100, 4, '/c', 4, 5, 0],
          [200, 3, '/kept', 4, 5, 1],
          [100, 5, '/d', 6, 7, 0],
          [200, 4, '/next-batch', 7, 8, 0],
        ],
      );
      const [report] = await verifyStore(store);
      assert.equal(report.ok, true, JSON.stringify(report.failures));
    }));

  test(`[${dialect}] a child links to the parent image that ran when it started, even after the parent execs`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      await send(store, host, [
        { type: 'process_start', t: T0, proc: proc(10, 1, { argv: ['sshd'] }) },
        { type: 'process_start', t: T0 + S, proc: proc(20, 100, { ppid: 10, parent_start_ticks: 1 }) },
      ]);
      await send(store, host, [
        { type: 'process_exec', t: T0 + 2 * S, proc: proc(10, 1, { argv: ['sshd', 'reexec'] }) },
        { type: 'process_start', t: T0 + 3 * S, proc: proc(30, 300, { ppid: 10, parent_start_ticks: 1 }) },
        // No parent_start_ticks: the parent is found by pid among the images running at the child's start.
        { type: 'process_start', t: T0 + 3 * S, proc: proc(40, 301, { ppid: 10 }) },
      ]);
      const rows = await store.db
        .selectFrom('processes')
        .select(['id', 'pid', 'exec_index', 'parent_id'])
        .execute();
      const id = (pid: number, ei = 0) => rows.find((r) => r.pid === pid && r.exec_index === ei)?.id;
      assert.equal(rows.find((r) => r.pid === 20)?.parent_id, id(10, 0));
      assert.equal(rows.find((r) => r.pid === 30)?.parent_id, id(10, 1));
      assert.equal(rows.find((r) => r.pid === 40)?.parent_id, id(10, 1));
      assert.equal(
        rows.find((r) => r.pid === 10 && r.exec_index === 1)?.parent_id,
        null,
        'pid 1 was never seen',
      );
    }));

  test(`[${dialect}] endpoints keep their state history and close by key`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      await send(store, host, [
        { type: 'process_start', t: T0, proc: proc(100, 5) },
        {
          type: 'endpoint_open',
          t: T0 + S,
          endpoint: endpoint('tcp:1', { pid: 100, start_ticks: 5, state: 'SYN_SENT' }),
        },
        { type: 'endpoint_state', t: T0 + 2 * S, key: 'tcp:1', state: 'ESTABLISHED' },
      ]);
      await send(store, host, [
        { type: 'endpoint_state', t: T0 + 3 * S, key: 'tcp:1', state: 'FIN_WAIT1' },
        { type: 'endpoint_close', t: T0 + 4 * S, key: 'tcp:1' },
        { type: 'endpoint_open', t: T0 + 5 * S, endpoint: endpoint('tcp:1', { state: 'LISTEN' }) },
      ]);
      const eps = await store.db.selectFrom('endpoints').selectAll().orderBy('id').execute();
      assert.equal(eps.length, 2, 'a reused key after close is a new endpoint');
      const proc100 = await store.db.selectFrom('processes').select('id').executeTakeFirstOrThrow();
      assert.equal(eps[0].process_id, proc100.id);
      assert.deepEqual(
        [eps[0].state, eps[0].first_seen, eps[0].last_seen, eps[0].is_open, eps[0].close_ord],
        ['FIN_WAIT1', T0 + S, T0 + 4 * S, 0, 2_000_001],
      );
      assert.equal(eps[1].is_open, 1);
      const states = await store.db
        .selectFrom('endpoint_states')
        .select(['t', 'state', 'ord'])
        .where('endpoint_id', '=', eps[0].id)
        .orderBy('ord')
        .execute();
      assert.deepEqual(
        states.map((s) => [s.t, s.state]),
        [
          [T0 + S, 'SYN_SENT'],
          [T0 + 2 * S, 'ESTABLISHED'],
          [T0 + 3 * S, 'FIN_WAIT1'],
        ],
      );
    }));

  test(`[${dialect}] an endpoint keeps its network namespace; one from an earlier recorder has none`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const container = 4_026_532_301;
      await send(store, host, [
        {
          type: 'endpoint_open',
          t: T0 + S,
          endpoint: endpoint('tcp4:700', { inode: 700, netns: container }),
        },
        { type: 'endpoint_open', t: T0 + S, endpoint: endpoint('tcp4:701', { inode: 701 }) },
      ]);
      const rows = await findEndpoints(store, {});
      assert.deepEqual(
        rows.map((r) => [r.inode, r.netns === null ? null : Number(r.netns)]),
        [
          [700, container],
          [701, null],
        ],
      );
      const [report] = await verifyStore(store);
      assert.equal(report.ok, true, JSON.stringify(report.failures));
    }));

  test(`[${dialect}] endpoints get the country of their remote address; verify ignores it (not evidence)`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const batch = host.next([
        {
          type: 'endpoint_open',
          t: T0 + S,
          endpoint: endpoint('tcp4:800', { inode: 800, remote_ip: '77.88.55.88' }),
        },
        {
          type: 'endpoint_open',
          t: T0 + S,
          endpoint: endpoint('tcp4:801', {
            inode: 801,
            remote_ip: '0.0.0.0',
            remote_port: 0,
            state: 'LISTEN',
          }),
        },
      ]);
      const r = await ingestBatch(store, batch.bytes, { principal: host.hostId, geo: openGeoip() });
      assert.equal(r.status, 'accepted');
      const all = await findEndpoints(store, {});
      assert.deepEqual(
        all.map((e) => [e.inode, e.country]),
        [
          [800, 'RU'],
          [801, null],
        ],
      );
      assert.deepEqual(
        (await findEndpoints(store, { country: 'ru' })).map((e) => e.inode),
        [800],
      );
      const [report] = await verifyStore(store);
      assert.equal(report.ok, true, JSON.stringify(report.failures));
    }));

  test(`[${dialect}] records naming unknown processes or endpoints create nothing and come back as warnings`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const r = await send(store, host, [
        { type: 'file_open', t: T0, file: file(999, 9, 3, '/x') },
        { type: 'file_open', t: T0, file: file(999, 9, 4, '/y') },
        { type: 'endpoint_state', t: T0, key: 'nope', state: 'CLOSE' },
      ]);
      assert.equal(r.warnings.length, 2);
      assert.match(r.warnings[0], /^2 × file_open for a process the store does not know/);
      assert.match(r.warnings[1], /endpoint_state/);
      const files = await store.db.selectFrom('file_opens').select('id').execute();
      assert.equal(files.length, 0);
    }));

  test(`[${dialect}] a keyframe opens what is missing, refreshes what it lists, closes what it does not list`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      await send(store, host, [
        { type: 'process_start', t: T0, proc: proc(1, 1, { ppid: 0 }) },
        { type: 'process_start', t: T0, proc: proc(100, 5, { parent_start_ticks: 1 }) },
        { type: 'process_start', t: T0, proc: proc(200, 6, { parent_start_ticks: 1 }) },
        { type: 'file_open', t: T0, file: file(100, 5, 3, '/kept') },
        { type: 'file_open', t: T0, file: file(100, 5, 4, '/dropped') },
        { type: 'endpoint_open', t: T0, endpoint: endpoint('kept') },
        { type: 'endpoint_open', t: T0, endpoint: endpoint('dropped') },
      ]);
      const many = Array.from({ length: 3000 }, (_, i) => file(300, 7, 10 + i, `/data/f${i}`));
      const kt = T0 + 10 * S;
      await send(store, host, [
        {
          type: 'keyframe',
          t: kt,
          processes: [
            proc(1, 1, { ppid: 0 }),
            proc(100, 5, { parent_start_ticks: 1 }),
            // New child and grandchild, listed child first: parents must still be inserted first.
            proc(301, 8, { ppid: 300, parent_start_ticks: 7 }),
            proc(300, 7, { parent_start_ticks: 1 }),
          ],
          files: [file(100, 5, 3, '/kept'), ...many],
          endpoints: [endpoint('kept'), endpoint('new', { state: 'LISTEN' })],
        },
      ]);
      const p = await store.db.selectFrom('processes').selectAll().execute();
      const byPid = new Map(p.map((r) => [r.pid, r]));
      assert.equal(p.length, 5);
      assert.deepEqual([byPid.get(200)?.end, byPid.get(200)?.end_reason], [kt, 'keyframe']);
      assert.equal(byPid.get(100)?.end, null);
      assert.equal(byPid.get(300)?.parent_id, byPid.get(1)?.id);
      assert.equal(byPid.get(301)?.parent_id, byPid.get(300)?.id);
      const f = await store.db.selectFrom('file_opens').selectAll().execute();
      assert.equal(f.length, 3002);
      const kept = f.find((r) => r.path === '/kept');
      const dropped = f.find((r) => r.path === '/dropped');
      assert.deepEqual([kept?.is_open, kept?.last_seen, kept?.first_seen], [1, kt, T0]);
      assert.deepEqual([dropped?.is_open, dropped?.last_seen], [0, kt]);
      assert.equal(
        f.filter((r) => r.path.startsWith('/data/') && r.is_open === 1 && r.process_id === byPid.get(300)?.id)
          .length,
        3000,
      );
      const e = await store.db.selectFrom('endpoints').selectAll().execute();
      const ep = new Map(e.map((r) => [r.key, r]));
      assert.deepEqual([ep.get('kept')?.is_open, ep.get('kept')?.last_seen], [1, kt]);
      assert.deepEqual([ep.get('dropped')?.is_open, ep.get('dropped')?.last_seen], [0, kt]);
      assert.deepEqual([ep.get('new')?.is_open, ep.get('new')?.state], [1, 'LISTEN']);
      const newStates = await store.db
        .selectFrom('endpoint_states')
        .select('state')
        .where('endpoint_id', '=', ep.get('new')!.id)
        .execute();
      assert.deepEqual(newStates, [{ state: 'LISTEN' }]);
    }));

  test(`[${dialect}] the first batch of a new boot closes what the old boot left open, at the batch's start`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      await send(store, host, [
        { type: 'process_start', t: T0, proc: proc(100, 5) },
        { type: 'file_open', t: T0, file: file(100, 5, 3, '/old') },
        { type: 'endpoint_open', t: T0, endpoint: endpoint('old') },
      ]);
      const oldBoot = host.bootId;
      host.bootId = 'boot-new';
      const bt = T0 + 100 * S;
      await send(store, host, [
        { type: 'keyframe', t: bt, processes: [proc(100, 5)], files: [], endpoints: [] },
      ]);
      const p = await store.db.selectFrom('processes').selectAll().orderBy('id').execute();
      assert.deepEqual(
        p.map((r) => [r.boot_id, r.end, r.end_reason]),
        [
          [oldBoot, bt, 'reboot'],
          ['boot-new', null, null], // same pid and start_ticks in another boot: another process
        ],
      );
      const f = await store.db.selectFrom('file_opens').selectAll().executeTakeFirstOrThrow();
      assert.deepEqual([f.is_open, f.last_seen], [0, bt]);
      const e = await store.db.selectFrom('endpoints').selectAll().executeTakeFirstOrThrow();
      assert.deepEqual([e.is_open, e.last_seen], [0, bt]);
      const h = await store.db.selectFrom('hosts').select('boot_id').executeTakeFirstOrThrow();
      assert.equal(h.boot_id, 'boot-new');
    }));

  test(`[${dialect}] inventory versions users, groups, interfaces, routes and devices and names process users`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store, { name: 'keeps-its-name' });
      const inv1 = inventory(T0);
      await send(store, host, [
        inv1,
        { type: 'process_start', t: T0 + S, proc: proc(100, 5, { ruid: 1000 }) },
      ]);
      const t2 = T0 + 10 * S;
      await send(store, host, [
        inventory(t2, {
          kernel: '6.2.0-test',
          users: [
            { uid: 0, gid: 0, name: 'root', home: '/root', shell: '/bin/bash' },
            { uid: 1000, gid: 1000, name: 'alicia', home: '/home/alice', shell: '/bin/bash' },
            { uid: 1001, gid: 1001, name: 'bob', home: '/home/bob', shell: '/bin/sh' },
          ],
          devices: [],
        }),
        { type: 'process_start', t: t2 + S, proc: proc(200, 5000, { ruid: 1000, start: t2 + S }) },
      ]);
      const users = await store.db
        .selectFrom('users')
        .select(['uid', 'name', 'valid_from', 'valid_to'])
        .orderBy('uid')
        .orderBy('valid_from')
        .execute();
      assert.deepEqual(
        users.map((u) => [u.uid, u.name, u.valid_from, u.valid_to]),
        [
          [0, 'root', T0, null], // unchanged: untouched
          [1000, 'alice', T0, t2],
          [1000, 'alicia', t2, null],
          [1001, 'bob', t2, null],
        ],
      );
      const devices = await store.db.selectFrom('devices').selectAll().execute();
      assert.deepEqual(
        devices.map((d) => [d.device_id, d.valid_from, d.valid_to]),
        [['1-1', T0, t2]],
      );
      const groups = await store.db.selectFrom('groups').selectAll().execute();
      assert.deepEqual(
        groups.map((g) => [g.name, JSON.parse(g.members), g.valid_to]),
        [['alice', ['alice'], null]],
      );
      assert.equal((await store.db.selectFrom('routes').selectAll().execute()).length, 1);
      assert.equal((await store.db.selectFrom('interfaces').selectAll().execute()).length, 1);
      const h = await store.db.selectFrom('hosts').selectAll().executeTakeFirstOrThrow();
      assert.deepEqual(
        [h.name, h.kernel, h.os, h.timezone, h.machine_id],
        ['keeps-its-name', '6.2.0-test', 'Debian GNU/Linux 12', 'Europe/Paris', 'abc123'],
      );
      const procs = await store.db.selectFrom('processes').select(['pid', 'user']).orderBy('pid').execute();
      assert.deepEqual(procs, [
        { pid: 100, user: 'alice' },
        { pid: 200, user: 'alicia' },
      ]);
    }));

  test(`[${dialect}] a recorder gap record is stored with its time range and reason`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      await send(store, host, [
        { type: 'gap', t: T0 + 5 * S, from: T0, to: T0 + 4 * S, reason: 'spool full', dropped: 42 },
      ]);
      const g = await store.db.selectFrom('gaps').selectAll().executeTakeFirstOrThrow();
      assert.deepEqual([g.kind, g.seq, g.t_from, g.t_to], ['recorder', 1, T0, T0 + 4 * S]);
      assert.match(g.detail, /spool full.*42/);
    }));
}
