import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type PofrRecord, type RecordOf, recordSchema } from '../../src/protocol/index.js';
import { ProcfsSampler, readClockTicks, readNetns, readNetTables } from '../../src/recorder/index.js';
import { copyProcTree, FIXTURE_PROC } from './proc-tree.js';

function valid(records: PofrRecord[]): PofrRecord[] {
  for (const r of records) recordSchema.parse(r);
  return records;
}

function ofType<T extends PofrRecord['type']>(records: PofrRecord[], type: T): RecordOf<T>[] {
  return records.filter((r): r is RecordOf<T> => r.type === type);
}

function nowMicros(): number {
  return Date.now() * 1000;
}

test('fixture tree: the first poll is one keyframe with processes, files and joined endpoints', (t) => {
  const sampler = new ProcfsSampler({ procRoot: FIXTURE_PROC, observerPids: () => new Set([101]) });
  t.after(() => sampler.close());
  const out = valid(sampler.poll(nowMicros()));
  assert.equal(out.length, 1);
  const kf = out[0];
  assert.ok(kf.type === 'keyframe');
  const byPid = new Map(kf.processes.map((p) => [p.pid, p]));
  const p100 = byPid.get(100)!;
  assert.equal(p100.comm, 'x) (y\nz');
  assert.deepEqual(p100.argv, [
    'prog',
    { b64: Buffer.from('--name=\xff\xfe', 'latin1').toString('base64') },
    '',
    'last',
  ]);
  assert.deepEqual(p100.cwd, { b64: Buffer.from('/home/\xffdir', 'latin1').toString('base64') });
  assert.deepEqual([p100.ruid, p100.euid, p100.rgid, p100.egid], [1000, 1001, 100, 101]);
  assert.equal(p100.observer, false);
  assert.equal(p100.parent_start_ticks, null);
  const p101 = byPid.get(101)!;
  assert.equal(p101.parent_start_ticks, 5000);
  assert.equal(p101.observer, true);
  assert.equal(p101.start - p100.start, Math.round((1000 * 1e6) / readClockTicks()));
  const k2 = byPid.get(2)!;
  assert.deepEqual([k2.exe, k2.argv], [null, []]);
  assert.equal(kf.files.length, 8);
  const owners = new Map(kf.endpoints.map((e) => [e.inode, e.pid]));
  assert.equal(owners.get(5001), 100);
  assert.equal(owners.get(5002), 101);
  assert.equal(owners.get(5003), 101);
  assert.equal(owners.get(6001), null);
  assert.deepEqual(sampler.health(), { ...sampler.health(), mode: 'sampling', processes: 3, denied: 0 });
});

test('fixture tree: exec, exit, fd change and endpoint state change become events', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'pofr-proc-'));
  try {
    copyProcTree(FIXTURE_PROC, root);
    const sampler = new ProcfsSampler({ procRoot: root, endpointsEveryMs: 0 });
    t.after(() => sampler.close());
    const t0 = nowMicros();
    sampler.poll(t0);
    assert.deepEqual(valid(sampler.poll(t0 + 500_000)), []);

    // 100 execs (new comm, new exec addresses, new argv), opens fd 6, replaces fd 4; 101 exits.
    const stat = `100 (newprog) S 1 100 100 0 -1 4194560 100 0 0 0 13 3 0 0 20 0 1 0 5000 ${'9 '.repeat(30)}0\n`;
    writeFileSync(join(root, '100/stat'), stat);
    writeFileSync(join(root, '100/cmdline'), 'newprog\0-x\0');
    writeFileSync(join(root, '100/schedstat'), '6000000 100 8\n');
    rmSync(join(root, '100/fd/4'));
    symlinkSync('/tmp/other', join(root, '100/fd/4'));
    symlinkSync('/var/log/app.log', join(root, '100/fd/6'));
    rmSync(join(root, '101'), { recursive: true });
    writeFileSync(
      join(root, 'net/tcp'),
      '  sl  local_address rem_address   st\n' +
        '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5001 1\n',
    );
    writeFileSync(
      join(root, 'net/udp'),
      '  sl  local_address rem_address   st\n' +
        ' 1300: 0100007F:9C40 0100007F:0035 07 00000000:00000000 00:00000000 00000000     0        0 6001 2\n',
    );
    const t1 = t0 + 1_000_000;
    const out = valid(sampler.poll(t1));
    const execs = ofType(out, 'process_exec');
    assert.equal(execs.length, 1);
    assert.deepEqual(
      [execs[0].proc.pid, execs[0].proc.comm, execs[0].proc.argv],
      [100, 'newprog', ['newprog', '-x']],
    );
    assert.deepEqual(ofType(out, 'process_exit'), [
      { type: 'process_exit', t: t1, pid: 101, start_ticks: 6000 },
    ]);
    const closes = ofType(out, 'file_close').map((r) => `${r.pid}/${r.fd}`);
    assert.deepEqual(closes.sort(), ['100/4', '101/3', '101/4']);
    const opens = ofType(out, 'file_open').map((r) => `${r.file.pid}/${r.file.fd}:${r.file.path}`);
    assert.deepEqual(opens.sort(), ['100/4:/tmp/other', '100/6:/var/log/app.log']);
    const epClosed = ofType(out, 'endpoint_close').map((r) => r.key);
    // tcp6 still lists 5002: the socket outlives the process that held it, so it stays open.
    assert.deepEqual(epClosed.sort(), ['tcp4:[127.0.0.1]:8080-[127.0.0.1]:54321', 'udp4:5003']);
    assert.deepEqual(ofType(out, 'endpoint_state'), [
      { type: 'endpoint_state', t: t1, key: 'udp4:6001', state: 'UNCONN' },
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('fixture tree: an argv caught empty inside execve is read again; an empty argv seen twice is an exec too', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'pofr-proc-'));
  try {
    copyProcTree(FIXTURE_PROC, root);
    const sampler = new ProcfsSampler({ procRoot: root });
    t.after(() => sampler.close());
    const t0 = nowMicros();
    sampler.poll(t0);
    const execStat = (sig: number, ticks: number) =>
      `100 (newprog) S 1 100 100 0 -1 4194560 100 0 0 0 ${ticks} 3 0 0 20 0 1 0 5000 ${`${sig} `.repeat(30)}0\n`;
    const execsAt = (tt: number) => ofType(valid(sampler.poll(tt)), 'process_exec');

    // Mid-exec: the new comm and addresses are there, the argv not yet.
    writeFileSync(join(root, '100/stat'), execStat(9, 13));
    writeFileSync(join(root, '100/cmdline'), '');
    writeFileSync(join(root, '100/schedstat'), '6000000 100 8\n');
    assert.deepEqual(execsAt(t0 + 1_000_000), [], 'not believed at the first empty read');
    writeFileSync(join(root, '100/cmdline'), 'newprog\0-x\0');
    const execs = execsAt(t0 + 2_000_000);
    assert.deepEqual(
      execs.map((e) => e.proc.argv),
      [['newprog', '-x']],
      'one exec, with the argv the program really got',
    );

    // A program exec'd with argc 0 (as the pkexec exploit does): empty twice, recorded as such.
    writeFileSync(join(root, '100/stat'), execStat(7, 14));
    writeFileSync(join(root, '100/cmdline'), '');
    writeFileSync(join(root, '100/schedstat'), '7000000 110 9\n');
    assert.deepEqual(execsAt(t0 + 3_000_000), []);
    assert.deepEqual(
      execsAt(t0 + 4_000_000).map((e) => e.proc.argv),
      [[]],
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

async function waitFor<T>(what: string, fn: () => T | undefined, ms = 8000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

test('real /proc: a child with a marker argv and an open fd 7 appears, then exits with its file closed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-sampler-'));
  const marker = `pofr-marker-${process.pid}-${Date.now()}`;
  const held = join(dir, 'held.txt');
  const child = spawn('bash', ['-c', `exec 7>${held}; sleep 30; :`, marker], {
    detached: true,
    stdio: 'ignore',
  });
  try {
    const sampler = new ProcfsSampler();
    t.after(() => sampler.close());
    const all: PofrRecord[] = [];
    const poll = () => {
      const out = valid(sampler.poll(nowMicros()));
      all.push(...out);
      return out;
    };
    poll();
    const start = await waitFor('the child with its fd 7', () => {
      poll();
      const img = [...sampler.live.processes.values()].find((p) => p.pid === child.pid);
      const files = img && sampler.live.filesOf(`${img.pid}:${img.start_ticks}`);
      return img && files?.get(7)?.path === held ? img : undefined;
    });
    assert.deepEqual(start.argv, ['bash', '-c', `exec 7>${held}; sleep 30; :`, marker]);
    assert.equal(start.exe, '/usr/bin/bash');
    assert.equal(start.ppid, process.pid);
    assert.ok(start.parent_start_ticks !== null);
    const opened = all.some(
      (r) =>
        (r.type === 'file_open' && r.file.pid === child.pid && r.file.fd === 7 && r.file.path === held) ||
        (r.type === 'keyframe' && r.files.some((f) => f.pid === child.pid && f.fd === 7 && f.path === held)),
    );
    assert.ok(opened, 'fd 7 was recorded as open');
    const observed = [...sampler.live.processes.values()].find((p) => p.pid === process.pid);
    assert.equal(observed?.observer, true);

    killGroup(child);
    await once(child, 'exit');
    const out = poll();
    assert.deepEqual(
      out.filter((r) => r.type === 'process_exit' && r.pid === child.pid),
      [
        {
          type: 'process_exit',
          t: out.find((r) => r.type === 'process_exit')!.t,
          pid: child.pid,
          start_ticks: start.start_ticks,
        },
      ],
    );
    assert.ok(out.some((r) => r.type === 'file_close' && r.pid === child.pid && r.fd === 7));
  } finally {
    killGroup(child);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("real /proc: the sampler's own held stat and schedstat files are not recorded as the recorder's files", (t) => {
  const sampler = new ProcfsSampler();
  t.after(() => sampler.close());
  // At the first poll every process listed before this one is held already, and this process's fd
  // table is read at first sight; the second is a keyframe-free poll that rereads changed tables.
  const out = [...valid(sampler.poll(nowMicros())), ...valid(sampler.poll(nowMicros()))];
  const own = /^\/proc\/\d+\/(stat|schedstat)$/;
  const mine = (f: { pid: number; path: unknown }) =>
    f.pid === process.pid && typeof f.path === 'string' && own.test(f.path);
  const recorded = out.flatMap((r) =>
    r.type === 'file_open' ? [r.file] : r.type === 'keyframe' ? r.files : [],
  );
  assert.ok(
    recorded.some((f) => f.pid !== process.pid),
    'files of other processes were recorded',
  );
  assert.deepEqual(recorded.filter(mine), []);
  const live = [...sampler.live.processes.values()].find((p) => p.pid === process.pid);
  assert.ok(live, 'this process is in the live state');
  const files = [...(sampler.live.filesOf(`${live.pid}:${live.start_ticks}`)?.values() ?? [])];
  assert.deepEqual(files.filter(mine), []);
});

test('real /proc: an exec in place (same pid and start) is a process_exec with the new argv', async (t) => {
  const marker = `pofr-exec-${process.pid}-${Date.now()}`;
  const child = spawn('bash', ['-c', 'read line; exec sleep 30', marker], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  try {
    const sampler = new ProcfsSampler();
    t.after(() => sampler.close());
    sampler.poll(nowMicros());
    await waitFor('the bash child', () => {
      sampler.poll(nowMicros());
      return [...sampler.live.processes.values()].find((p) => p.pid === child.pid && p.argv.includes(marker));
    });
    child.stdin?.write('go\n');
    const exec = await waitFor('the exec', () =>
      ofType(valid(sampler.poll(nowMicros())), 'process_exec').find((r) => r.proc.pid === child.pid),
    );
    assert.deepEqual(exec.proc.argv, ['sleep', '30']);
    assert.equal(exec.proc.exe, '/usr/bin/sleep');
    assert.equal(exec.proc.comm, 'sleep');
  } finally {
    killGroup(child);
    child.stdin?.destroy();
  }
});

test('real /proc: an ESTABLISHED tcp connection is joined to the child process that holds it', async (t) => {
  const server: Server = createServer();
  const accepted: Socket[] = [];
  server.on('connection', (s) => accepted.push(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const code = `const s=require('net').connect(${port},'127.0.0.1',()=>console.log('up '+s.localPort));setInterval(()=>{},1000)`;
  const child = spawn(process.execPath, ['-e', code], {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  try {
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const clientPort = Number(line.toString().trim().split(' ')[1]);
    const sampler = new ProcfsSampler();
    t.after(() => sampler.close());
    const kf = valid(sampler.poll(nowMicros()))[0];
    assert.ok(kf.type === 'keyframe');
    const client = kf.endpoints.find(
      (e) => e.proto === 'tcp' && e.local_port === clientPort && e.remote_port === port,
    );
    assert.ok(client, 'the client side is listed');
    assert.deepEqual(
      [client.state, client.family, client.local_ip, client.remote_ip, client.pid],
      ['ESTABLISHED', 4, '127.0.0.1', '127.0.0.1', child.pid],
    );
    const img = kf.processes.find((p) => p.pid === child.pid);
    assert.equal(client.start_ticks, img?.start_ticks);
    const serverSide = kf.endpoints.find((e) => e.local_port === port && e.remote_port === clientPort);
    assert.equal(serverSide?.pid, process.pid);
    const listener = kf.endpoints.find((e) => e.local_port === port && e.state === 'LISTEN');
    assert.equal(listener?.pid, process.pid);

    // The child dies: its end goes away or lingers closing, the process exit is recorded.
    killGroup(child);
    await once(child, 'exit');
    for (const s of accepted) s.destroy();
    const out = await waitFor('the endpoint change', () => {
      const r = valid(sampler.poll(nowMicros()));
      return r.some((x) => x.type === 'endpoint_close' || x.type === 'endpoint_state') ? r : undefined;
    });
    assert.ok(
      out.some((r) => (r.type === 'endpoint_close' || r.type === 'endpoint_state') && r.key === client.key),
    );
  } finally {
    killGroup(child);
    for (const s of accepted) s.destroy();
    server.close();
  }
});

test('real /proc: a listener in another network namespace (as in a container) is recorded, with its namespace', {
  skip: process.getuid?.() !== 0 ? 'needs root to create a network namespace (unshare --net)' : false,
}, async (t) => {
  const code = `const s=require('net').createServer().listen(0,'0.0.0.0',()=>console.log('up '+s.address().port));setInterval(()=>{},1000)`;
  // unshare execs node in place: the child's pid is the listener's.
  const child = spawn('unshare', ['--net', process.execPath, '-e', code], {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  try {
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const port = Number(line.toString().trim().split(' ')[1]);
    const theirs = readNetns('/proc', child.pid!);
    assert.ok(theirs !== null && theirs !== readNetns('/proc', 'self'), 'the child has its own namespace');
    const sampler = new ProcfsSampler();
    t.after(() => sampler.close());
    const kf = valid(sampler.poll(nowMicros()))[0];
    assert.ok(kf.type === 'keyframe');
    const listener = kf.endpoints.find((e) => e.local_port === port && e.state === 'LISTEN');
    assert.ok(listener, `the listener on port ${port} inside the namespace is listed`);
    assert.deepEqual([listener.pid, listener.netns], [child.pid, theirs]);
    const hostRows = readNetTables('/proc/net') ?? [];
    assert.ok(
      !hostRows.some((r) => r.inode === listener.inode),
      "the host's /proc/net does not show it: only reading the namespace's own tables does",
    );

    killGroup(child);
    await once(child, 'exit');
    const out = await waitFor('the listener to close', () => {
      const r = valid(sampler.poll(nowMicros()));
      return r.some((x) => x.type === 'endpoint_close' && x.key === listener.key) ? r : undefined;
    });
    assert.ok(out.some((r) => r.type === 'process_exit' && r.pid === child.pid));
  } finally {
    killGroup(child);
  }
});

test('real /proc: close() releases the procfs files held open between polls', () => {
  const open = () => readdirSync('/proc/self/fd').length;
  const before = open();
  const sampler = new ProcfsSampler();
  try {
    sampler.poll(nowMicros());
    assert.ok(open() > before + sampler.health().processes / 2, 'stat and schedstat are held');
  } finally {
    sampler.close();
  }
  assert.equal(open(), before);
});
