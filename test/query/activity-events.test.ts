import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ingestBatch, rederiveHost } from '../../src/ingest/index.js';
import type { PofrRecord } from '../../src/protocol/index.js';
import { cursorOf, findEndpoints, timeline } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, endpoint, proc, T0 } from '../ingest/host-fixture.js';

const S = 1_000_000;
const root = { ruid: 0, euid: 0, rgid: 0, egid: 0 };
const www = { ruid: 33, euid: 33, rgid: 33, egid: 33 };

for (const dialect of DIALECTS) {
  test(`[${dialect}] lookups and id changes are stored per process, shown in the timeline and beside the endpoints opened after`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store);
      const records: PofrRecord[] = [
        { type: 'process_start', t: T0 + S, proc: proc(100, 5, { comm: 'curl', argv: ['curl', 'x'] }) },
        { type: 'process_start', t: T0 + S, proc: proc(200, 6, { comm: 'nginx', argv: ['nginx'] }) },
        {
          type: 'dns_query',
          t: T0 + 2 * S,
          pid: 100,
          start_ticks: 5,
          func: 'getaddrinfo',
          name: 'old.example',
        },
        {
          type: 'dns_query',
          t: T0 + 3 * S,
          pid: 100,
          start_ticks: 5,
          func: 'getaddrinfo',
          name: 'c2.example',
        },
        {
          type: 'endpoint_open',
          t: T0 + 4 * S,
          endpoint: endpoint('k1', { pid: 100, start_ticks: 5 }),
        },
        // Looked up after the connection opened: not its name.
        {
          type: 'dns_query',
          t: T0 + 5 * S,
          pid: 100,
          start_ticks: 5,
          func: 'gethostbyname_r',
          name: 'later.example',
        },
        // nginx looked nothing up; its endpoint has no name.
        {
          type: 'endpoint_open',
          t: T0 + 4 * S,
          endpoint: endpoint('k2', { pid: 200, start_ticks: 6, remote_port: 80, inode: 99 }),
        },
        // A name that is not UTF-8 keeps its bytes.
        {
          type: 'dns_query',
          t: T0 + 6 * S,
          pid: 200,
          start_ticks: 6,
          func: 'getaddrinfo',
          name: { b64: Buffer.from([0x61, 0xff]).toString('base64') },
        },
        {
          type: 'cred_change',
          t: T0 + 7 * S,
          pid: 200,
          start_ticks: 6,
          call: 'setresuid',
          old: root,
          new: www,
        },
        // A process the store does not know: kept, without a process row.
        {
          type: 'dns_query',
          t: T0 + 8 * S,
          pid: 300,
          start_ticks: 9,
          func: 'getaddrinfo',
          name: 'orphan.example',
        },
      ];
      const r = await ingestBatch(store, host.next(records).bytes, { principal: host.hostId });
      assert.equal(r.status, 'accepted', JSON.stringify(r));

      const eps = await findEndpoints(store);
      assert.deepEqual(
        eps.map((e) => [e.pid, e.looked_up]),
        [
          [100, 'c2.example'],
          [200, null],
        ],
      );

      const events = await timeline(store, { kinds: ['dns_query', 'cred_change'] });
      assert.deepEqual(
        events.map((e) => [
          e.kind,
          e.pid,
          e.kind === 'dns_query' ? e.name : e.kind === 'cred_change' ? e.call : '',
        ]),
        [
          ['dns_query', 100, 'old.example'],
          ['dns_query', 100, 'c2.example'],
          ['dns_query', 100, 'later.example'],
          ['dns_query', 200, 'a\\xff'],
          ['cred_change', 200, 'setresuid'],
          ['dns_query', 300, 'orphan.example'],
        ],
      );
      const cred = events.find((e) => e.kind === 'cred_change');
      assert.ok(cred && cred.kind === 'cred_change');
      assert.deepEqual([cred.old_euid, cred.new_euid, cred.comm], [0, 33, 'nginx']);
      assert.match(cred.summary, /euid 0 → 33/);
      const raw = events.find((e) => e.kind === 'dns_query' && e.pid === 200);
      assert.ok(raw && raw.kind === 'dns_query');
      assert.equal(raw.name_raw_b64, Buffer.from([0x61, 0xff]).toString('base64'));
      const orphan = events.at(-1);
      assert.ok(orphan && orphan.kind === 'dns_query');
      assert.equal(orphan.process_id, null);

      // Pages: the second starts after the first's last event.
      const first = await timeline(store, { kinds: ['dns_query', 'cred_change'], limit: 2 });
      const next = await timeline(store, {
        kinds: ['dns_query', 'cred_change'],
        limit: 2,
        after: cursorOf(first[1]),
      });
      assert.deepEqual(
        next.map((e) => e.time),
        [T0 + 5 * S, T0 + 6 * S],
      );
      assert.deepEqual((await timeline(store, { kinds: ['dns_query'], pid: 200 })).length, 1);

      // pofr verify re-derives both tables: an edited name or id is found.
      assert.deepEqual((await rederiveHost(store, host.hostId)).mismatches, []);
      await store.db
        .updateTable('dns_queries')
        .set({ name: 'benign.example' })
        .where('name', '=', 'c2.example')
        .execute();
      await store.db.updateTable('cred_changes').set({ new_euid: 0 }).execute();
      const after = await rederiveHost(store, host.hostId);
      assert.deepEqual(after.mismatches.map((m) => m.table).sort(), ['cred_changes', 'dns_queries']);
    }));
}
