import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromWireBytes, toWireBytes } from '../../src/protocol/index.js';
import {
  classifyFdTarget,
  formatIpv6,
  isKernelThread,
  listTgids,
  parseNetTable,
  parseStat,
  readBootId,
  readBootTimeMicros,
  readCmdline,
  readCwd,
  readExe,
  readFdTable,
  readNetns,
  readNetTables,
  readSchedRunNs,
  readStat,
  readStatus,
  socketInode,
  splitCmdline,
} from '../../src/recorder/index.js';
import { FIXTURE_PROC } from './proc-tree.js';

test('lists only the numeric directories of the proc root', () => {
  assert.deepEqual(
    listTgids(FIXTURE_PROC).sort((a, b) => a - b),
    [2, 100, 101],
  );
});

test('stat: comm with parens, spaces and a newline ends at the last paren', () => {
  const st = readStat(FIXTURE_PROC, 100);
  assert.ok(typeof st === 'object');
  assert.equal(st.pid, 100);
  assert.deepEqual(st.comm, Buffer.from('x) (y\nz'));
  assert.equal(st.state, 'S');
  assert.equal(st.ppid, 1);
  assert.equal(st.startTicks, 5000);
  assert.equal(st.cpuTicks, 15);
  assert.equal(st.numThreads, 1);
  assert.notEqual(st.execSignature, 0);
  assert.equal(isKernelThread(st), false);
});

test('stat: kernel threads are recognised by PF_KTHREAD, and hidden exec addresses give signature 0', () => {
  const st = readStat(FIXTURE_PROC, 2);
  assert.ok(typeof st === 'object');
  assert.equal(isKernelThread(st), true);
  assert.equal(st.execSignature, 0);
});

test('stat: a comm made only of parens still parses, a truncated line does not', () => {
  const line = '7 ()()) R 3 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 4 0 99 0 0 0 0 0 0';
  const st = parseStat(Buffer.from(line));
  assert.ok(st);
  assert.deepEqual(st.comm, Buffer.from(')()'));
  assert.equal(st.ppid, 3);
  assert.equal(st.startTicks, 99);
  assert.equal(st.numThreads, 4);
  assert.equal(parseStat(Buffer.from('7 (x) R 3 7')), null);
});

test('a missing process reads as gone, not as an error', () => {
  assert.equal(readStat(FIXTURE_PROC, 999_999), 'gone');
  assert.equal(readStatus(FIXTURE_PROC, 999_999), 'gone');
  assert.equal(readCmdline(FIXTURE_PROC, 999_999), 'gone');
  assert.equal(readFdTable(FIXTURE_PROC, 999_999), 'gone');
  assert.equal(readSchedRunNs(FIXTURE_PROC, 999_999), 'gone');
});

test('status: real and effective uid and gid, tgid and ppid', () => {
  assert.deepEqual(readStatus(FIXTURE_PROC, 100), {
    tgid: 100,
    ppid: 1,
    ruid: 1000,
    euid: 1001,
    rgid: 100,
    egid: 101,
  });
});

test('cmdline: invalid UTF-8 survives, empty args are kept, a missing trailing NUL loses nothing', () => {
  const argv = readCmdline(FIXTURE_PROC, 100);
  assert.ok(Array.isArray(argv));
  assert.deepEqual(
    argv.map((a) => a.toString('latin1')),
    ['prog', '--name=\xff\xfe', '', 'last'],
  );
  const wire = argv.map(toWireBytes);
  assert.equal(wire[0], 'prog');
  assert.deepEqual(fromWireBytes(wire[1]), Buffer.from([...Buffer.from('--name='), 0xff, 0xfe]));
  assert.deepEqual(readCmdline(FIXTURE_PROC, 2), []);
  assert.deepEqual(splitCmdline(Buffer.from('a\0b\0')).map(String), ['a', 'b']);
});

test('exe and cwd are raw bytes; a kernel thread has no exe', () => {
  assert.deepEqual(readExe(FIXTURE_PROC, 100), Buffer.from('/usr/bin/prog'));
  assert.deepEqual(
    readCwd(FIXTURE_PROC, 100),
    Buffer.from([...Buffer.from('/home/'), 0xff, ...Buffer.from('dir')]),
  );
  assert.equal(readExe(FIXTURE_PROC, 2), null);
});

test('fd table: every fd with its raw target, classified by kind', () => {
  const fds = readFdTable(FIXTURE_PROC, 100);
  assert.ok(fds instanceof Map);
  assert.deepEqual(
    [...fds.keys()].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5],
  );
  const kinds = [...fds.entries()].sort((a, b) => a[0] - b[0]).map(([, t]) => classifyFdTarget(t));
  assert.deepEqual(kinds, ['dev', 'socket', 'pipe', 'anon', 'file', 'file']);
  assert.equal(socketInode(fds.get(1)!), 5001);
  assert.deepEqual(toWireBytes(fds.get(4)!), {
    b64: Buffer.from('/tmp/caf\xe9.txt', 'latin1').toString('base64'),
  });
  assert.equal(toWireBytes(fds.get(5)!), '/tmp/ünïcode');
  assert.equal(
    classifyFdTarget(Buffer.from('/srv'), () => true),
    'dir',
  );
  assert.equal(classifyFdTarget(Buffer.from('net:[4026531840]')), 'other');
});

test('schedstat: the first field is run time in ns', () => {
  assert.equal(readSchedRunNs(FIXTURE_PROC, 100), 5_000_000);
});

test('net tables of a directory that cannot be read are null, not an empty namespace', () => {
  assert.equal(readNetTables(`${FIXTURE_PROC}/999999/net`, null), null);
});

test('readNetns names the namespace of a live process, and null for one that is gone', () => {
  const own = readNetns('/proc', 'self');
  assert.ok(own !== null && own > 0, 'this process has a network namespace');
  assert.equal(readNetns('/proc', process.pid), own);
  assert.equal(readNetns('/proc', 2 ** 22 + 1), null);
});

test('net tables: IPv4 and IPv6 addresses, ports, state names, inodes, tagged with their namespace', () => {
  const rows = readNetTables(`${FIXTURE_PROC}/net`, 4026531840);
  assert.deepEqual(rows, [
    {
      proto: 'tcp',
      family: 4,
      localIp: '127.0.0.1',
      localPort: 8080,
      remoteIp: '0.0.0.0',
      remotePort: 0,
      state: 'LISTEN',
      inode: 5001,
      netns: 4026531840,
    },
    {
      proto: 'tcp',
      family: 4,
      localIp: '127.0.0.1',
      localPort: 8080,
      remoteIp: '127.0.0.1',
      remotePort: 54321,
      state: 'TIME_WAIT',
      inode: 0,
      netns: 4026531840,
    },
    {
      proto: 'tcp',
      family: 6,
      localIp: '::1',
      localPort: 50000,
      remoteIp: '2001:db8::1',
      remotePort: 443,
      state: 'ESTABLISHED',
      inode: 5002,
      netns: 4026531840,
    },
    {
      proto: 'tcp',
      family: 6,
      localIp: '::ffff:127.0.0.1',
      localPort: 8081,
      remoteIp: '::ffff:127.0.0.2',
      remotePort: 57344,
      state: 'ESTABLISHED',
      inode: 0,
      netns: 4026531840,
    },
    {
      proto: 'udp',
      family: 4,
      localIp: '0.0.0.0',
      localPort: 53,
      remoteIp: '0.0.0.0',
      remotePort: 0,
      state: 'UNCONN',
      inode: 5003,
      netns: 4026531840,
    },
    {
      proto: 'udp',
      family: 4,
      localIp: '127.0.0.1',
      localPort: 40000,
      remoteIp: '127.0.0.1',
      remotePort: 53,
      state: 'ESTABLISHED',
      inode: 6001,
      netns: 4026531840,
    },
  ]);
});

test('net tables: every TCP state code has its kernel name', () => {
  const names = Array.from({ length: 12 }, (_, i) => {
    const st = (i + 1).toString(16).toUpperCase().padStart(2, '0');
    const text = `hdr\n   0: 0100007F:0050 0100007F:0051 ${st} 00000000:00000000 00:00000000 00000000 0 0 1 1\n`;
    return parseNetTable(text, 'tcp', 4)[0].state;
  });
  assert.deepEqual(names, [
    'ESTABLISHED',
    'SYN_SENT',
    'SYN_RECV',
    'FIN_WAIT1',
    'FIN_WAIT2',
    'TIME_WAIT',
    'CLOSE',
    'CLOSE_WAIT',
    'LAST_ACK',
    'LISTEN',
    'CLOSING',
    'NEW_SYN_RECV',
  ]);
});

test('IPv6 text follows RFC 5952: longest zero run compressed, lowercase', () => {
  const b = (hex: string) => Uint8Array.from(Buffer.from(hex, 'hex'));
  assert.equal(formatIpv6(b('20010db8000000010000000000000001')), '2001:db8:0:1::1');
  assert.equal(formatIpv6(b('fe800000000000000000000000000000')), 'fe80::');
  assert.equal(formatIpv6(b('00000000000000000000000000000000')), '::');
  assert.equal(formatIpv6(b('20010db8000100010001000100010001')), '2001:db8:1:1:1:1:1:1');
});

test('boot id and boot time come from the proc root', () => {
  assert.equal(readBootId(FIXTURE_PROC), '6f1c2a34-1111-4c2b-9d6e-0123456789ab');
  const boot = readBootTimeMicros(FIXTURE_PROC);
  const expected = Date.now() * 1000 - 1000 * 1e6;
  assert.ok(Math.abs(boot - expected) < 5e6, `boot ${boot} vs ${expected}`);
  assert.equal(boot % 10_000, 0);
});
