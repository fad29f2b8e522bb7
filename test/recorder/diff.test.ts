import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type FileInfo, type PofrRecord, type ProcessImage, recordSchema } from '../../src/protocol/index.js';
import {
  diffEndpoints,
  diffFiles,
  diffProcesses,
  LiveState,
  type ObservedEndpoint,
  processKey,
} from '../../src/recorder/index.js';

const T0 = 1_700_000_000_000_000;

function image(pid: number, startTicks: number, over: Partial<ProcessImage> = {}): ProcessImage {
  return {
    pid,
    start_ticks: startTicks,
    start: T0 + startTicks * 10_000,
    ppid: 1,
    parent_start_ticks: null,
    exe: '/usr/bin/app',
    comm: 'app',
    argv: ['app', '--serve'],
    cwd: '/',
    ruid: 0,
    euid: 0,
    rgid: 0,
    egid: 0,
    source: 'sample',
    observer: false,
    ...over,
  };
}

function file(p: ProcessImage, fd: number, path: string, kind: FileInfo['kind'] = 'file'): FileInfo {
  return { pid: p.pid, start_ticks: p.start_ticks, fd, path, kind };
}

function valid(records: PofrRecord[]): PofrRecord[] {
  for (const r of records) recordSchema.parse(r);
  return records;
}

function seenOf(...imgs: ProcessImage[]): Map<string, ProcessImage> {
  return new Map(imgs.map((i) => [processKey(i.pid, i.start_ticks), i]));
}

test('a new process starts, parents before children', () => {
  const live = new LiveState();
  const parent = image(10, 100);
  const child = image(5, 200, { ppid: 10, parent_start_ticks: 100 });
  const out = valid(diffProcesses(live, seenOf(child, parent), T0));
  assert.deepEqual(
    out.map((r) => (r.type === 'process_start' ? r.proc.pid : r.type)),
    [10, 5],
  );
});

test('a known process with another argv or exe execs; same image emits nothing', () => {
  const live = new LiveState();
  const a = image(10, 100);
  live.apply([{ type: 'process_start', t: T0, proc: a }]);
  assert.deepEqual(diffProcesses(live, seenOf({ ...a, cwd: '/tmp' }), T0), []);
  const execed = image(10, 100, { exe: { b64: 'L2Jpbi//' }, argv: ['sh'] });
  const out = valid(diffProcesses(live, seenOf(execed), T0 + 1));
  assert.equal(out.length, 1);
  assert.equal(out[0].type, 'process_exec');
  live.apply(out);
  assert.equal(live.processes.get(processKey(10, 100)), execed);
});

test('a process gone from the snapshot exits at the sample time, its files closed first', () => {
  const live = new LiveState();
  const a = image(10, 100);
  live.apply([
    { type: 'process_start', t: T0, proc: a },
    { type: 'file_open', t: T0, file: file(a, 3, '/var/log/x') },
    { type: 'file_open', t: T0, file: file(a, 4, 'socket:[77]', 'socket') },
  ]);
  assert.deepEqual(live.socketOwner(77), { pid: 10, start_ticks: 100 });
  const t = T0 + 5_000_000;
  const out = valid(diffProcesses(live, new Map(), t));
  assert.deepEqual(
    out.map((r) => r.type),
    ['file_close', 'file_close', 'process_exit'],
  );
  assert.ok(out.every((r) => r.t === t));
  live.apply(out);
  assert.equal(live.processes.size, 0);
  assert.equal(live.fileCount, 0);
  assert.equal(live.socketOwner(77), null);
});

test('a reused pid is an exit of the old process and a start of the new one', () => {
  const live = new LiveState();
  live.apply([{ type: 'process_start', t: T0, proc: image(10, 100) }]);
  const out = valid(diffProcesses(live, seenOf(image(10, 900)), T0));
  assert.deepEqual(
    out.map((r) => r.type),
    ['process_start', 'process_exit'],
  );
});

test('fds: new ones open, gone ones close, a changed target is a close then an open', () => {
  const a = image(10, 100);
  const prev = new Map([
    [3, file(a, 3, '/etc/hosts')],
    [4, file(a, 4, '/tmp/old')],
    [5, file(a, 5, '/tmp/keep')],
  ]);
  const next = new Map([
    [4, file(a, 4, '/tmp/new')],
    [5, prev.get(5)!],
    [6, file(a, 6, 'pipe:[9]', 'pipe')],
  ]);
  const out = valid(diffFiles({ pid: 10, start_ticks: 100 }, prev, next, T0));
  assert.deepEqual(
    out.map((r) => `${r.type}:${r.type === 'file_open' ? r.file.fd : r.type === 'file_close' ? r.fd : ''}`),
    ['file_close:3', 'file_close:4', 'file_open:4', 'file_open:6'],
  );
});

function row(over: Partial<ObservedEndpoint>): ObservedEndpoint {
  return {
    proto: 'tcp',
    family: 4,
    localIp: '10.0.0.1',
    localPort: 40000,
    remoteIp: '10.0.0.2',
    remotePort: 443,
    state: 'ESTABLISHED',
    inode: 500,
    netns: null,
    ...over,
  };
}

test('endpoints: open joined to the owning process by socket inode, then state change, then close', () => {
  const live = new LiveState();
  const a = image(10, 100);
  live.apply([
    { type: 'process_start', t: T0, proc: a },
    { type: 'file_open', t: T0, file: file(a, 7, 'socket:[500]', 'socket') },
  ]);
  const owner = (i: number) => live.socketOwner(i);
  const d1 = diffEndpoints(live.endpoints, [row({})], owner, T0);
  valid(d1.records);
  assert.equal(d1.records.length, 1);
  const open = d1.records[0];
  assert.ok(open.type === 'endpoint_open');
  assert.equal(open.endpoint.pid, 10);
  assert.equal(open.endpoint.start_ticks, 100);
  assert.equal(open.endpoint.key, 'tcp4:500');
  live.apply(d1.records);

  const d2 = diffEndpoints(live.endpoints, [row({ state: 'CLOSE_WAIT' })], owner, T0 + 1);
  assert.deepEqual(valid(d2.records), [
    { type: 'endpoint_state', t: T0 + 1, key: 'tcp4:500', state: 'CLOSE_WAIT' },
  ]);
  live.apply(d2.records);

  const d3 = diffEndpoints(live.endpoints, [], owner, T0 + 2);
  assert.deepEqual(valid(d3.records), [{ type: 'endpoint_close', t: T0 + 2, key: 'tcp4:500' }]);
});

test('endpoints: a closed connection going to TIME_WAIT with inode 0 keeps its key and owner', () => {
  const live = new LiveState();
  const a = image(10, 100);
  live.apply([
    { type: 'process_start', t: T0, proc: a },
    { type: 'file_open', t: T0, file: file(a, 7, 'socket:[500]', 'socket') },
  ]);
  const owner = (i: number) => live.socketOwner(i);
  const d1 = diffEndpoints(live.endpoints, [row({})], owner, T0);
  live.apply(d1.records);
  const d2 = diffEndpoints(live.endpoints, [row({ state: 'TIME_WAIT', inode: 0 })], owner, T0 + 1);
  assert.deepEqual(d2.records, [{ type: 'endpoint_state', t: T0 + 1, key: 'tcp4:500', state: 'TIME_WAIT' }]);
  live.apply(d2.records);
  for (const r of d2.revised) live.reviseEndpoint(r);
  const ep = live.endpoints.get('tcp4:500');
  assert.equal(ep?.inode, 0);
  assert.equal(ep?.pid, 10);
  // The same tuple with a fresh, different inode is a new connection, not the old one.
  const d3 = diffEndpoints(live.endpoints, [row({ inode: 900 })], owner, T0 + 2);
  assert.deepEqual(
    d3.records.map((r) => r.type),
    ['endpoint_close', 'endpoint_open'],
  );
});

test('endpoints: inode 0 keys by 4-tuple, UDP UNCONN and listeners key by inode', () => {
  const live = new LiveState();
  const d = diffEndpoints(
    live.endpoints,
    [
      row({ state: 'TIME_WAIT', inode: 0 }),
      row({ proto: 'udp', state: 'UNCONN', remoteIp: '0.0.0.0', remotePort: 0, inode: 600 }),
      row({ family: 6, localIp: '::', remoteIp: '::', remotePort: 0, state: 'LISTEN', inode: 601 }),
    ],
    () => null,
    T0,
  );
  valid(d.records);
  assert.deepEqual(
    d.records.map((r) => (r.type === 'endpoint_open' ? [r.endpoint.key, r.endpoint.pid] : r.type)),
    [
      ['tcp4:[10.0.0.1]:40000-[10.0.0.2]:443', null],
      ['udp4:600', null],
      ['tcp6:601', null],
    ],
  );
});

test('endpoints: the same 4-tuple in two network namespaces is two endpoints, each followed on its own', () => {
  const live = new LiveState();
  const host = row({ state: 'TIME_WAIT', inode: 0, netns: 4026531840 });
  const container = row({ state: 'TIME_WAIT', inode: 0, netns: 4026532300 });
  const d1 = diffEndpoints(live.endpoints, [host, container], () => null, T0);
  valid(d1.records);
  assert.deepEqual(
    d1.records.map((r) => (r.type === 'endpoint_open' ? [r.endpoint.key, r.endpoint.netns] : r.type)),
    [
      ['tcp4:[10.0.0.1]:40000-[10.0.0.2]:443@4026531840', 4026531840],
      ['tcp4:[10.0.0.1]:40000-[10.0.0.2]:443@4026532300', 4026532300],
    ],
  );
  live.apply(d1.records);
  // Seen again: nothing new. The container's connection ends: only its endpoint closes.
  assert.deepEqual(diffEndpoints(live.endpoints, [host, container], () => null, T0 + 1).records, []);
  assert.deepEqual(diffEndpoints(live.endpoints, [host], () => null, T0 + 2).records, [
    { type: 'endpoint_close', t: T0 + 2, key: 'tcp4:[10.0.0.1]:40000-[10.0.0.2]:443@4026532300' },
  ]);
});

test('endpoints: a deferred ownerless endpoint is left out; its owner learned later revises it', () => {
  const live = new LiveState();
  const d1 = diffEndpoints(
    live.endpoints,
    [row({})],
    () => null,
    T0,
    () => true,
  );
  assert.deepEqual(d1.records, []);
  const d2 = diffEndpoints(
    live.endpoints,
    [row({})],
    () => null,
    T0 + 1,
    () => false,
  );
  live.apply(d2.records);
  assert.equal(live.endpoints.get('tcp4:500')?.pid, null);
  const d3 = diffEndpoints(live.endpoints, [row({})], () => ({ pid: 4, start_ticks: 8 }), T0 + 2);
  assert.deepEqual(d3.records, []);
  for (const r of d3.revised) live.reviseEndpoint(r);
  assert.equal(live.endpoints.get('tcp4:500')?.pid, 4);
});

test('a keyframe holds the full live state and rebuilds it when applied', () => {
  const live = new LiveState();
  const a = image(10, 100);
  live.apply([
    { type: 'process_start', t: T0, proc: a },
    { type: 'file_open', t: T0, file: file(a, 7, 'socket:[500]', 'socket') },
  ]);
  live.apply(diffEndpoints(live.endpoints, [row({})], (i) => live.socketOwner(i), T0).records);
  const kf = live.keyframe(T0 + 1);
  recordSchema.parse(kf);
  assert.equal(kf.processes.length, 1);
  assert.equal(kf.files.length, 1);
  assert.equal(kf.endpoints.length, 1);
  const copy = new LiveState();
  copy.apply([kf]);
  assert.deepEqual(copy.keyframe(T0 + 1), kf);
  assert.deepEqual(copy.socketOwner(500), { pid: 10, start_ticks: 100 });
});

test('endpoints: a connection seen in the accept queue (inode 0) keeps its key once accepted', () => {
  const live = new LiveState();
  const a = image(10, 100);
  live.apply([{ type: 'process_start', t: T0, proc: a }]);
  const owner = (i: number) => live.socketOwner(i);
  const d1 = diffEndpoints(live.endpoints, [row({ inode: 0 })], owner, T0);
  live.apply(d1.records);
  const key = 'tcp4:[10.0.0.1]:40000-[10.0.0.2]:443';
  assert.equal(live.endpoints.get(key)?.pid, null);
  live.apply([{ type: 'file_open', t: T0 + 1, file: file(a, 9, 'socket:[700]', 'socket') }]);
  const d2 = diffEndpoints(live.endpoints, [row({ inode: 700 })], owner, T0 + 1);
  assert.deepEqual(d2.records, []);
  for (const r of d2.revised) live.reviseEndpoint(r);
  assert.deepEqual([live.endpoints.get(key)?.inode, live.endpoints.get(key)?.pid], [700, 10]);
});
