import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { ingestBatch } from '../../src/ingest/index.js';
import type { PofrRecord } from '../../src/protocol/index.js';
import { findFiles } from '../../src/query/index.js';
import { LiveState, TracefsSource } from '../../src/recorder/index.js';
import { createTestStore } from '../helpers/store-dialects.js';
import { addHost } from '../ingest/host-fixture.js';

const ROOT = process.getuid?.() === 0;
const needsRoot = { skip: ROOT ? false : 'kernel tracing and uprobes need root' };
const TRACEFS = '/sys/kernel/tracing';

function uprobeText(): string {
  return existsSync(`${TRACEFS}/uprobe_events`) ? readFileSync(`${TRACEFS}/uprobe_events`, 'latin1') : '';
}

/** Records while `run` runs (polling as the recorder does), then until `done` or a deadline. */
async function record(
  src: TracefsSource,
  run: () => Promise<void>,
  done: (all: PofrRecord[]) => boolean,
): Promise<PofrRecord[]> {
  const all: PofrRecord[] = [];
  let finished = false;
  const ran = run().finally(() => {
    finished = true;
  });
  while (!finished) {
    for (const r of src.poll(Date.now() * 1000)) all.push(r);
    await new Promise((r) => setTimeout(r, 20));
  }
  await ran;
  const deadline = Date.now() + 20_000;
  while (!done(all) && Date.now() < deadline) {
    for (const r of src.poll(Date.now() * 1000)) all.push(r);
    await new Promise((r) => setTimeout(r, 50));
  }
  return all;
}

test(
  'a file created, written and closed within 5 ms comes back from pofr files with its path and process',
  needsRoot,
  async () => {
    const started = TracefsSource.start({ live: new LiveState(), tcp: false });
    assert.ok(started.ok, started.ok ? '' : started.reason);
    const src = started.source;
    const dir = mkdtempSync(join(tmpdir(), 'pofr-brief-'));
    const path = join(dir, 'dropped');
    let all: PofrRecord[] = [];
    let shPid = 0;
    try {
      assert.equal(src.health().files, 'on');
      all = await record(
        src,
        async () => {
          // The shell's redirection opens, writes and closes the file in well under 5 ms, and a
          // relative name is made absolute.
          const sh = spawn('/bin/sh', ['-c', 'echo payload > dropped; exec /bin/sleep 0.2'], { cwd: dir });
          shPid = sh.pid ?? 0;
          const [code] = await once(sh, 'exit');
          assert.equal(code, 0);
        },
        (rs) => rs.some((r) => r.type === 'process_exit' && r.pid === shPid),
      );
    } finally {
      src.close();
      rmSync(dir, { recursive: true, force: true });
    }
    assert.ok(!uprobeText().includes(src.health().instance), 'the probes are removed');
    const open = all.find((r) => r.type === 'file_open' && r.file.path === path);
    assert.ok(open && open.type === 'file_open', 'the brief open is recorded');
    assert.equal(open.file.pid, shPid);
    assert.equal(open.file.kind, 'file');
    const close = all.find(
      (r) => r.type === 'file_close' && r.pid === shPid && r.fd === open.file.fd && r.t >= open.t,
    );
    assert.ok(close, 'and its close');
    assert.ok(
      !all.some((r) => r.type === 'file_open' && r.file.pid === process.pid),
      "the recorder's own opens are not recorded",
    );

    // Through ingest to the analyst's query.
    const ts = await createTestStore('sqlite');
    assert.ok(ts);
    try {
      const host = await addHost(ts.store);
      const r = await ingestBatch(ts.store, host.next(all).bytes, { principal: host.hostId });
      assert.equal(r.status, 'accepted', JSON.stringify(r));
      const files = await findFiles(ts.store, { path: `${dir}/*` });
      assert.deepEqual(
        files.map((f) => [f.path, f.pid]),
        [[path, shPid]],
      );
      assert.equal(files[0].comm, 'sh');
    } finally {
      await ts.cleanup();
    }
  },
);

test(
  "a container's own glibc is probed once a process of it is seen: its brief opens are recorded too",
  needsRoot,
  async (t) => {
    if (!existsSync('/usr/sbin/chroot')) return t.skip('chroot (coreutils) is not installed');
    // A root of its own with copies of sh, sleep, ld.so and libc: other files than the host's, as a
    // container image has.
    const root = mkdtempSync(join(tmpdir(), 'pofr-root-'));
    try {
      for (const f of [
        '/bin/sh',
        '/usr/bin/sleep',
        '/lib/x86_64-linux-gnu/libc.so.6',
        '/lib64/ld-linux-x86-64.so.2',
      ]) {
        mkdirSync(join(root, dirname(f)), { recursive: true });
        copyFileSync(realpathSync(f), join(root, f));
        chmodSync(join(root, f), 0o755);
      }
      const started = TracefsSource.start({ live: new LiveState(), tcp: false });
      assert.ok(started.ok, started.ok ? '' : started.reason);
      const src = started.source;
      let pid = 0;
      let all: PofrRecord[] = [];
      try {
        const inRoot = async (script: string) => {
          const child = spawn('/usr/sbin/chroot', [root, '/bin/sh', '-c', script]);
          pid = child.pid ?? 0;
          const [code] = await once(child, 'exit');
          assert.equal(code, 0);
        };
        // The first program of the root is seen by its exec; the probes come with it. Its root is
        // read through /proc/PID/root when the exec is settled (its argv probe waited for in vain,
        // 200 ms): the program lives a second so that a loaded machine's late poll still finds it.
        await record(
          src,
          () => inRoot('exec /usr/bin/sleep 1'),
          () => true,
        );
        assert.ok(
          src.health().libraries.some((l) => l.startsWith('/proc/')),
          JSON.stringify(src.health().libraries),
        );
        all = await record(
          src,
          () => inRoot('echo payload > /dropped; exec /usr/bin/sleep 0.2'),
          (rs) => rs.some((r) => r.type === 'process_exit' && r.pid === pid),
        );
      } finally {
        src.close();
      }
      assert.ok(!uprobeText().includes(src.health().instance), 'the probes are removed');
      // The path as the process sees it, inside its root.
      const open = all.find((r) => r.type === 'file_open' && r.file.path === '/dropped');
      assert.ok(open && open.type === 'file_open', 'the open inside the root is recorded');
      assert.equal(open.file.pid, pid);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);

test(
  'the sampler is sent to the fd table of a process holding a descriptor only /proc can name, not to one whose opens were named or closed',
  needsRoot,
  async () => {
    const started = TracefsSource.start({ live: new LiveState(), tcp: false });
    assert.ok(started.ok, started.ok ? '' : started.reason);
    const src = started.source;
    // Direct openat system calls (as a static or Go program makes), one kept open, one closed at
    // once; and an open through glibc, kept open: its path is a record already.
    const script = (keepDirect: boolean) =>
      [
        'import ctypes, os, time',
        'libc = ctypes.CDLL(None)',
        "fd = libc.syscall(257, -100, b'/etc/hostname', 0)",
        keepDirect ? 'pass' : 'os.close(fd)',
        "kept = open('/etc/passwd')",
        "print('ready', flush=True)",
        'time.sleep(30)',
      ].join('\n');
    const holder = spawn('python3', ['-c', script(true)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const closer = spawn('python3', ['-c', script(false)], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const all: PofrRecord[] = [];
      const ready = Promise.all([once(holder.stdout!, 'data'), once(closer.stdout!, 'data')]);
      let up = false;
      void ready.then(() => {
        up = true;
      });
      while (!up) {
        for (const r of src.poll(Date.now() * 1000)) all.push(r);
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 50));
      for (const r of src.poll(Date.now() * 1000)) all.push(r);
      const touched = src.takeFdChanges();
      assert.ok(touched !== null, 'file events are on');
      assert.ok(touched.has(holder.pid!), 'a direct open still open: its fd table is to be read');
      assert.ok(
        !touched.has(closer.pid!),
        'opens that were closed, or came with their path: nothing to read',
      );
      assert.ok(
        all.some((r) => r.type === 'file_open' && r.file.pid === closer.pid && r.file.path === '/etc/passwd'),
        'the open through glibc is a record with its path',
      );
      assert.equal(src.takeFdChanges()?.size ?? 0, 0, 'each is handed out once');
    } finally {
      holder.kill('SIGKILL');
      closer.kill('SIGKILL');
      src.close();
    }
  },
);
