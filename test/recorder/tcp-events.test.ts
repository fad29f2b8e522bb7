import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EndpointInfo, PofrRecord, ProcRef } from '../../src/protocol/index.js';
import { LiveState } from '../../src/recorder/index.js';
import type { TcpEvent } from '../../src/recorder/sources/tracefs/kernel-events.js';
import { TcpEvents } from '../../src/recorder/tcp-events.js';

/** TCP state events to endpoint records, on synthetic events as inet_sock_set_state gives them. */
const clock = { wallMicros: (ts: number) => 1_000_000 + ts / 1000 };
const MS = 1e6;
const CLOSE = 7;
const SYN_SENT = 2;
const ESTABLISHED = 1;
const SYN_RECV = 3;
const LISTEN = 10;
const FIN_WAIT1 = 4;

const owners = new Map<number, ProcRef>([
  [50, { pid: 50, start_ticks: 5 }],
  [60, { pid: 60, start_ticks: 6 }],
]);

function setup(live = new LiveState()) {
  const tcp = new TcpEvents({
    live,
    clock,
    ownerOfTid: (tid) => owners.get(tid) ?? null,
    netnsOf: () => 4026531840,
    connectWaitNs: 1000 * MS,
  });
  tcp.beginBatch();
  return { live, tcp };
}

function ev(
  ts: number,
  sk: string,
  oldState: number,
  newState: number,
  lport: number,
  rport: number,
  over: Partial<TcpEvent> = {},
): TcpEvent {
  return {
    kind: 'tcp',
    ts,
    tid: 0,
    interrupt: false,
    sk,
    oldState,
    newState,
    family: 4,
    localIp: '127.0.0.1',
    localPort: lport,
    remoteIp: rport === 0 ? '0.0.0.0' : '127.0.0.1',
    remotePort: rport,
    ...over,
  };
}

const opens = (out: PofrRecord[]) =>
  out.filter((r): r is Extract<PofrRecord, { type: 'endpoint_open' }> => r.type === 'endpoint_open');

test('listen, connect, accept and close: both ends joined to their processes, at the kernel times', () => {
  const { live, tcp } = setup();
  const out: PofrRecord[] = [];
  tcp.handle(ev(1 * MS, 'a', CLOSE, LISTEN, 8080, 0, { tid: 60 }), out);
  // connect(): SYN_SENT fires before the local port is chosen.
  tcp.handle(ev(2 * MS, 'b', CLOSE, SYN_SENT, 0, 8080, { tid: 50 }), out);
  assert.equal(opens(out).length, 1, 'the connect waits for its port');
  tcp.handle(ev(2.1 * MS, 'b', SYN_SENT, ESTABLISHED, 40000, 8080, { tid: 50 }), out);
  // The listener's child socket, in softirq: no useful task, the listener's process accepts it.
  tcp.handle(ev(2.2 * MS, 'c', LISTEN, SYN_RECV, 8080, 40000, { interrupt: true }), out);
  tcp.handle(ev(2.3 * MS, 'c', SYN_RECV, ESTABLISHED, 8080, 40000, { interrupt: true }), out);
  tcp.handle(ev(50 * MS, 'b', ESTABLISHED, FIN_WAIT1, 40000, 8080), out);
  tcp.handle(ev(51 * MS, 'b', FIN_WAIT1, CLOSE, 40000, 8080), out);
  tcp.handle(ev(51 * MS, 'c', ESTABLISHED, CLOSE, 8080, 40000), out);
  const [listener, connect, accepted] = opens(out).map((r) => r.endpoint);
  assert.deepEqual([listener.pid, listener.state, listener.local_port], [60, 'LISTEN', 8080]);
  assert.deepEqual(
    [connect.pid, connect.state, connect.local_port, connect.remote_port],
    [50, 'SYN_SENT', 40000, 8080],
  );
  assert.equal(opens(out)[1].t, clock.wallMicros(2 * MS), 'the connect opens at its own time');
  assert.deepEqual([accepted.pid, accepted.start_ticks, accepted.local_port], [60, 6, 8080]);
  assert.equal(accepted.netns, listener.netns);
  assert.equal(tcp.counts.accepted, 1);
  assert.deepEqual(
    out.filter((r) => r.type === 'endpoint_state').map((r) => (r as { state: string }).state),
    ['ESTABLISHED', 'ESTABLISHED', 'FIN_WAIT1'],
  );
  assert.equal(live.endpoints.size, 1, 'only the listener is left open');
});

test('a refused connect is still recorded, opened and closed, with its process', () => {
  const { tcp } = setup();
  const out: PofrRecord[] = [];
  tcp.handle(ev(1 * MS, 'r', CLOSE, SYN_SENT, 0, 1, { tid: 50 }), out);
  tcp.handle(ev(1.2 * MS, 'r', SYN_SENT, CLOSE, 41354, 1), out);
  assert.deepEqual(
    out.map((r) => r.type),
    ['endpoint_open', 'endpoint_close'],
  );
  assert.equal(opens(out)[0].endpoint.pid, 50);
  assert.equal(opens(out)[0].endpoint.local_port, 41354);
});

test('a connect stuck in SYN_SENT is recorded once it waited too long for its port', () => {
  const { tcp } = setup();
  const out: PofrRecord[] = [];
  tcp.handle(ev(1 * MS, 's', CLOSE, SYN_SENT, 0, 443, { tid: 50, remoteIp: '192.0.2.1' }), out);
  tcp.expire(500 * MS, out);
  assert.equal(out.length, 0);
  tcp.expire(1001 * MS, out);
  assert.equal(opens(out)[0].endpoint.remote_ip, '192.0.2.1');
  assert.equal(opens(out)[0].t, clock.wallMicros(1 * MS));
});

test('a socket older than the recorder is found again by its addresses and followed from there', () => {
  const live = new LiveState();
  const known: EndpointInfo = {
    key: 'tcp4:777',
    pid: 50,
    start_ticks: 5,
    proto: 'tcp',
    family: 4,
    local_ip: '127.0.0.1',
    local_port: 22,
    remote_ip: '127.0.0.1',
    remote_port: 5555,
    state: 'ESTABLISHED',
    inode: 777,
    netns: null,
  };
  live.apply([{ type: 'endpoint_open', t: 1, endpoint: known }]);
  const { tcp } = setup(live);
  const out: PofrRecord[] = [];
  tcp.handle(ev(3 * MS, 'old', ESTABLISHED, FIN_WAIT1, 22, 5555), out);
  tcp.handle(ev(4 * MS, 'old', FIN_WAIT1, CLOSE, 22, 5555), out);
  assert.deepEqual(out, [
    { type: 'endpoint_state', t: clock.wallMicros(3 * MS), key: 'tcp4:777', state: 'FIN_WAIT1' },
    { type: 'endpoint_close', t: clock.wallMicros(4 * MS), key: 'tcp4:777' },
  ]);
  assert.equal(tcp.counts.adopted, 1);
});

test('a connection to a wildcard listener belongs to it; a specific address wins over the wildcard', () => {
  const { tcp } = setup();
  const out: PofrRecord[] = [];
  tcp.handle(ev(1 * MS, 'w', CLOSE, LISTEN, 9000, 0, { tid: 50, localIp: '0.0.0.0' }), out);
  tcp.handle(ev(1 * MS, 'x', CLOSE, LISTEN, 9000, 0, { tid: 60, localIp: '127.0.0.2' }), out);
  tcp.handle(ev(2 * MS, 'c1', LISTEN, SYN_RECV, 9000, 1234, { localIp: '10.1.1.1', interrupt: true }), out);
  tcp.handle(ev(2 * MS, 'c2', LISTEN, SYN_RECV, 9000, 1235, { localIp: '127.0.0.2', interrupt: true }), out);
  const [, , viaWildcard, viaSpecific] = opens(out).map((r) => r.endpoint.pid);
  assert.equal(viaWildcard, 50);
  assert.equal(viaSpecific, 60);
});
