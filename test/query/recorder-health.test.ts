import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ingestBatch } from '../../src/ingest/index.js';
import type { PofrRecord } from '../../src/protocol/index.js';
import { type HostHealthInput, hostStates, judgeHost, timeline } from '../../src/query/index.js';
import type { Store } from '../../src/store/index.js';
import { crashRecord, heartbeatRecord, startRecord } from '../helpers/recorder-records.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { addHost, proc, T0, type TestHost } from '../ingest/host-fixture.js';

const S = 1_000_000;
const MS = 1000;

test('judgeHost: late after two heartbeats and a batch delay without a batch, silent after ten', () => {
  const h: HostHealthInput = {
    status: 'approved',
    enrolled_at: T0,
    approved_at: T0,
    revoked_at: null,
    first_seen: T0,
    last_batch_at: T0 + 100 * S,
    promise: { heartbeat_ms: 1000, batch_ms: 100 },
    started_at: T0 + 5 * S,
  };
  const at = (after: number) => judgeHost(h, T0 + 100 * S + after);
  assert.deepEqual(at(0), { state: 'recording', since: T0 + 5 * S });
  assert.deepEqual(at(2100 * MS - 1), { state: 'recording', since: T0 + 5 * S });
  assert.deepEqual(at(2100 * MS), { state: 'late', since: T0 + 100 * S + 2100 * MS });
  assert.deepEqual(at(10_100 * MS), { state: 'silent', since: T0 + 100 * S + 10_100 * MS });
  // A recorder that never promised: the defaults (30 s heartbeats, 5 s batches).
  assert.equal(judgeHost({ ...h, promise: null }, T0 + 100 * S + 64 * S).state, 'recording');
  assert.equal(judgeHost({ ...h, promise: null }, T0 + 100 * S + 65 * S).state, 'late');
  assert.equal(judgeHost({ ...h, promise: null }, T0 + 100 * S + 305 * S).state, 'silent');
  assert.deepEqual(judgeHost({ ...h, status: 'revoked', revoked_at: T0 + 7 }, T0), {
    state: 'revoked',
    since: T0 + 7,
  });
  assert.deepEqual(judgeHost({ ...h, status: 'pending' }, T0), { state: 'pending', since: T0 });
  assert.deepEqual(judgeHost({ ...h, last_batch_at: null }, T0), { state: 'waiting', since: T0 });
});

async function send(store: Store, host: TestHost, records: PofrRecord[], receivedAt: number) {
  const r = await ingestBatch(store, host.next(records).bytes, { principal: host.hostId, receivedAt });
  assert.equal(r.status, 'accepted', JSON.stringify(r));
}

for (const dialect of DIALECTS) {
  test(`[${dialect}] hostStates judges each host by the heartbeat its recorder promised, and says how it stopped`, (t) =>
    withStore(t, dialect, async (store) => {
      const fast = await addHost(store, { name: 'fast' });
      const old = await addHost(store, { name: 'old' });
      const idle = await addHost(store, { name: 'idle' });
      const R = T0 + 60 * S;
      await send(store, fast, [startRecord(T0, { heartbeat_ms: 1000, batch_ms: 100, pid: 77 })], T0 + S);
      await send(store, fast, [heartbeatRecord(R - S, { heartbeat_ms: 2000, batch_ms: 100 })], R);
      await send(
        store,
        fast,
        [{ type: 'recorder_stop', t: R, pid: 77, reason: 'signal', signal: 'SIGTERM' }],
        R,
      );
      await send(store, old, [{ type: 'process_start', t: T0, proc: proc(1, 1) }], R);

      const at = async (now: number) => hostStates(store, { now });
      let s = (await at(R + S)).get(fast.hostId)!;
      assert.equal(s.state, 'recording');
      assert.equal(s.heartbeat_ms, 2000, 'the latest promise counts: the heartbeat after the start');
      assert.equal(s.since, T0, 'recording since its start');
      assert.deepEqual(s.started, { t: T0, pid: 77, version: '0.1.0', config_hash: 'a'.repeat(64) });
      assert.deepEqual(s.stopped, { t: R, reason: 'signal', signal: 'SIGTERM' });
      s = (await at(R + 4100 * MS)).get(fast.hostId)!;
      assert.deepEqual([s.state, s.since, s.last_heard], ['late', R + 4100 * MS, R]);
      assert.match(
        s.detail,
        /no batch for over 2 heartbeats \(every 2 s\); its recorder stopped cleanly \(SIGTERM\)/,
      );
      s = (await at(R + 20_100 * MS)).get(fast.hostId)!;
      assert.equal(s.state, 'silent');

      const o = (await at(R + 10 * S)).get(old.hostId)!;
      assert.equal(o.state, 'recording');
      assert.equal(o.heartbeat_ms, 30_000);
      assert.match(o.detail, /assumed/);
      assert.equal((await at(R + 65 * S)).get(old.hostId)!.state, 'late');
      assert.equal((await at(R)).get(idle.hostId)!.state, 'waiting');
      const only = await hostStates(store, { now: R, hosts: [old.hostId] });
      assert.deepEqual([...only.keys()], [old.hostId]);
    }));

  test(`[${dialect}] the timeline shows starts, stops and crashes, names a changed configuration, and heartbeats only when asked`, (t) =>
    withStore(t, dialect, async (store) => {
      const host = await addHost(store, { name: 'web1' });
      await send(store, host, [startRecord(T0), { type: 'process_start', t: T0, proc: proc(100, 1) }], T0);
      await send(store, host, [heartbeatRecord(T0 + 30 * S)], T0 + 31 * S);
      await send(
        store,
        host,
        [
          crashRecord(T0 + 50 * S, T0 + 31 * S),
          startRecord(T0 + 50 * S, {
            pid: 600,
            config_hash: 'b'.repeat(64),
            config: { interval_ms: 5000, batch_ms: 5000, sources: ['procfs', 'inventory'] },
          }),
        ],
        T0 + 51 * S,
      );
      await send(
        store,
        host,
        [{ type: 'recorder_stop', t: T0 + 60 * S, pid: 600, reason: 'deregister', signal: 'SIGTERM' }],
        T0 + 61 * S,
      );

      const all = await timeline(store, {});
      assert.deepEqual(
        all.map((e) => e.kind),
        ['recorder_start', 'process_start', 'gap', 'recorder_crash', 'recorder_start', 'recorder_stop'],
      );
      const [first, , gap, crash, restart, stop] = all;
      assert.match(
        first.summary,
        /^recorder started: pofr 0\.1\.0, pid 500, config aaaaaaaaaaaa; sources procfs:sampling$/,
      );
      assert.equal(gap.kind === 'gap' && gap.gap_kind, 'crash');
      assert.equal(gap.time, T0 + 31 * S, 'the blind window starts at the last write');
      assert.ok(crash.kind === 'recorder_crash');
      assert.equal(crash.t_from, T0 + 31 * S);
      assert.equal(crash.t_to, T0 + 50 * S);
      assert.equal(crash.recovered_records, 5);
      assert.match(
        crash.summary,
        /after a crash: the recorder ended without a clean stop \(pid 500\), blind for 19\.0 s since its last write; recovered 5 records/,
      );
      assert.ok(restart.kind === 'recorder_start');
      assert.deepEqual(restart.config_changed, ['interval_ms: 1000 → 5000']);
      assert.match(restart.summary, /CONFIGURATION CHANGED \(interval_ms: 1000 → 5000\)/);
      assert.match(stop.summary, /the host was deregistered/);

      const beats = await timeline(store, { kinds: ['recorder_heartbeat'] });
      assert.deepEqual(
        beats.map((e) => [e.kind, e.time]),
        [['recorder_heartbeat', T0 + 30 * S]],
      );
      assert.match(beats[0].summary, /recorder alive \(pid 500, up 30\.0 s, spool 0 batches\)/);
      const ofPid = await timeline(store, { pid: 4242 });
      assert.ok(
        ofPid.some((e) => e.kind === 'recorder_crash'),
        'a pid filter keeps what concerns the whole host',
      );
      const window = await timeline(store, { from: T0 + 55 * S, kinds: ['recorder_start', 'recorder_stop'] });
      assert.deepEqual(
        window.map((e) => e.kind),
        ['recorder_stop'],
      );
    }));
}
