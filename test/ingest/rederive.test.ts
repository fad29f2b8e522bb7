import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ingestBatch, rederiveHost, verifyStore } from '../../src/ingest/index.js';
import type { PofrRecord, SealedBatch } from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, endpoint, file, inventory, proc, T0, type TestHost } from './host-fixture.js';

const S = 1_000_000;
const b64 = (bytes: number[]) => ({ b64: Buffer.from(bytes).toString('base64') });
const ARGV_RAW = [0x2d, 0x2d, 0x6b, 0x65, 0x79, 0x3d, 0xff, 0xfe]; // "--key=\xff\xfe"
const PATH_RAW = [0x2f, 0x74, 0x6d, 0x70, 0x2f, 0xc3, 0x28]; // "/tmp/\xc3("
const USERS = [
  { uid: 0, gid: 0, name: 'root', home: '/root', shell: '/bin/bash' },
  { uid: 0, gid: 0, name: 'toor', home: '/root', shell: '/bin/sh' },
  { uid: 1000, gid: 1000, name: 'alice', home: '/home/alice', shell: '/bin/bash' },
];

async function apply(store: Store, host: TestHost, batch: SealedBatch, receivedAt: number) {
  const r = await ingestBatch(store, batch.bytes, { principal: host.hostId, receivedAt });
  assert.equal(r.status, 'accepted', JSON.stringify(r));
  return r;
}

/**
 * A host's history with every kind of record: exec, exit, file open/close, endpoint state changes, a
 * recorder gap, a keyframe that closes what it does not list, two inventory versions, non-UTF-8
 * argv, exe, cwd and paths, and batch 3 lost in transit and delivered after batch 5. Plus another
 * host, whose rows must not mix in.
 */
async function storeHistory(store: Store): Promise<{ host: TestHost; other: TestHost }> {
  const host = await addHost(store, { name: 'web1' });
  const b1 = host.next([
    inventory(T0, { users: USERS }),
    { type: 'process_start', t: T0 + S, proc: proc(100, 5, { comm: 'bash', argv: ['bash'], ruid: 1000 }) },
    {
      type: 'process_start',
      t: T0 + S,
      proc: proc(200, 7, {
        ppid: 100,
        parent_start_ticks: 5,
        comm: 'tool',
        exe: b64([0x2f, 0x78, 0xff]),
        argv: ['tool', b64(ARGV_RAW)],
        cwd: b64(PATH_RAW),
      }),
    },
    // No parent_start_ticks: its parent is found by pid; ruid 0 has two names.
    {
      type: 'process_start',
      t: T0 + S,
      proc: proc(250, 9, { ppid: 100, comm: 'sleep', argv: ['sleep', '9'] }),
    },
    { type: 'file_open', t: T0 + S, file: file(200, 7, 3, '', { path: b64(PATH_RAW) }) },
    { type: 'file_open', t: T0 + S, file: file(200, 7, 4, '/etc/passwd') },
    {
      type: 'endpoint_open',
      t: T0 + S,
      endpoint: endpoint('tcp:a', { pid: 200, start_ticks: 7, state: 'SYN_SENT' }),
    },
    {
      type: 'endpoint_open',
      t: T0 + S,
      endpoint: endpoint('udp:b', { proto: 'udp', state: 'UNCONN', inode: 99, local_port: 53 }),
    },
  ]);
  const b2 = host.next([
    { type: 'endpoint_state', t: T0 + 2 * S, key: 'tcp:a', state: 'ESTABLISHED' },
    {
      type: 'process_exec',
      t: T0 + 2 * S,
      proc: proc(200, 7, { ppid: 100, parent_start_ticks: 5, comm: 'curl', argv: ['curl', 'http://x'] }),
    },
    { type: 'file_close', t: T0 + 3 * S, pid: 200, start_ticks: 7, fd: 4 },
    { type: 'file_open', t: T0 + 3 * S, file: file(200, 7, 5, '/tmp/out') },
    { type: 'gap', t: T0 + 3 * S, from: T0 + 2 * S, to: T0 + 3 * S, reason: 'reader overrun', dropped: 12 },
  ]);
  const b3 = host.next([
    { type: 'process_start', t: T0 + 4 * S, proc: proc(300, 400, { ppid: 200, parent_start_ticks: 7 }) },
    { type: 'file_open', t: T0 + 4 * S, file: file(300, 400, 3, '/tmp/y') },
    { type: 'process_exit', t: T0 + 5 * S, pid: 300, start_ticks: 400 },
  ]);
  const curl = proc(200, 7, { ppid: 100, parent_start_ticks: 5, comm: 'curl', argv: ['curl', 'http://x'] });
  const b4 = host.next([
    {
      type: 'keyframe',
      t: T0 + 10 * S,
      processes: [proc(100, 5, { comm: 'bash', argv: ['bash'], ruid: 1000 }), curl],
      files: [
        file(200, 7, 3, '', { path: b64(PATH_RAW) }),
        file(200, 7, 5, '/tmp/out'),
        file(100, 5, 1, '/dev/pts/0'),
      ],
      endpoints: [endpoint('tcp:a', { pid: 200, start_ticks: 7, state: 'CLOSE_WAIT' })],
    },
  ]);
  const b5 = host.next([
    inventory(T0 + 11 * S, {
      users: [
        USERS[0],
        USERS[1],
        { ...USERS[2], shell: '/bin/zsh' },
        { uid: 1001, gid: 1001, name: 'bob', home: '/home/bob', shell: '/bin/sh' },
      ],
      interfaces: [{ name: 'eth0', mac: '52:54:00:00:00:01', addresses: ['10.0.0.2/24', '10.0.0.3/24'] }],
    }),
    { type: 'process_exit', t: T0 + 12 * S, pid: 200, start_ticks: 7 },
    { type: 'endpoint_close', t: T0 + 12 * S, key: 'tcp:a' },
  ]);
  // Batch 3 arrives last: the store applied it after 4 and 5, and the replay must too.
  const arrival = [b1, b2, b4, b5, b3];
  for (let i = 0; i < arrival.length; i++) await apply(store, host, arrival[i], T0 + (100 + i) * S);

  const other = await addHost(store, { name: 'db1' });
  await apply(
    store,
    other,
    other.next([
      { type: 'process_start', t: T0, proc: proc(200, 7, { comm: 'postgres' }) },
      { type: 'file_open', t: T0, file: file(200, 7, 3, '', { path: b64(PATH_RAW) }) },
    ] satisfies PofrRecord[]),
    T0 + 50 * S,
  );
  return { host, other };
}

async function storedRows(store: Store, hostId: string): Promise<number> {
  let n = 0;
  for (const table of [
    'processes',
    'file_opens',
    'endpoints',
    'endpoint_states',
    'users',
    'groups',
    'interfaces',
    'routes',
    'devices',
    'dns_queries',
    'cred_changes',
  ] as const) {
    const r = await store.db
      .selectFrom(table)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('host_id', '=', hostId)
      .executeTakeFirstOrThrow();
    n += Number(r.n);
  }
  const gaps = await store.db
    .selectFrom('gaps')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('host_id', '=', hostId)
    .where('kind', '=', 'recorder')
    .executeTakeFirstOrThrow();
  return n + Number(gaps.n);
}

interface Tamper {
  readonly name: string;
  readonly edit: (store: Store, hostId: string) => Promise<unknown>;
  readonly table: string;
  readonly detail: RegExp;
}

const TAMPERS: readonly Tamper[] = [
  {
    name: 'an UPDATE of processes.argv',
    edit: (store, hostId) =>
      store.db
        .updateTable('processes')
        .set({ argv: '["curl","http://benign.example"]' })
        .where('host_id', '=', hostId)
        .where('pid', '=', 200)
        .where('exec_index', '=', 1)
        .execute(),
    table: 'processes',
    detail:
      /pid 200 start_ticks 7 exec_index 1 comm "curl": argv is .*benign.* in the store but .*http:\/\/x/,
  },
  {
    name: 'a DELETE of a file_opens row',
    edit: (store, hostId) =>
      store.db.deleteFrom('file_opens').where('host_id', '=', hostId).where('pid', '=', 300).execute(),
    table: 'file_opens',
    detail: /pid 300 fd 3 .*"\/tmp\/y" derives from the evidence but is missing from the store/,
  },
  {
    name: 'an UPDATE of endpoints.remote_ip',
    edit: (store, hostId) =>
      store.db
        .updateTable('endpoints')
        .set({ remote_ip: '198.51.100.66' })
        .where('host_id', '=', hostId)
        .where('key', '=', 'tcp:a')
        .execute(),
    table: 'endpoints',
    detail: /key "tcp:a".*remote_ip is "198\.51\.100\.66" in the store but "192\.0\.2\.7" in the evidence/,
  },
  {
    name: 'an UPDATE of the bytes of processes.argv_raw',
    edit: (store, hostId) => {
      const bytes = Buffer.concat([Buffer.from('tool\0'), Buffer.from(ARGV_RAW), Buffer.from([0])]);
      bytes[7] = 0x4b; // --key → --Key, display text untouched
      return store.db
        .updateTable('processes')
        .set({ argv_raw: bytes })
        .where('host_id', '=', hostId)
        .where('pid', '=', 200)
        .where('exec_index', '=', 0)
        .execute();
    },
    table: 'processes',
    detail:
      /pid 200 start_ticks 7 exec_index 0 comm "tool": argv_raw is 0x746f6f6c002d2d4b65793dfffe00 in the store but 0x746f6f6c002d2d6b65793dfffe00 in the evidence/,
  },
  {
    name: 'an INSERT of a forged process',
    edit: async (store, hostId) => {
      const real = await store.db
        .selectFrom('processes')
        .selectAll()
        .where('host_id', '=', hostId)
        .where('pid', '=', 100)
        .executeTakeFirstOrThrow();
      const { id: _id, ...row } = real;
      await store.db
        .insertInto('processes')
        .values({ ...row, pid: 666, comm: 'innocent', argv: '["innocent"]', cmdline: 'innocent' })
        .execute();
    },
    table: 'processes',
    detail: /pid 666 .*comm "innocent" is in the store but the evidence does not derive it/,
  },
  {
    name: 'an UPDATE of users.name',
    edit: (store, hostId) =>
      store.db
        .updateTable('users')
        .set({ name: 'mallory' })
        .where('host_id', '=', hostId)
        .where('name', '=', 'alice')
        .where('valid_to', 'is', null)
        .execute(),
    table: 'users',
    detail: /uid 1000 .*name is "mallory" in the store but "alice" in the evidence/,
  },
];

for (const dialect of DIALECTS) {
  test(`[${dialect}] a clean store re-derives every row of every table with no mismatch`, (t) =>
    withStore(t, dialect, async (store) => {
      const { host, other } = await storeHistory(store);
      const chain = await store.db
        .selectFrom('batches')
        .select(['seq', 'chain'])
        .where('host_id', '=', host.hostId)
        .orderBy('seq')
        .execute();
      assert.deepEqual(
        chain.map((b) => [Number(b.seq), b.chain]),
        [
          [1, 'genesis'],
          [2, 'ok'],
          [3, 'ok'],
          [4, 'gap'],
          [5, 'ok'],
        ],
        'batch 3 filled a recorded gap',
      );
      const r = await rederiveHost(store, host.hostId);
      assert.deepEqual(r.mismatches, []);
      assert.equal(r.tables, 14);
      assert.equal(r.rows, await storedRows(store, host.hostId), 'every stored row was compared');
      assert.equal(r.rows, 27);
      const closed = await store.db
        .selectFrom('processes')
        .select(['pid', 'end_reason', 'user'])
        .where('host_id', '=', host.hostId)
        .orderBy('pid')
        .execute();
      assert.deepEqual(
        closed.map((p) => [Number(p.pid), p.end_reason, p.user]),
        [
          [100, null, 'alice'],
          [200, 'exec', 'root'],
          [200, 'exit', 'root'],
          [250, 'keyframe', 'root'],
          [300, 'exit', 'root'],
        ],
        'the history holds an exec, exits and a keyframe close; uid 0 reads as root, not toor',
      );
      assert.deepEqual((await rederiveHost(store, other.hostId)).mismatches, []);
      for (const rederive of [true, false]) {
        const reports = await verifyStore(store, { rederive });
        assert.deepEqual(reports.map((x) => [x.host, x.ok, x.failures]).sort(), [
          ['db1', true, []],
          ['web1', true, []],
        ]);
      }
    }));

  for (const tamper of TAMPERS) {
    test(`[${dialect}] re-derivation catches ${tamper.name}; the evidence-only check does not`, (t) =>
      withStore(t, dialect, async (store) => {
        const { host, other } = await storeHistory(store);
        await tamper.edit(store, host.hostId);
        const r = await rederiveHost(store, host.hostId);
        assert.equal(r.mismatches.length, 1, JSON.stringify(r.mismatches));
        const [m] = r.mismatches;
        assert.equal(m.table, tamper.table);
        assert.match(m.detail, tamper.detail);

        const [full] = await verifyStore(store, { hostId: host.hostId });
        assert.equal(full.ok, false);
        assert.deepEqual(full.failures, [{ seq: m.seq, code: 'POFR_VERIFY_FAILED', reason: m.detail }]);
        const [quick] = await verifyStore(store, { hostId: host.hostId, rederive: false });
        assert.equal(quick.ok, true, 'the evidence itself is intact');
        assert.equal(
          (await verifyStore(store, { hostId: other.hostId }))[0].ok,
          true,
          'other host unaffected',
        );
      }));
  }

  test(`[${dialect}] a re-derived row names the batch that created it`, (t) =>
    withStore(t, dialect, async (store) => {
      const { host } = await storeHistory(store);
      await store.db
        .updateTable('file_opens')
        .set({ last_seen: T0 })
        .where('host_id', '=', host.hostId)
        .where('path', '=', '/tmp/out')
        .execute();
      const [m] = (await rederiveHost(store, host.hostId)).mismatches;
      assert.equal(m.seq, 2, m.detail);
      assert.match(
        m.detail,
        /last_seen is \d+ in the store but \d+ in the evidence; file_opens rows: 1 changed$/,
      );
    }));

  test(`[${dialect}] compares a host larger than one chunk, equal-keyed rows included`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const n = 2_300;
      const interfaces = Array.from({ length: n }, (_, i) => ({
        name: `veth${i}`,
        mac: null,
        addresses: [`10.${i >> 8}.${i & 255}.1/32`],
      }));
      const files = Array.from({ length: n }, (_, i) => file(100, 5, i + 3, `/data/f${i}`));
      await apply(
        store,
        host,
        host.next([
          inventory(T0, { interfaces }),
          { type: 'keyframe', t: T0 + S, processes: [proc(100, 5)], files, endpoints: [] },
        ]),
        T0 + 100 * S,
      );
      const clean = await rederiveHost(store, host.hostId);
      assert.deepEqual(clean.mismatches, []);
      assert.ok(clean.rows > 2 * n);

      await store.db
        .updateTable('interfaces')
        .set({ addresses: '["203.0.113.9/32"]' })
        .where('host_id', '=', host.hostId)
        .where('name', '=', 'veth2250')
        .execute();
      await store.db
        .deleteFrom('file_opens')
        .where('host_id', '=', host.hostId)
        .where('fd', '=', 2_290)
        .execute();
      const r = await rederiveHost(store, host.hostId);
      assert.deepEqual(
        r.mismatches.map((m) => m.table),
        ['file_opens', 'interfaces'],
      );
      assert.match(r.mismatches[0].detail, /fd 2290 .* missing from the store/);
      assert.match(
        r.mismatches[1].detail,
        /name "veth2250" .*addresses is "\[\\"203\.0\.113\.9\/32\\"\]" in the store/,
      );
    }));

  test(`[${dialect}] removes its scratch store afterwards, also when it fails`, (t) =>
    withStore(t, dialect, async (store) => {
      const scratchDir = mkdtempSync(join(tmpdir(), 'pofr-scratch-test-'));
      try {
        const { host } = await storeHistory(store);
        assert.deepEqual((await rederiveHost(store, host.hostId, { scratchDir })).mismatches, []);
        assert.deepEqual(readdirSync(scratchDir), []);
        await assert.rejects(rederiveHost(store, 'no-such-host', { scratchDir }), {
          code: 'POFR_HOST_UNKNOWN',
        });
        assert.deepEqual(readdirSync(scratchDir), []);
      } finally {
        rmSync(scratchDir, { recursive: true, force: true });
      }
    }));
}
