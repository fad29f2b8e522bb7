import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { PofrRecord, ProcessImage, RecordOf } from '../../src/protocol/index.js';
import { LiveState } from '../../src/recorder/index.js';
import { execDeltaImage } from '../../src/recorder/live-state.js';
import { ProcessEvents, UNKNOWN_ID } from '../../src/recorder/process-events.js';
import type {
  ArgvEvent,
  ExecEvent,
  ExitEvent,
  TaskEvent,
} from '../../src/recorder/sources/tracefs/kernel-events.js';

/**
 * The process state machine on its own: synthetic kernel events, a /proc root with nothing in it
 * (every process is already gone, the hardest case: nothing but the events to go on).
 */
const emptyProc = mkdtempSync(join(tmpdir(), 'pofr-noproc-'));
after(() => rmSync(emptyProc, { recursive: true, force: true }));

const MS = 1e6;
const HZ = 100;
/** Trace-clock ns → wall µs: boot at 1.7e15 µs. */
const clock = { wallMicros: (ts: number) => 1_700_000_000_000_000 + Math.round(ts / 1000) };

function parentImage(over: Partial<ProcessImage> = {}): ProcessImage {
  return {
    pid: 100,
    start_ticks: 500,
    start: 1_700_000_000_000_000 + 5_000_000,
    ppid: 1,
    parent_start_ticks: 1,
    exe: '/usr/bin/bash',
    comm: 'bash',
    argv: ['bash', '-i'],
    cwd: '/home/alice',
    ruid: 1000,
    euid: 1000,
    rgid: 1000,
    egid: 1000,
    source: 'sample',
    observer: false,
    argv_source: 'proc',
    argv_complete: true,
    ...over,
  };
}

function setup(opts: { probeWaitNs?: number; maxPending?: number } = {}) {
  const live = new LiveState();
  live.apply([{ type: 'process_start', t: 1, proc: parentImage() }]);
  const unprobed: number[] = [];
  const tracker = new ProcessEvents({
    live,
    clock,
    procRoot: emptyProc,
    clockTicks: HZ,
    observerPids: () => new Set([999]),
    onUnprobedExec: (pid) => unprobed.push(pid),
    ...opts,
  });
  return { live, tracker, unprobed };
}

const task = (ts: number, tid: number, parentTid: number, thread: boolean | null = false): TaskEvent => ({
  kind: 'task',
  ts,
  tid,
  parentTid,
  comm: Buffer.from('bash'),
  thread,
  newNamespaces: thread === null ? null : false,
});
const exec = (ts: number, pid: number, filename: string | Buffer, oldPid = pid): ExecEvent => ({
  kind: 'exec',
  ts,
  pid,
  oldPid,
  filename: Buffer.isBuffer(filename) ? filename : Buffer.from(filename),
});
const argv = (ts: number, tid: number, args: (string | Buffer)[], complete = true): ArgvEvent => ({
  kind: 'argv',
  ts,
  tid,
  argc: args.length,
  argv: args.map((a) => (Buffer.isBuffer(a) ? a : Buffer.from(a))),
  complete,
});
const exit = (ts: number, tid: number, groupDead: boolean | null = true): ExitEvent => ({
  kind: 'exit',
  ts,
  tid,
  comm: Buffer.from('x'),
  groupDead,
});

function only<T extends PofrRecord['type']>(records: PofrRecord[], type: T): RecordOf<T>[] {
  return records.filter((r): r is RecordOf<T> => r.type === type);
}

/**
 * The records with every process_exec_delta replaced by the whole process_exec it stands for, as
 * a reader of the stream (the server) rebuilds it from the images before.
 */
function expanded(records: PofrRecord[]): PofrRecord[] {
  const shadow = new LiveState();
  shadow.apply([{ type: 'process_start', t: 1, proc: parentImage() }]);
  return records.map((r) => {
    let whole = r;
    if (r.type === 'process_exec_delta') {
      const before = shadow.processes.get(`${r.pid}:${r.start_ticks}`);
      assert.ok(before, 'a delta names a process whose image the stream stated');
      whole = { type: 'process_exec', t: r.t, proc: execDeltaImage(before, r) };
    }
    shadow.apply([r]);
    return whole;
  });
}

/** The exec records of `records`, whole. */
const execs = (records: PofrRecord[]) => only(expanded(records), 'process_exec');

test('a fork starts a copy of its parent at the kernel time, then the exec takes the argv probe', () => {
  const { live, tracker } = setup();
  const out: PofrRecord[] = [];
  const forkTs = 12_345 * MS;
  tracker.task(task(forkTs, 200, 100), out);
  const copy = live.processOfPid(200);
  tracker.exec(exec(forkTs + 0.2 * MS, 200, '/usr/bin/curl'), out, false);
  assert.equal(out.length, 1, 'the exec waits for its probe');
  tracker.argv(argv(forkTs + 0.21 * MS, 200, ['curl', '-s', Buffer.from([0xff])]), out);
  tracker.exit(exit(forkTs + 1 * MS, 200), out);
  const [start, execd, exited] = expanded(out);
  // The parent's image was stated whole by a record: the fork names the child's identity alone.
  assert.deepEqual(start, {
    type: 'process_fork',
    t: clock.wallMicros(forkTs),
    pid: 200,
    start_ticks: 1234,
    ppid: 100,
    parent_start_ticks: 500,
    observer: false,
  });
  assert.ok(copy !== undefined);
  assert.equal(copy.start, clock.wallMicros(forkTs), 'start is the fork, to the microsecond');
  assert.equal(copy.start_ticks, 1234, 'start ticks from the fork time (10 ms ticks)');
  assert.deepEqual(copy.argv, ['bash', '-i'], "the child is its parent's copy until it execs");
  assert.deepEqual(
    { ...copy, pid: 100, start_ticks: 500, start: 0, ppid: 1, parent_start_ticks: 1, source: 'sample' },
    {
      ...parentImage(),
      start: 0,
    },
  );
  assert.equal(copy.source, 'trace');
  assert.ok(execd.type === 'process_exec');
  assert.equal(execd.t, clock.wallMicros(forkTs + 0.2 * MS));
  assert.deepEqual(execd.proc.argv, ['curl', '-s', { b64: '/w==' }]);
  assert.equal(execd.proc.argv_source, 'probe');
  assert.equal(execd.proc.argv_complete, true);
  assert.equal(execd.proc.exe, '/usr/bin/curl', 'gone before /proc: the executed path');
  assert.equal(execd.proc.cwd, '/home/alice', 'an exec keeps the cwd');
  assert.equal(execd.proc.ruid, 1000);
  assert.equal(execd.proc.start, copy.start, 'the process start does not move at exec');
  assert.ok(exited.type === 'process_exit');
  assert.equal(exited.t, clock.wallMicros(forkTs + 1 * MS));
  assert.equal(live.processOfPid(200), undefined, 'the live state follows the records');
});

test('threads join their process: no records, and their exits end nothing', () => {
  const { tracker } = setup();
  const out: PofrRecord[] = [];
  tracker.task(task(1 * MS, 101, 100, true), out);
  tracker.task(task(2 * MS, 102, 101, true), out);
  assert.equal(tracker.tgidOf(102), 100, "a thread's thread is its process's too");
  tracker.exit(exit(3 * MS, 101, false), out);
  assert.deepEqual(out, []);
  // A fork from a thread is the process's child.
  tracker.task(task(4 * MS, 300, 102), out);
  assert.equal(only(out, 'process_fork')[0].ppid, 100);
  // The last thread to go takes the process with it, whichever thread it is.
  tracker.exit(exit(5 * MS, 102, true), out);
  assert.deepEqual(
    only(out, 'process_exit').map((r) => r.pid),
    [100],
  );
});

test('an exec no probe reports, of a process already gone, keeps the event: path only, marked', () => {
  const { tracker, unprobed } = setup();
  const out: PofrRecord[] = [];
  tracker.task(task(1 * MS, 200, 100), out);
  tracker.exec(exec(1.1 * MS, 200, './payload.bin'), out, false);
  tracker.exit(exit(1.5 * MS, 200), out);
  const execd = execs(out)[0];
  assert.deepEqual(execd.proc.argv, ['./payload.bin']);
  assert.equal(execd.proc.argv_source, 'event');
  assert.equal(execd.proc.argv_complete, false);
  assert.equal(execd.proc.exe, '/home/alice/payload.bin', 'a relative path is made absolute against the cwd');
  assert.equal(execd.proc.comm, 'payload.bin');
  assert.deepEqual(unprobed, [200], 'the source is told, to probe that program from now on');
  const types = out.map((r) => r.type);
  assert.ok(
    types.indexOf('process_exec_delta') < types.indexOf('process_exit'),
    'the exec comes before the exit',
  );
});

test('a fork settles an exec still waiting for its probe, so the child copies the new program', () => {
  const { live, tracker } = setup();
  const out: PofrRecord[] = [];
  tracker.exec(exec(1 * MS, 100, '/usr/local/bin/static-daemon'), out, false);
  tracker.task(task(2 * MS, 201, 100), out);
  const [execd, child] = out;
  assert.ok(execd.type === 'process_exec_delta' && child.type === 'process_fork');
  assert.equal(live.processOfPid(201)?.exe, '/usr/local/bin/static-daemon');
});

test('execs wait for their probe only so long, and never more of them than the bound', () => {
  const { tracker } = setup({ probeWaitNs: 50 * MS, maxPending: 2 });
  const out: PofrRecord[] = [];
  for (const pid of [301, 302, 303]) tracker.task(task(1 * MS, pid, 100), out);
  tracker.exec(exec(2 * MS, 301, '/bin/a'), out, false);
  tracker.exec(exec(3 * MS, 302, '/bin/b'), out, false);
  tracker.exec(exec(4 * MS, 303, '/bin/c'), out, false);
  assert.equal(execs(out).length, 1, 'the oldest was settled to stay within the bound');
  assert.equal(tracker.counts.shed, 1);
  tracker.expire(40 * MS, out);
  assert.equal(execs(out).length, 1);
  tracker.expire(60 * MS, out);
  assert.equal(execs(out).length, 3);
  assert.equal(tracker.pendingCount, 0);
});

test('a probe hit cut short stays marked incomplete when /proc cannot stand in', () => {
  const { tracker } = setup();
  const out: PofrRecord[] = [];
  tracker.exec(exec(1 * MS, 100, '/usr/bin/find'), out, false);
  tracker.argv(argv(1.1 * MS, 100, ['find', '/'], false), out);
  const execd = execs(out)[0];
  assert.equal(execd.proc.argv_source, 'probe');
  assert.equal(execd.proc.argv_complete, false);
});

test('a process unknown before its exec starts at the exec; unknown credentials are (uid_t)-1', () => {
  const { tracker } = setup();
  const out: PofrRecord[] = [];
  tracker.exec(exec(7 * MS, 4000, '/bin/sh'), out, false);
  tracker.argv(argv(7.1 * MS, 4000, ['sh', '-c', 'id']), out);
  const [r] = out;
  assert.ok(r.type === 'process_start');
  assert.equal(r.proc.ruid, UNKNOWN_ID);
  assert.deepEqual(r.proc.argv, ['sh', '-c', 'id']);
});

test('the observer tag follows the recorder pids', () => {
  const { tracker } = setup();
  const out: PofrRecord[] = [];
  tracker.task(task(1 * MS, 999, 100), out);
  assert.equal(only(out, 'process_fork')[0].observer, true);
});

test('a fork of a parent whose ids changed since its last image record states the child whole', () => {
  const { live, tracker } = setup();
  // A cred_change moves the live image's ids; the server keeps the image its records stated, so
  // a process_fork would give the child the ids from before the change.
  live.apply([
    {
      type: 'cred_change',
      t: 2,
      pid: 100,
      start_ticks: 500,
      call: 'setuid',
      old: { ruid: 1000, euid: 1000, rgid: 1000, egid: 1000 },
      new: { ruid: 33, euid: 33, rgid: 1000, egid: 1000 },
    },
  ]);
  const out: PofrRecord[] = [];
  tracker.task(task(3 * MS, 210, 100), out);
  const [child] = out;
  assert.ok(child.type === 'process_start');
  assert.equal(child.proc.ruid, 33);
  assert.equal(child.proc.euid, 33);
  // Its own forks copy an image stated whole again.
  tracker.task(task(4 * MS, 211, 210), out);
  assert.equal(out[1].type, 'process_fork');
});

test('an exec of a process whose image a record stated names only what the exec changed', () => {
  const { live, tracker } = setup();
  const out: PofrRecord[] = [];
  tracker.task(task(1 * MS, 200, 100), out);
  tracker.exec(exec(1.1 * MS, 200, '/usr/bin/id'), out, false);
  tracker.argv(argv(1.11 * MS, 200, ['id', '-u', Buffer.from([0xc3, 0x28])]), out);
  assert.deepEqual(out[1], {
    type: 'process_exec_delta',
    t: clock.wallMicros(1.1 * MS),
    pid: 200,
    start_ticks: 0,
    exe: '/usr/bin/id',
    comm: 'id',
    argv: ['id', '-u', { b64: 'wyg=' }],
    argv_source: 'probe',
    argv_complete: true,
  });
  // The live image is the whole one: what the server rebuilds from the image before.
  const whole = live.processOfPid(200);
  assert.deepEqual(whole, { ...parentImage(), ...whole, exe: '/usr/bin/id' });
  assert.deepEqual(
    [whole?.cwd, whole?.ruid, whole?.ppid, whole?.source, whole?.start],
    ['/home/alice', 1000, 100, 'trace', clock.wallMicros(1 * MS)],
  );
  assert.equal(live.isStated(whole as ProcessImage), true, 'its own forks and execs stay compact');
  tracker.exec(exec(2 * MS, 200, '/usr/bin/true'), out, false);
  tracker.argv(argv(2.01 * MS, 200, ['true']), out);
  assert.equal(out[2].type, 'process_exec_delta');
  assert.deepEqual(live.processOfPid(200)?.argv, ['true']);
});

test('an exec after an unrecorded change of ids states the image whole', () => {
  const { live, tracker } = setup();
  live.apply([
    {
      type: 'cred_change',
      t: 2,
      pid: 100,
      start_ticks: 500,
      call: 'setresuid',
      old: { ruid: 1000, euid: 1000, rgid: 1000, egid: 1000 },
      new: { ruid: 0, euid: 0, rgid: 1000, egid: 1000 },
    },
  ]);
  const out: PofrRecord[] = [];
  tracker.exec(exec(3 * MS, 100, '/bin/sh'), out, false);
  tracker.argv(argv(3.01 * MS, 100, ['sh']), out);
  const [r] = out;
  assert.ok(
    r.type === 'process_exec',
    'the server holds the ids from before the change: a delta would keep them',
  );
  assert.equal(r.proc.ruid, 0);
});

test('an exit closes the files the process held before it ends it', () => {
  const { live, tracker } = setup();
  live.apply([
    {
      type: 'file_open',
      t: 2,
      file: { pid: 100, start_ticks: 500, fd: 3, path: '/etc/shadow', kind: 'file' },
    },
  ]);
  const out: PofrRecord[] = [];
  tracker.exit(exit(9 * MS, 100), out);
  assert.deepEqual(
    out.map((r) => r.type),
    ['file_close', 'process_exit'],
  );
});

test('a set-user-ID program run by a process already gone gets the file owner as effective uid', {
  skip: process.getuid?.() !== 0 ? 'chown to another owner needs root' : false,
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-suid-'));
  try {
    const prog = join(dir, 'suid-prog');
    writeFileSync(prog, '#!/bin/sh\n');
    chownSync(prog, 4242, 4343);
    chmodSync(prog, 0o6755);
    const { tracker } = setup();
    const out: PofrRecord[] = [];
    tracker.task(task(1 * MS, 200, 100), out);
    tracker.exec(exec(1.1 * MS, 200, prog), out, false);
    tracker.exit(exit(1.2 * MS, 200), out);
    const execd = execs(out)[0];
    assert.deepEqual(
      [execd.proc.ruid, execd.proc.euid, execd.proc.rgid, execd.proc.egid],
      [1000, 4242, 1000, 4343],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
